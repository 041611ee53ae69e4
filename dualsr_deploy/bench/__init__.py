"""``dualsr bench``: how fast each backend super-resolves a CAVE-size scene (:mod:`.run`), what it recommends
(:mod:`.advice`), how it times and measures memory (:mod:`.measure`), and its records (:mod:`.report`).

Order inside the package: ``run`` → ``advice`` → ``report``; ``run`` → ``measure``."""

from dualsr_deploy.bench.advice import compare_rows, default_backends, default_precisions, within_tolerance
from dualsr_deploy.bench.measure import MemoryPeak, matmul_ceiling, status_bytes, time_runs
from dualsr_deploy.bench.report import MODELS, SPREAD_WARNING, BenchOptions, BenchReport, Row, percentile
from dualsr_deploy.bench.run import run_bench, tiled_scene, useful_flops, write_outputs

__all__ = [
    "MODELS",
    "SPREAD_WARNING",
    "BenchOptions",
    "BenchReport",
    "MemoryPeak",
    "Row",
    "compare_rows",
    "default_backends",
    "default_precisions",
    "matmul_ceiling",
    "percentile",
    "run_bench",
    "status_bytes",
    "tiled_scene",
    "time_runs",
    "useful_flops",
    "within_tolerance",
    "write_outputs",
]
