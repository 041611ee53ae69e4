"""Export recipes: one committed TOML file per deployable variant (``export/*.toml``).

```toml
name = "coarsr-x4-c31"        # output folder engines/<name>/
scale = 4
bands = 31
precisions = ["fp32", "fp16"]
# checkpoint = "path.safetensors"   # relative to this file; default: the shipped weights for `scale`
# neighbours = "paper"              # default: the checkpoint's rule

[tensorrt]                    # optimisation profile, (batch, height, width) of LR tiles
min_tile = [1, 32, 32]
opt_tile = [4, 64, 64]
max_tile = [8, 128, 128]
workspace_mib = 4096
```
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dualsr_deploy.archs.coarsr import SUPPORTED_SCALES
from dualsr_deploy.archs.neighbours import MIN_BANDS, NeighbourRule, check_rule
from dualsr_deploy.artefacts import variant_name
from dualsr_deploy.errors import RecipeError
from dualsr_deploy.export.onnx import PRECISIONS, Precision

Tile = tuple[int, int, int]


@dataclass(frozen=True)
class TensorRTProfile:
    """One optimisation profile over LR tile batches ``(batch, height, width)``."""

    min_tile: Tile = (1, 32, 32)
    opt_tile: Tile = (4, 64, 64)
    max_tile: Tile = (8, 128, 128)
    workspace_mib: int = 4096

    def __post_init__(self) -> None:
        for low, mid, high in zip(self.min_tile, self.opt_tile, self.max_tile, strict=True):
            if not 1 <= low <= mid <= high:
                raise RecipeError(
                    f"TensorRT profile needs 1 ≤ min ≤ opt ≤ max per dimension; got min {self.min_tile}, "
                    f"opt {self.opt_tile}, max {self.max_tile}"
                )
        if self.workspace_mib < 1:
            raise RecipeError(f"workspace_mib must be positive; got {self.workspace_mib}")


@dataclass(frozen=True)
class Recipe:
    """A deployable variant: which model, for which band count, in which precisions and tile shapes."""

    name: str
    scale: int
    bands: int = 31
    precisions: tuple[Precision, ...] = ("fp32", "fp16")
    checkpoint: Path | None = None
    neighbours: NeighbourRule | None = None
    tensorrt: TensorRTProfile = field(default_factory=TensorRTProfile)

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise RecipeError(
                f"recipe {self.name!r}: scale {self.scale} is not supported; CoarSR exists for "
                f"{', '.join(map(str, SUPPORTED_SCALES))}"
            )
        if self.bands < MIN_BANDS:
            raise RecipeError(f"recipe {self.name!r}: bands must be ≥ {MIN_BANDS}; got {self.bands}")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            hint = " (INT8: dualsr export --int8 --calibrate STORE)" if "int8" in bad else ""
            raise RecipeError(
                f"recipe {self.name!r}: precisions must be among {', '.join(PRECISIONS)}; got {bad}{hint}"
            )
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise RecipeError(f"recipe name {self.name!r} must be a plain folder name")

    def with_overrides(self, **changes: Any) -> Recipe:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def default_recipe(scale: int, bands: int = 31) -> Recipe:
    """The recipe ``dualsr export --scale S`` uses when no recipe file is given."""
    return Recipe(name=variant_name(scale, bands), scale=scale, bands=bands)


_TOP_KEYS = {"name", "scale", "bands", "precisions", "checkpoint", "neighbours", "tensorrt"}
_TRT_KEYS = {"min_tile", "opt_tile", "max_tile", "workspace_mib"}


def _tile(value: Any, key: str) -> Tile:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise RecipeError(f"tensorrt.{key} must be three integers [batch, height, width]; got {value!r}")
    return (value[0], value[1], value[2])


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate one recipe file; relative checkpoint paths are taken relative to the file."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except OSError as exc:
        raise RecipeError(f"{file}: cannot read recipe ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{file}: not valid TOML ({exc})") from exc
    unknown = sorted(set(data) - _TOP_KEYS) + sorted(f"tensorrt.{k}" for k in set(data.get("tensorrt", {})) - _TRT_KEYS)
    if unknown:
        raise RecipeError(f"{file}: unknown keys {', '.join(unknown)}")
    for key in ("name", "scale"):
        if key not in data:
            raise RecipeError(f"{file}: missing required key {key!r}")
    trt = data.get("tensorrt", {})
    checkpoint = data.get("checkpoint")
    try:
        defaults = TensorRTProfile()
        profile = TensorRTProfile(
            min_tile=_tile(trt["min_tile"], "min_tile") if "min_tile" in trt else defaults.min_tile,
            opt_tile=_tile(trt["opt_tile"], "opt_tile") if "opt_tile" in trt else defaults.opt_tile,
            max_tile=_tile(trt["max_tile"], "max_tile") if "max_tile" in trt else defaults.max_tile,
            workspace_mib=int(trt.get("workspace_mib", defaults.workspace_mib)),
        )
        return Recipe(
            name=str(data["name"]),
            scale=int(data["scale"]),
            bands=int(data.get("bands", 31)),
            precisions=tuple(data.get("precisions", ("fp32", "fp16"))),
            checkpoint=(file.parent / checkpoint) if checkpoint else None,
            neighbours=check_rule(data["neighbours"]) if "neighbours" in data else None,
            tensorrt=profile,
        )
    except RecipeError as exc:
        raise RecipeError(f"{file}: {exc}") from exc
