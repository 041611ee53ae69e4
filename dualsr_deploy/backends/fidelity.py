"""The quality rule for reduced precisions, and the records of it kept beside the weights.

A reduced precision (bf16, and any later one) is acceptable for a set of weights when, on the held-out scenes of
the weights' model card, it lowers PSNR against HR by at most :data:`PSNR_DROP` dB and raises SAM against HR by at
most :data:`SAM_RISE` degrees against fp32, on every scene, for the coarse result and the fine one. ``dualsr card
WEIGHTS --store … --precision bf16`` measures it and writes ``<weights>.fidelity.json`` beside the weights (one
record per backend × precision × device kind); ``--precision auto`` reads those files for every weights file a run
may use.

A record file is a claim like any other input: it is used only when it parses, names the SHA-256 of the weights it
sits beside, and its per-scene numbers pass the rule when checked again here (its own verdict is not trusted).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PSNR_DROP = 0.02  # dB: the most PSNR against HR may fall, per scene, against fp32
SAM_RISE = 0.02  # degrees: the most SAM against HR may rise, per scene, against fp32
FORMAT = "dualsr-fidelity/1"
SUFFIX = ".fidelity.json"
RULE_TEXT = f"PSNR against HR at most {PSNR_DROP} dB lower and SAM at most {SAM_RISE}° higher than fp32's, per scene"


def record_path(weights: Path) -> Path:
    """Where the records of ``weights`` are kept: ``coarsr_x4.safetensors`` → ``coarsr_x4.fidelity.json``."""
    return weights.with_name(weights.stem + SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def device_kind(device: str) -> str:
    """The kind of device a record holds for: ``cpu-bf16`` (a CPU with native bf16), ``cpu``, ``cuda``, or another
    device's own name (an OpenVINO ``gpu`` or ``npu``), for which no CPU record counts."""
    name = device.lower()
    if name.startswith("cuda"):
        return "cuda"
    if not name.startswith("cpu"):
        return name.split(":")[0].split(".")[0]
    from dualsr_deploy.runtimes import cpu_native_bf16

    return "cpu-bf16" if cpu_native_bf16() else "cpu"


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_words(device: str) -> str:
    """The device a record was measured on, in words: the GPU's name, else the CPU's model name."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return _cpu_name()


def software_versions(backend: str) -> dict[str, str]:
    """The versions a record of ``backend`` was measured with: this package, torch and the backend's runtime."""
    import contextlib
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from dualsr_deploy._version import __version__

    found = {"dualsr-deploy": __version__, "torch": torch.__version__}
    package = {"onnx": "onnxruntime", "openvino": "openvino", "trt": "tensorrt"}.get(backend)
    if package:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


@dataclass(frozen=True)
class SceneDelta:
    """One held-out scene, one result (``coarse`` or the run's fine ``stage``): fp32's and the reduced precision's
    PSNR (dB) and SAM (degrees) against HR."""

    scene: str
    result: str
    psnr_fp32: float
    sam_fp32: float
    psnr: float
    sam: float

    @property
    def d_psnr(self) -> float:
        return self.psnr - self.psnr_fp32

    @property
    def d_sam(self) -> float:
        return self.sam - self.sam_fp32

    def passes(self) -> bool:
        return self.d_psnr >= -PSNR_DROP and self.d_sam <= SAM_RISE

    def describe(self) -> str:
        return f"{self.scene} ({self.result}): {self.d_psnr:+.4f} dB, SAM {self.d_sam:+.4f}°"


@dataclass(frozen=True)
class FidelityRecord:
    """One measurement: ``precision`` against fp32 on ``backend`` on a device of ``kind``, per held-out scene."""

    backend: str
    precision: str
    kind: str
    device: str  # the device and CPU it was measured on, in words
    stage: str
    scale: int
    tile: int | None
    half_sha256: str | None  # the ×s/2 weights of the dual stage, when measured with them
    seconds_fp32: float  # warm: one timed pass after an untimed one (see timed_side)
    seconds: float
    measured: str  # ISO date
    software: dict[str, str]
    scenes: tuple[SceneDelta, ...]
    # What the seconds timed: each held-out scene repeated to at least this many LR pixels a side (a tile's
    # window, :func:`dualsr_deploy.evaluation.fidelity.timing_side`); None: the scenes as they are (records before
    # 2026-12-07), which on small scenes times each backend's per-call overhead more than its work
    timed_side: int | None = None

    def failures(self) -> list[SceneDelta]:
        return [s for s in self.scenes if not s.passes()]

    def passes(self) -> bool:
        return bool(self.scenes) and not self.failures()

    @property
    def speedup(self) -> float:
        return self.seconds_fp32 / self.seconds if self.seconds > 0 else math.nan

    def worst(self) -> tuple[float, float]:
        """The largest PSNR drop and SAM rise over the scenes (dB, degrees)."""
        return (max(-s.d_psnr for s in self.scenes), max(s.d_sam for s in self.scenes))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["scenes"] = [asdict(s) for s in self.scenes]
        return out

    @classmethod
    def from_json(cls, raw: Any) -> FidelityRecord:
        """A record from its JSON form; ValueError/TypeError/KeyError for anything that is not one."""
        if not isinstance(raw, dict):
            raise TypeError("a record is not an object")
        scenes = tuple(
            SceneDelta(
                str(s["scene"]),
                str(s["result"]),
                *(_finite(s[k]) for k in ("psnr_fp32", "sam_fp32", "psnr", "sam")),
            )
            for s in raw["scenes"]
        )
        return cls(
            backend=str(raw["backend"]),
            precision=str(raw["precision"]),
            kind=str(raw["kind"]),
            device=str(raw.get("device", "")),
            stage=str(raw["stage"]),
            scale=int(raw["scale"]),
            tile=None if raw.get("tile") is None else int(raw["tile"]),
            half_sha256=None if raw.get("half_sha256") is None else str(raw["half_sha256"]),
            seconds_fp32=_finite(raw.get("seconds_fp32", math.nan), allow_nan=True),
            seconds=_finite(raw.get("seconds", math.nan), allow_nan=True),
            measured=str(raw.get("measured", "")),
            software={str(k): str(v) for k, v in dict(raw.get("software", {})).items()},
            scenes=scenes,
            timed_side=_side(raw.get("timed_side")),
        )


