"""``dualsr bench``: statistics, the baseline ratio, FLOP counting and the outputs (timings themselves are never
asserted: they belong to benchmarks, not tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig
from dualsr_deploy.bench import BenchOptions, percentile, run_bench, useful_flops, write_outputs
from dualsr_deploy.cli.main import app
from dualsr_deploy.errors import InputError


@pytest.mark.parametrize("values", [[3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0, 3.0], [0.1, 0.7, 0.2, 9.0]])
def test_percentile_matches_numpy(values: list[float]) -> None:
    for q in (0, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_flops_scale_with_pixels_and_match_the_design_note() -> None:
    model = CoarSR(CoarSRConfig(4, 64, 2))
    per_pixel_band = useful_flops(model, 31, 64, 64) / (31 * 64 * 64)
    # DESIGN.md: about 6.3 MFLOP per LR pixel per band at ×4 for the paper's model
    assert per_pixel_band == pytest.approx(6.3e6, rel=0.1)
    assert useful_flops(model, 31, 128, 64) == pytest.approx(2 * useful_flops(model, 31, 64, 64))


def test_run_bench_rows_ratios_and_outputs(tmp_path: Path) -> None:
    options = BenchOptions(size=64, tiles=(8, 16), repeats=2, backends=("torch", "onnx"))
    report = run_bench(options, work_dir=tmp_path / "work")
    kinds = [(r.backend, r.tile) for r in report.rows]
    assert kinds == [("eager loop", None), ("torch", 8), ("torch", 16), ("onnx", 8), ("onnx", 16)]
    baseline = report.rows[0].median
    for row in report.rows:
        data = row.to_dict()
        assert len(row.times) == 2
        assert data["speedup_vs_baseline"] == pytest.approx(baseline / row.median)
        assert data["fraction_of_ceiling"] > 0
        assert data["lr_mpx_bands_per_s"] == pytest.approx(31 * 16 * 16 / row.median / 1e6)
    write_outputs(report, json_path=tmp_path / "b.json", plot_path=tmp_path / "b.png", history=tmp_path / "h.jsonl")
    write_outputs(report, json_path=None, plot_path=None, history=tmp_path / "h.jsonl")
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["machine"]["matmul_ceiling_gflops"]["fp32"] > 0
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_options() -> None:
    with pytest.raises(InputError, match="not a multiple"):
        BenchOptions(size=100, scales=(8,))
    with pytest.raises(InputError, match="--model"):
        BenchOptions(model="huge")
    with pytest.raises(InputError, match="--batch must be at least 1"):
        BenchOptions(batch=0)


def test_cli_bench_prints_a_table_and_says_what_it_skipped(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--size",
            "64",
            "--tile",
            "16",
            "--repeats",
            "1",
            "--backend",
            "torch",
            "--backend",
            "trt",
            "--json",
            str(tmp_path / "b.json"),
        ],
        terminal_width=250,
    )
    assert result.exit_code == 0, result.output
    assert "eager" in result.output
    assert "skipped" in result.output
    assert (tmp_path / "b.json").is_file()


def test_ratios_against_torch_fp32_and_the_recommendation(monkeypatch: pytest.MonkeyPatch) -> None:
    from dualsr_deploy.backends import precision
    from dualsr_deploy.bench import BenchReport, Row
    from dualsr_deploy.bench.advice import compare_rows

    def row(backend: str, prec: str, median: float, tile: int | None = 64) -> Row:
        return Row(backend, prec, 4, tile, [median], 1e9, 1000, 100.0, 0, "test")

    report = BenchReport(BenchOptions(device="cpu"), {})
    report.rows = [
        row("eager loop", "fp32", 8.0, None),
        row("torch", "fp32", 4.0),
        row("torch", "bf16", 1.0),
        row("openvino", "fp32", 2.0),
        row("openvino", "bf16", 1.5),
    ]
    monkeypatch.setenv("DUALSR_CPU_BF16", "1")
    fp32 = precision.PrecisionChoice("fp32", "test: bf16 failed the quality rule")
    monkeypatch.setattr(precision, "auto_precision", lambda *_args: fp32)
    compare_rows(report)
    assert [r.to_dict()["speedup_vs_torch_fp32"] for r in report.rows] == [None, 1.0, 4.0, 2.0, 4.0 / 1.5]
    assert report.recommendation.startswith("×4: --backend openvino --precision fp32 --tile 64")
    assert "2.00× torch fp32" in report.recommendation
    report.recommendation = ""
    bf16 = precision.PrecisionChoice("bf16", "test: passed")  # had torch bf16 passed, it would win
    monkeypatch.setattr(precision, "auto_precision", lambda backend, *_args: bf16 if backend == "torch" else fp32)
    compare_rows(report)
    assert report.recommendation.startswith("×4: --backend torch --precision bf16")


def test_cli_bench_batches_as_infer_does_so_a_one_tile_scene_is_one_tile_of_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #45: the bench padded every call to 8 tiles, so a one-tile scene did 8× the work on a CPU, where
    ``dualsr infer`` sends one tile a call. Now it batches as infer does unless ``--batch`` says otherwise."""
    from dualsr_deploy.backends.torch_backend import TorchBackend

    seen: list[int] = []
    real = TorchBackend.run

    def counting(self: TorchBackend, batch: object) -> object:
        seen.append(batch.shape[0])  # type: ignore[attr-defined]
        return real(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(TorchBackend, "run", counting)
    out = tmp_path / "bench.json"
    args = ["bench", "--size", "32", "--tile", "8", "--repeats", "1", "--backend", "torch", "--no-baseline"]
    args += ["--device", "cpu", "--json", str(out), "--no-isolate"]  # the count is kept in this process
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["options"]["batch"] == 1
    assert seen
    assert set(seen) == {1}
    seen.clear()
    result = CliRunner().invoke(app, [*args, "--batch", "3"])
    assert result.exit_code == 0, result.output
    assert set(seen) == {3}  # asked for: every call padded to it, as infer pads
    assert json.loads(out.read_text())["options"]["batch"] == 3


def test_each_configuration_is_timed_in_a_process_of_its_own() -> None:
    """Issue #45: timed one after another in one process, a configuration's peak memory read low (the allocator kept
    what the one before had taken: 62, 39, 53 MiB for three identical torch runs here, against 64, 61, 61 MiB each in
    a fresh process). ``isolate`` (the default) gives each its own process; ``--no-isolate`` keeps this one."""
    import os

    import torch

    from dualsr_deploy.bench.run import Config, measured

    options = BenchOptions(size=32, tiles=(8,), repeats=1, backends=("torch",), baseline=False)
    config = Config(options, 4, "torch", "fp32", None, 8, torch.get_num_threads())
    first, second = measured(config), measured(config)
    assert first.error is None
    assert len(first.times) == 1
    assert first.peak_memory > 0
    assert len({first.process, second.process, os.getpid()}) == 3
    here = measured(Config(BenchOptions(size=32, isolate=False), 4, "torch", "fp32", None, 8, 1))
    assert here.process == os.getpid()


def test_the_bench_never_times_an_fp32_graph_as_int8(tmp_path: Path) -> None:
    """INT8 graphs come from a calibration that passed the quality rule (dualsr export --int8): the bench says it
    cannot make one instead of timing the fp32 graph under an int8 label."""
    from dualsr_deploy.bench.run import _backends
    from tests.helpers import random_coarsr

    skipped: list[str] = []
    found = _backends(
        BenchOptions(backends=("onnx",), precisions=("fp32", "int8"), size=64), random_coarsr(4), tmp_path, skipped
    )
    assert [(name, precision) for name, precision, _ in found] == [("onnx", "fp32")]
    assert len(skipped) == 1
    assert skipped[0].startswith("onnx-int8: INT8 graphs need a calibration that passed the quality rule")
