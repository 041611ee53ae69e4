"""What ``dualsr bench`` is asked (:class:`BenchOptions`) and what it measured (:class:`Row`, :class:`BenchReport`)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from dualsr_deploy.errors import InputError

MODELS = {"shipped": (16, 1), "paper": (64, 2)}  # (n_feats, n_blocks): the shipped weights' size, the paper's
SPREAD_WARNING = 0.10  # (max − min) / median above this: the figure is noisy


@dataclass(frozen=True)
class BenchOptions:
    scales: tuple[int, ...] = (4,)
    size: int = 512  # HR side (CAVE: 512)
    bands: int = 31
    tiles: tuple[int, ...] = (64,)
    batch: int = 1  # tiles per backend call, padded as dualsr infer pads them (the CLI: infer's default per device)
    backends: tuple[str, ...] = ("torch", "onnx")
    precisions: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    model: str = "shipped"
    repeats: int = 3
    baseline: bool = True
    isolate: bool = True  # each configuration timed in a fresh process, so that its memory figure is its own

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"--model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if self.repeats < 1:
            raise InputError("--repeats must be at least 1")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1; got {self.batch}")
        bad = [s for s in self.scales if self.size % s]
        if bad:
            raise InputError(f"--size {self.size} is not a multiple of scale(s) {bad}")


@dataclass
class Row:
    backend: str
    precision: str
    scale: int
    tile: int | None  # None: the baseline (whole scene, band by band)
    times: list[float]
    flops: float
    lr_pixels_bands: int
    ceiling_gflops: float
    peak_memory: int
    memory_kind: str
    baseline_median: float | None = None
    note: str = ""
    torch_fp32_median: float | None = None  # the torch fp32 row of the same scale and tile, in the same run

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p90(self) -> float:
        return percentile(self.times, 90)

    @property
    def spread(self) -> float:
        return (max(self.times) - min(self.times)) / self.median if self.median > 0 else 0.0

    @property
    def gflops(self) -> float:
        return self.flops / self.median / 1e9

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            median=self.median,
            p90=self.p90,
            min=min(self.times),
            max=max(self.times),
            spread=self.spread,
            noisy=self.spread > SPREAD_WARNING,
            scenes_per_s=1 / self.median,
            lr_mpx_bands_per_s=self.lr_pixels_bands / self.median / 1e6,
            gflops=self.gflops,
            fraction_of_ceiling=self.gflops / self.ceiling_gflops if self.ceiling_gflops else None,
            speedup_vs_baseline=(self.baseline_median / self.median) if self.baseline_median else None,
            speedup_vs_torch_fp32=(self.torch_fp32_median / self.median) if self.torch_fp32_median else None,
        )
        return data


@dataclass
class BenchReport:
    options: BenchOptions
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recommendation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": asdict(self.options),
            "machine": self.machine,
            "rows": [row.to_dict() for row in self.rows],
            "skipped": self.skipped,
            "recommendation": self.recommendation,
        }


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), on a plain list."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


__all__ = ["MODELS", "SPREAD_WARNING", "BenchOptions", "BenchReport", "Row", "percentile"]
