"""``dualsr demo``: the shipped weights on a built-in example, with no data and no network, to a report.

The example is made on the spot (:mod:`dualsr_deploy.data.synth`): measured reflectance spectra (colour-science)
laid over segmented scikit-image sample photographs, 31 bands over 400–700 nm like CAVE. Its LR is simulated by
the paper's protocol, and bicubic, CoarSR ×4 and DualSR ×4 are scored against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.data.writers import write_scene
from dualsr_deploy.evaluation.core import EvalOptions, EvalReport, evaluate_archive
from dualsr_deploy.evaluation.reports import write_reports
from dualsr_deploy.infer.options import BackendSpec


def best_backend(precision: str = "auto") -> BackendSpec:
    """The torch backend on CUDA when there is one, else on the CPU, in ``precision`` (``auto``: see
    :mod:`dualsr_deploy.backends.precision`)."""
    return BackendSpec.for_run("torch", scale=4, stage="dual", precision=precision)


def run_demo(
    out_dir: str | os.PathLike[str] = "demo",
    *,
    scenes: int = 2,
    size: int = 256,
    precision: str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[EvalReport, dict[str, Path]]:
    out = Path(out_dir)
    hr_dir = out / "hr"
    for seed in range(scenes):
        if progress is not None:
            progress(f"making example scene {seed + 1}", seed, scenes)
        write_scene(hr_dir / f"example_{seed}.h5", synthesize(seed, size=size, bands=31))
    options = EvalOptions(scale=4, backends=(best_backend(precision),), stage="dual")
    report = evaluate_archive(hr_dir, options, progress=progress)
    return report, write_reports(report, out, options, progress=progress)
