"""The CoarSR weights shipped with the package, by *family*: the data they were trained for.

- ``cave``: CAVE-like lab scenes (31 bands, 400–700 nm): ``coarsr_x{scale}.safetensors`` in this folder, described
  by ``MODEL_CARD.md`` beside them.
- ``airborne``: airborne/satellite imaging spectrometers (AVIRIS, HYDICE, ROSIS, …): ``airborne/coarsr_x{scale}
  .safetensors`` with ``airborne/MODEL_CARD.md`` (the cave weights fine-tuned on airborne crops).

Each file is in the project's format, its provenance (data, split, recipe, validation scores) in its header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dualsr_deploy.errors import CheckpointError, InputError

WEIGHTS_DIR = Path(__file__).resolve().parent
FAMILIES = ("cave", "airborne")
AUTO = "auto"  # --weights auto: a family per scene (see choose_family)
AIRBORNE_NM = 1000.0  # scenes whose wavelengths reach beyond this are airborne/satellite data
AIRBORNE_BANDS = 64  # ... or, wavelengths unknown, that have more bands than this
MICROMETRES_BELOW = 30.0  # band centres all below this are in micrometres (no imaging spectrometer works at 30 nm)
MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"  # the cave family's card


def family_dir(family: str) -> Path:
    """The folder of a family's weights (an :class:`InputError` for an unknown family)."""
    if family not in FAMILIES:
        raise InputError(f"unknown weights family {family!r}; the families are {', '.join(FAMILIES)}")
    return WEIGHTS_DIR if family == "cave" else WEIGHTS_DIR / family


def model_card(family: str = "cave") -> Path:
    return family_dir(family) / "MODEL_CARD.md"


def shipped_scales(family: str = "cave") -> tuple[int, ...]:
    """The scales for which ``family`` ships weights, ascending (empty when none ship)."""
    folder = family_dir(family)
    found = []
    for path in folder.glob("coarsr_x*.safetensors"):
        digits = path.stem.removeprefix("coarsr_x")
        if digits.isdigit():
            found.append(int(digits))
    return tuple(sorted(found))


def _have(family: str) -> str:
    return ", ".join(f"×{s}" for s in shipped_scales(family)) or "none"


def shipped_weights(scale: int, family: str = "cave") -> Path:
    """The shipped ``.safetensors`` of ``family`` for ``scale``; a :class:`CheckpointError` naming what exists."""
    path = family_dir(family) / f"coarsr_x{scale}.safetensors"
    if not path.is_file():
        others = [f"{name}: {_have(name)}" for name in FAMILIES if name != family]
        raise CheckpointError(
            f"no shipped {family} ×{scale} weights (shipped: {family}: {_have(family)}; {'; '.join(others)}); pass "
            "your own weights (--weights PATH; weights=PATH in Python), or train one with "
            f"`dualsr train … --scale {scale}`"
        )
    return path


@dataclass(frozen=True)
class ShippedWeights:
    """One shipped file and what its card says: size, data, and held-out validation against bicubic."""

    family: str
    scale: int
    path: Path
    n_feats: int
    n_blocks: int
    parameters: int
    train_scenes: tuple[str, ...]
    validation_scenes: tuple[str, ...]
    steps: int | None
    validation: dict[str, float]
    sha256: str
    computed_in: str = ""  # how the validation was computed while training (e.g. "bf16 autocast")


def list_shipped() -> list[ShippedWeights]:
    """Every shipped weights file, by family then scale, with the numbers of its provenance."""
    from dualsr_deploy.checkpoint import read_checkpoint

    found = []
    for family in FAMILIES:
        for scale in shipped_scales(family):
            path = shipped_weights(scale, family)
            model, info = read_checkpoint(path)
            provenance = info.provenance
            found.append(
                ShippedWeights(
                    family=family,
                    scale=scale,
                    path=path,
                    n_feats=info.n_feats,
                    n_blocks=info.n_blocks,
                    parameters=sum(p.numel() for p in model.parameters()),
                    train_scenes=tuple(provenance.get("train_scenes", ())),
                    validation_scenes=tuple(provenance.get("validation_scenes", ())),
                    steps=provenance.get("steps"),
                    validation={k: float(v) for k, v in provenance.get("validation", {}).items()},
                    sha256=info.sha256,
                    computed_in=str(provenance.get("computed_in", "")),
                )
            )
    return found