def timing_words(side: int | None) -> str:
    """What a record's seconds timed, in words (:attr:`FidelityRecord.timed_side`)."""
    if side is None:
        return "the weights' held-out scenes as they are"
    return f"the weights' held-out scenes repeated to {side} × {side} LR windows"


def _side(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 16:
        raise ValueError(f"timed_side is not a side in pixels: {value!r}")
    return value


def _finite(value: Any, allow_nan: bool = False) -> float:
    number = float(value)
    if not (math.isfinite(number) or (allow_nan and math.isnan(number))):
        raise ValueError(f"not a finite number: {value!r}")
    return number


@dataclass
class FidelityFile:
    """The records of one weights file (``weights_sha256``)."""

    weights_name: str
    weights_sha256: str
    records: list[FidelityRecord] = field(default_factory=list)

    def find(self, backend: str, precision: str, kind: str) -> FidelityRecord | None:
        return next(
            (r for r in self.records if (r.backend, r.precision, r.kind) == (backend, precision, kind)),
            None,
        )

    def merge(self, new: Iterable[FidelityRecord]) -> None:
        """Add ``new``, each replacing an older record of the same backend, precision and device kind."""
        for record in new:
            self.records = [
                r
                for r in self.records
                if (r.backend, r.precision, r.kind) != (record.backend, record.precision, record.kind)
            ]
            self.records.append(record)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rule": {"psnr_drop_db": PSNR_DROP, "sam_rise_deg": SAM_RISE, "text": RULE_TEXT},
            "weights": {"name": self.weights_name, "sha256": self.weights_sha256},
            "records": [r.to_json() for r in self.records],
        }

    def write(self, path: Path) -> None:
        from dualsr_deploy.atomic import atomic_output

        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


_CHECKED: dict[tuple[Path, Path], tuple[tuple[object, ...], FidelityFile | None, str]] = {}


def read_records(weights: Path, path: Path | None = None) -> tuple[FidelityFile | None, str]:
    """The records kept for ``weights`` (at ``path``, default :func:`record_path`), or None and why not. Checked
    once per state of the two files (their modification times and sizes): a run asks for every scene's record."""
    path = path or record_path(weights)
    stamp = (_stamp(weights), _stamp(path))
    cached = _CHECKED.get((weights, path))
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    found, why = _read_records(weights, path)
    _CHECKED[(weights, path)] = (stamp, found, why)
    return found, why


def _read_records(weights: Path, path: Path) -> tuple[FidelityFile | None, str]:
    if not path.is_file():
        return None, f"no quality record beside {weights.name} ({path.name})"
    if path.stat().st_size > 4 << 20:
        return None, f"{path.name} is over 4 MiB: not a quality record"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        named = raw["weights"]
        records = [FidelityRecord.from_json(r) for r in raw["records"]]
        found = FidelityFile(str(named["name"]), str(named["sha256"]), records)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, f"{path.name} is not a readable quality record ({exc})"
    if found.weights_sha256 != file_sha256(weights):
        return None, f"{path.name} was measured for other weights than {weights.name} (SHA-256 differs)"
    return found, ""


def verdict(weights: Path, backend: str, precision: str, kind: str) -> tuple[bool, str]:
    """Whether ``precision`` on ``backend`` passed the rule for ``weights`` on a device of ``kind``, and why."""
    found, why = read_records(weights)
    if found is None:
        return False, why
    record = found.find(backend, precision, kind)
    if record is None:
        return False, f"{weights.name} has no {backend} {precision} record for a {kind} device"
    failed = record.failures()
    if not record.scenes:
        return False, f"{weights.name}'s {backend} {precision} record holds no scenes"
    if failed:
        return False, f"{backend} {precision} failed the quality rule for {weights.name}: {failed[0].describe()}"
    drop, rise = record.worst()
    return True, (
        f"{backend} {precision} passed for {weights.name} on {len({s.scene for s in record.scenes})} held-out scenes "
        f"(worst {-drop:+.4f} dB, SAM {rise:+.4f}°)"
    )


__all__ = [
    "PSNR_DROP",
    "RULE_TEXT",
    "SAM_RISE",
    "FidelityFile",
    "FidelityRecord",
    "SceneDelta",
    "device_kind",
    "device_words",
    "file_sha256",
    "read_records",
    "record_path",
    "software_versions",
    "timing_words",
    "verdict",
]
