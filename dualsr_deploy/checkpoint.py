"""Reading and writing CoarSR checkpoints, never unpickling arbitrary objects.

Two formats are read:

- **published** (the authors' training code): ``{"epoch", "model", "optimizer"}`` or a bare state dict, keys
  optionally prefixed ``module.`` (``nn.DataParallel``), weight norm as ``weight_g``/``weight_v``. Loaded with
  ``torch.load(..., weights_only=True)``. Scale, ``n_feats`` and ``n_blocks`` are inferred from the tensors; it
  carries no neighbour rule, so ``reference`` is assumed (what the published loops trained with).
- **dualsr** (this project's): a ``.safetensors`` file whose header metadata holds a JSON document under the key
  ``dualsr`` (scale, n_feats, n_blocks, neighbour rule, bands, provenance, version). Weights keep the published
  names, so a conversion loses nothing.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from dualsr_deploy._version import __version__
from dualsr_deploy.archs.coarsr import SUPPORTED_SCALES, CoarSR, CoarSRConfig
from dualsr_deploy.archs.neighbours import NeighbourRule, check_rule
from dualsr_deploy.artefacts import sha256_of
from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.errors import CheckpointError

FORMAT_TAG = "dualsr-coarsr/1"
StateDict = dict[str, torch.Tensor]
_MAX_LISTED = 5


@dataclass(frozen=True)
class CheckpointInfo:
    """What was detected in a checkpoint file."""

    path: str
    format: Literal["published", "dualsr"]
    sha256: str
    scale: int
    n_feats: int
    n_blocks: int
    neighbour_rule: NeighbourRule
    rule_source: str
    parameters: int
    bands: int | None = None
    epoch: int | None = None
    version: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> CoarSRConfig:
        return CoarSRConfig(self.scale, self.n_feats, self.n_blocks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["provenance"] = dict(self.provenance)
        return data


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" … ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def _is_safetensors(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < length < path.stat().st_size


def _looks_like_torch_save(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle stream (protocol ≥ 2, the legacy format)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _read_published(path: Path) -> tuple[StateDict, int | None]:
    if not _looks_like_torch_save(path):
        raise CheckpointError(
            f"{path}: not a checkpoint (neither a dualsr .safetensors file nor a PyTorch file saved with torch.save)"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here: unpickling, zip, EOF, runtime
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it contains pickled Python objects, which are never loaded (weights_only=True)"
        raise CheckpointError(
            f"{path}: not a readable CoarSR checkpoint ({reason}). Expected a PyTorch file saved with "
            "torch.save (published format) or a dualsr .safetensors file."
        ) from exc
    epoch: int | None = None
    state: Any = loaded
    if isinstance(loaded, Mapping) and not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), Mapping):
                state = loaded[key]
                break
        else:
            raise CheckpointError(
                f"{path}: a dict without model weights (keys: {_listed(sorted(map(str, loaded)))}); expected "
                'a state dict or {"epoch", "model", "optimizer"}'
            )
        if isinstance(loaded.get("epoch"), int):
            epoch = loaded["epoch"]
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {_listed(bad)}")
    return {str(k): v for k, v in state.items()}, epoch


def _normalise_keys(state: StateDict) -> StateDict:
    """Drop a ``module.`` prefix and map torch's parametrised weight norm onto ``weight_g``/``weight_v``."""
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    renamed = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        renamed[key] = value
    return renamed


def infer_config(state: StateDict, path: Path) -> CoarSRConfig:
    """Scale, ``n_feats`` and ``n_blocks`` from the tensors of a CoarSR state dict."""
    needed = ["head_group_one.bias", "tail.0.0.weight_v"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a CoarSR state dict; missing keys {_listed(missing)} (it has {_listed(sorted(state))})"
        )
    n_feats = int(state["head_group_one.bias"].shape[0])
    block_ids = {
        int(m.group(1))
        for k in state
        if (m := re.match(r"GFM_intra_one\.left_one_body\.body\.0\.(\d+)\.", k)) is not None
    }
    n_blocks = max(block_ids) + 1 if block_ids else 0
    upsample_convs = sorted(
        int(m.group(1)) for k in state if (m := re.fullmatch(r"tail\.0\.(\d+)\.weight_v", k)) is not None
    )
    first_out = int(state["tail.0.0.weight_v"].shape[0])
    if first_out == 9 * n_feats and len(upsample_convs) == 1:
        scale = 3
    elif first_out == 4 * n_feats:
        scale = 2 ** len(upsample_convs)
    else:
        raise CheckpointError(
            f"{path}: cannot infer the scale: tail.0.0.weight_v has {first_out} output channels, expected "
            f"4·n_feats = {4 * n_feats} (scales 2, 4, 8) or 9·n_feats = {9 * n_feats} (scale 3)"
        )
    if scale not in SUPPORTED_SCALES or n_blocks < 1:
        raise CheckpointError(f"{path}: unsupported configuration scale={scale}, n_blocks={n_blocks}")
    return CoarSRConfig(scale, n_feats, n_blocks)


