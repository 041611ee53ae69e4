"""``dualsr demo``: the shipped weights on built-in examples, with no data and no network, to a report.

The examples are a real airborne scene shipped with the package (``dualsr_deploy/examples/``: an AVIRIS crop, its
provenance in the README there) and, on request, synthetic CAVE-like scenes made on the spot
(:mod:`dualsr_deploy.data.synth`: measured reflectance spectra laid over segmented scikit-image photographs, 31
bands over 400–700 nm). Each scene's LR is simulated by the paper's protocol, the weights are chosen per scene as
``--weights auto`` does, and bicubic, CoarSR ×4 and DualSR ×4 are scored against the HR.

The synthetic scenes are not in the default run: their spectra are exact multiples of one another within each
segment and noise-free, so bicubic interpolation keeps them exactly inside segments and scores a lower SAM than any
learned model (on the default two: 3.3° against DualSR's 4.7°), which says more about the scene than the method.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.evaluation.core import EvalOptions, EvalReport, evaluate_archive
from dualsr_deploy.evaluation.reports import write_reports
from dualsr_deploy.infer.options import BackendSpec

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def example_scenes() -> list[Path]:
    """The real scenes shipped with the package."""
    return sorted(EXAMPLES_DIR.glob("*.h5"))


def best_backend(precision: str = "auto", weights: str | None = None) -> BackendSpec:
    """The torch backend on CUDA when there is one, else on the CPU, in ``precision`` (``auto``: see
    :mod:`dualsr_deploy.backends.precision`), with ``weights`` (default: auto, a family per scene)."""
    return BackendSpec.for_run("torch", scale=4, stage="dual", precision=precision, weights=weights)


def run_demo(
    out_dir: str | os.PathLike[str] = "demo",
    *,
    synthetic: int = 0,
    size: int = 256,
    precision: str = "auto",
    weights: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[EvalReport, dict[str, Path]]:
    """The shipped real scenes and ``synthetic`` synthetic ones (``size``² pixels) super-resolved ×4 and scored."""
    out = Path(out_dir)
    hr_dir = out / "hr"
    hr_dir.mkdir(parents=True, exist_ok=True)
    for stale in hr_dir.glob("example_*.h5"):  # synthetic scenes of an earlier demo in this folder
        stale.unlink()
    for path in example_scenes():
        shutil.copyfile(path, hr_dir / path.name)
    for seed in range(synthetic):
        if progress is not None:
            progress(f"making example scene {seed + 1}", seed, synthetic)
        write_scene(hr_dir / f"example_{seed}.h5", synthesize(seed, size=size, bands=31))
    options = EvalOptions(scale=4, backends=(best_backend(precision, weights),), stage="dual")
    report = evaluate_archive(hr_dir, options, progress=progress)
    return report, write_reports(report, out, options, progress=progress)
