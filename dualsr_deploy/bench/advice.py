"""What ``dualsr bench`` measures by default, and what it recommends: the fastest configuration whose precision is
within tolerance, with every row's ratio against torch fp32 of the same run."""

from __future__ import annotations

from dualsr_deploy.bench.report import BenchReport


def default_backends() -> list[str]:
    """torch and onnx, and openvino when it is installed."""
    from dualsr_deploy.optional import find

    return ["torch", "onnx"] + (["openvino"] if find("openvino") is not None else [])


def default_precisions(device: str) -> list[str]:
    """fp32, and bf16 where the device computes it natively (a CPU with AVX512-BF16/AMX, or CUDA)."""
    from dualsr_deploy.runtimes import cpu_native_bf16

    native = device.startswith("cuda") or cpu_native_bf16()
    return ["fp32", "bf16"] if native else ["fp32"]


def within_tolerance(backend: str, precision: str, device: str, model: str = "shipped", scale: int = 4) -> bool:
    """Whether results in ``precision`` are acceptable: fp32 itself, or the reduced precision that ``--precision
    auto`` picks for this backend and device with the shipped weights at ``scale`` (the quality rule, measured by
    ``dualsr card --precision``); the paper-size model has no weights measured, so only its fp32 is."""
    from dualsr_deploy.backends.precision import auto_precision
    from dualsr_deploy.weights import run_weights

    if precision == "fp32":
        return True
    if model != "shipped":
        return False
    return auto_precision(backend, device, run_weights({}, "auto", (scale,))).precision == precision


def compare_rows(report: BenchReport) -> None:
    """Fill each row's ratio against torch fp32 (same scale and tile) and the report's recommendation: the fastest
    configuration within tolerance (:func:`within_tolerance`)."""
    reference = {(r.scale, r.tile): r.median for r in report.rows if r.backend == "torch" and r.precision == "fp32"}
    for row in report.rows:
        if row.tile is not None:
            row.torch_fp32_median = reference.get((row.scale, row.tile))
    device = report.options.device
    for scale in report.options.scales:
        candidates = [
            r
            for r in report.rows
            if r.scale == scale
            and r.tile is not None
            and within_tolerance(r.backend, r.precision, device, report.options.model, scale)
        ]
        if not candidates:
            continue
        best = min(candidates, key=lambda r: r.median)
        versus = f", {best.torch_fp32_median / best.median:.2f}× torch fp32" if best.torch_fp32_median else ""
        report.recommendation += (
            f"×{scale}: --backend {best.backend} --precision {best.precision} --tile {best.tile} "
            f"({best.median:.3f} s a scene{versus}), the fastest configuration whose precision is within tolerance. "
        )
    report.recommendation = report.recommendation.strip()


__all__ = ["compare_rows", "default_backends", "default_precisions", "within_tolerance"]