def _check_against_model(state: StateDict, model: CoarSR, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    wrong = [
        f"{k} {tuple(state[k].shape)} ≠ {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        problems.append(f"shapes that do not fit: {_listed(wrong)}")
    if problems:
        cfg = model.config
        raise CheckpointError(
            f"{path}: does not fit CoarSR(scale={cfg.scale}, n_feats={cfg.n_feats}, n_blocks={cfg.n_blocks}): "
            + "; ".join(problems)
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: non-finite weights in {_listed(bad)}")


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[CoarSR, CheckpointInfo]:
    """Load a checkpoint of either format into the per-band :class:`CoarSR` (float32, eval mode, CPU)."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{file}: no such checkpoint file")
    metadata: dict[str, Any] = {}
    epoch = None
    if _is_safetensors(file):
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(file), framework="pt") as handle:
                header = handle.metadata() or {}
            state = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: corrupt safetensors file ({exc})") from exc
        if "dualsr" not in header:
            raise CheckpointError(
                f"{file}: a safetensors file without dualsr metadata; convert published checkpoints with "
                "`dualsr convert OLD.pth NEW.safetensors`"
            )
        try:
            metadata = json.loads(header["dualsr"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{file}: unreadable dualsr metadata ({exc})") from exc
        fmt: Literal["published", "dualsr"] = "dualsr"
    else:
        state, epoch = _read_published(file)
        fmt = "published"
    state = _normalise_keys(state)
    config = infer_config(state, file)
    for key in ("scale", "n_feats", "n_blocks"):
        if key in metadata and metadata[key] != getattr(config, key):
            raise CheckpointError(
                f"{file}: metadata says {key}={metadata[key]} but the weights say {getattr(config, key)}"
            )
    model = CoarSR(config)
    _check_against_model(state, model, file)
    model.load_state_dict(state)
    model.eval()
    if fmt == "dualsr":
        rule, source = check_rule(str(metadata.get("neighbour_rule", ""))), "metadata"
    else:
        rule, source = "reference", "published-format default"
    info = CheckpointInfo(
        path=str(file),
        format=fmt,
        sha256=sha256_of(file),
        scale=config.scale,
        n_feats=config.n_feats,
        n_blocks=config.n_blocks,
        neighbour_rule=rule,
        rule_source=source,
        parameters=sum(p.numel() for p in model.parameters()),
        bands=metadata.get("bands"),
        epoch=epoch if epoch is not None else metadata.get("epoch"),
        version=metadata.get("version"),
        provenance=dict(metadata.get("provenance", {})),
    )
    return model, info


def write_checkpoint(
    model: CoarSR,
    path: str | os.PathLike[str],
    *,
    neighbour_rule: NeighbourRule,
    bands: int | None = None,
    epoch: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` in the project's format (``.safetensors`` with dualsr metadata), atomically."""
    from safetensors.torch import save_file

    target = Path(path)
    if target.suffix != ".safetensors":
        raise CheckpointError(f"{target}: the project's checkpoint format needs a .safetensors file name")
    cfg = model.config
    metadata = {
        "format": FORMAT_TAG,
        "scale": cfg.scale,
        "n_feats": cfg.n_feats,
        "n_blocks": cfg.n_blocks,
        "neighbour_rule": check_rule(neighbour_rule),
        "bands": bands,
        "epoch": epoch,
        "version": __version__,
        "provenance": dict(provenance or {}),
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_output(target) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "dualsr": json.dumps(metadata)})
    return target