@dataclass(frozen=True)
class FamilyChoice:
    """What ``--weights auto`` chose for a scene, and why (recorded in manifests and reports). ``cave_scales``: the
    scales at which the family ships no weights, so cave's are used there."""

    family: str
    reason: str
    cave_scales: tuple[int, ...] = ()

    def describe(self) -> str:
        return f"{self.family} (auto: {self.reason})"


def choose_family(bands: int, wavelengths: Sequence[float] | None, scales: Sequence[int]) -> FamilyChoice:
    """The family ``--weights auto`` uses for a scene of ``bands`` bands: airborne when its wavelengths reach beyond
    1000 nm, or, wavelengths unknown, when it has more than 64 bands; cave otherwise. At a scale of ``scales`` (those
    the run takes shipped weights for) where the family ships none, cave's are used, and the reason says so; with
    none at any of them the choice is cave."""
    known = [float(w) for w in wavelengths or () if w == w and w > 0]  # NaN and 0: no wavelength given
    if known:
        top = max(known)
        if top < MICROMETRES_BELOW:  # given in micrometres (ENVI's "wavelength units = Micrometers")
            top *= 1000.0
        wanted = "airborne" if top > AIRBORNE_NM else "cave"
        reason = f"wavelengths reach {top:.0f} nm, {'beyond' if wanted == 'airborne' else 'within'} {AIRBORNE_NM:.0f}"
    else:
        wanted = "airborne" if bands > AIRBORNE_BANDS else "cave"
        than = "more than" if wanted == "airborne" else "at most"
        reason = f"{bands} bands ({than} {AIRBORNE_BANDS}), no wavelengths"
    missing = tuple(s for s in scales if s not in shipped_scales(wanted))
    if wanted == "cave" or not missing:
        return FamilyChoice(wanted, reason)
    have = ", ".join(f"×{s}" for s in missing)
    if len(missing) == len(scales):
        return FamilyChoice("cave", f"{reason}, but no {wanted} weights ship at {have}: cave used")
    return FamilyChoice(wanted, f"{reason}; no {wanted} weights ship at {have}: cave's used there", missing)


def resolve_weights(given: str | Path | None, scale: int) -> Path | None:
    """``--weights`` as given: ``None``/``cave``/``airborne`` → that family's shipped file (``None``: the default
    family, cave), anything else → the path (checked to exist)."""
    if given is None:
        return None
    text = str(given)
    if text in FAMILIES:
        return shipped_weights(scale, text)
    if text == AUTO:
        raise InputError(
            "--weights auto picks a family per scene, which only infer, eval and demo do; name one here: "
            f"{', '.join(FAMILIES)} or a checkpoint PATH"
        )
    path = Path(text)
    if not path.is_file():
        raise CheckpointError(
            f"--weights {text}: neither a weights family ({', '.join(FAMILIES)}) nor an existing checkpoint file"
        )
    return path


def run_weights(given: dict[int, Path], family: str, scales: tuple[int, ...]) -> list[Path]:
    """Every weights file a run may use at ``scales``: the file given for a scale, else the shipped one of
    ``family`` (``auto``: of each family that ships the scale, as scenes choose per scene)."""
    used: list[Path] = []
    for scale in scales:
        if scale in given:
            used.append(given[scale])
            continue
        for name in FAMILIES if family == AUTO else (family,):
            if scale in shipped_scales(name):
                used.append(shipped_weights(scale, name))
    return used


__all__ = [
    "AUTO",
    "FAMILIES",
    "MODEL_CARD",
    "WEIGHTS_DIR",
    "FamilyChoice",
    "ShippedWeights",
    "choose_family",
    "family_dir",
    "list_shipped",
    "model_card",
    "resolve_weights",
    "run_weights",
    "shipped_scales",
    "shipped_weights",
]
