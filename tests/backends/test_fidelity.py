"""The quality rule's records (``WEIGHTS.fidelity.json``) and ``--precision auto`` reading them (issue #45): a record
is used only when it names the weights it sits beside and its numbers pass the rule when checked again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dualsr_deploy.backends import choice as choice_module
from dualsr_deploy.backends.fidelity import (
    PSNR_DROP,
    SAM_RISE,
    FidelityFile,
    FidelityRecord,
    SceneDelta,
    file_sha256,
    read_records,
    record_path,
)
from dualsr_deploy.backends.precision import auto_precision
from dualsr_deploy.checkpoint import write_checkpoint
from dualsr_deploy.errors import BackendUnavailableError, InputError
from dualsr_deploy.infer.options import AUTO_TILE
from dualsr_deploy.runtimes import CPU_BF16_ENV
from tests.helpers import random_coarsr


def _record(d_psnr: float, d_sam: float, *, backend: str = "torch", precision: str = "bf16") -> FidelityRecord:
    scenes = tuple(
        SceneDelta(name, result, 40.0, 2.0, 40.0 + d_psnr, 2.0 + d_sam)
        for name in ("a", "b")
        for result in ("coarse", "dual")
    )
    return FidelityRecord(
        backend, precision, "cpu-bf16", "test CPU", "dual", 4, None, None, 2.0, 1.0, "2026-12-06", {}, scenes
    )


def _weights(tmp_path: Path, name: str, *records: FidelityRecord) -> Path:
    path = write_checkpoint(random_coarsr(4, n_feats=4), tmp_path / name, neighbour_rule="paper")
    if records:
        kept = FidelityFile(path.name, file_sha256(path))
        kept.merge(records)
        kept.write(record_path(path))
    return path


def test_the_rule_is_checked_per_scene_at_its_bounds() -> None:
    assert _record(-PSNR_DROP + 1e-4, SAM_RISE - 1e-4).passes()
    assert not _record(-PSNR_DROP - 1e-4, 0.0).passes()
    assert not _record(0.0, SAM_RISE + 1e-4).passes()
    one_bad = _record(0.0, 0.0)
    bad = SceneDelta("b", "dual", 40.0, 2.0, 39.9, 2.0)
    mixed = FidelityRecord(**{**one_bad.__dict__, "scenes": (*one_bad.scenes[:3], bad)})
    assert mixed.failures() == [bad]
    assert not FidelityRecord(**{**one_bad.__dict__, "scenes": ()}).passes()  # no scenes: nothing shown


def test_auto_picks_bf16_only_where_every_weights_file_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    good = _weights(tmp_path, "good.safetensors", _record(-0.001, 0.002))
    other = _weights(tmp_path, "other.safetensors", _record(-0.001, 0.002))
    failed = _weights(tmp_path, "failed.safetensors", _record(-0.001, 0.03))
    bare = _weights(tmp_path, "bare.safetensors")

    choice = auto_precision("torch", "cpu", [good, other])
    assert choice.precision == "bf16"
    assert "good.safetensors" in choice.reason
    assert "other.safetensors" in choice.reason
    assert auto_precision("openvino", "cpu", [good]).precision == "fp32"  # measured for torch only
    refused = auto_precision("torch", "cpu", [good, failed])
    assert refused.precision == "fp32"
    assert "failed the quality rule for failed.safetensors" in refused.reason
    missing = auto_precision("torch", "cpu", [good, bare])
    assert (missing.precision, "no quality record beside bare.safetensors" in missing.reason) == ("fp32", True)
    assert auto_precision("torch", "cpu", []).precision == "fp32"
    ov = _weights(tmp_path, "ov.safetensors", _record(-0.001, 0.002, backend="openvino"))
    assert auto_precision("openvino", "cpu", [ov]).precision == "bf16"
    assert auto_precision("openvino", "GPU.0", [ov]).precision == "fp32"  # a CPU's record says nothing of a GPU
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert "no native bf16" in auto_precision("torch", "cpu", [good]).reason


def test_a_record_is_a_claim_checked_against_the_weights_and_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    weights = _weights(tmp_path, "w.safetensors", _record(-0.001, 0.002))
    found, why = read_records(weights)
    assert found is not None
    assert why == ""
    assert auto_precision("torch", "cpu", [weights]).precision == "bf16"
    path = record_path(weights)
    raw = json.loads(path.read_text())

    raw["weights"]["sha256"] = "0" * 64  # copied beside other weights
    path.write_text(json.dumps(raw))
    assert "measured for other weights" in read_records(weights)[1]

    raw = json.loads(path.read_text())
    raw["weights"]["sha256"] = file_sha256(weights)
    raw["records"][0]["scenes"][0]["sam"] = 9.0  # a failing scene behind a file that once passed
    path.write_text(json.dumps(raw))
    assert auto_precision("torch", "cpu", [weights]).precision == "fp32"

    for side in (True, -1, "176", 1.5):  # what the time was taken on must be a side in pixels
        raw["records"][0]["scenes"][0]["sam"] = 2.0
        raw["records"][0]["timed_side"] = side
        path.write_text(json.dumps(raw))
        assert "timed_side is not a side" in read_records(weights)[1]
    del raw["records"][0]["timed_side"]

    raw["records"][0]["scenes"][0]["sam"] = "NaN"
    path.write_text(json.dumps(raw))
    assert "not a readable quality record" in read_records(weights)[1]
    path.write_text("{not json")
    assert "not a readable quality record" in read_records(weights)[1]
    path.write_text(json.dumps({"format": "something else"}))
    assert "not a readable quality record" in read_records(weights)[1]


def test_a_new_measurement_replaces_the_same_backend_precision_and_kind(tmp_path: Path) -> None:
    weights = _weights(tmp_path, "w.safetensors", _record(-0.001, 0.002), _record(0.0, 0.0, precision="bf16-mixed"))
    found, _ = read_records(weights)
    assert found is not None
    found.merge([_record(-0.5, 0.5)])
    found.write(record_path(weights))
    again, _ = read_records(weights)
    assert again is not None
    assert [(r.precision, r.passes()) for r in again.records] == [("bf16-mixed", True), ("bf16", False)]


def test_the_timed_pass_is_warm_every_scene_run_once_before_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exported backend exports and compiles a graph per band count on a scene's first call; the record's time
    (what ``--backend auto`` compares) must not hold it, so every scene runs once untimed before the timed pass."""
    import time
    from types import SimpleNamespace

    import torch

    from dualsr_deploy.evaluation import fidelity as measuring
    from dualsr_deploy.infer import upscaler as upscaler_module

    weights = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "w_x2.safetensors", neighbour_rule="paper")
    first_calls: set[int] = set()
    slow_first = 0.2  # what a first call per band count costs here (an export, a compile)

    class FakeUpscaler:
        def __init__(self, options: object) -> None:
            first_calls.clear()  # each precision opens its own backend

        def __enter__(self) -> FakeUpscaler:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def __call__(self, lr: torch.Tensor) -> SimpleNamespace:
            if lr.shape[0] not in first_calls:
                first_calls.add(lr.shape[0])
                time.sleep(slow_first)
            up = torch.nn.functional.interpolate(lr[None], scale_factor=2, mode="nearest")[0]
            return SimpleNamespace(coarse=up, fine=None)

    monkeypatch.setattr(upscaler_module, "Upscaler", FakeUpscaler)
    scenes = [
        (f"s{bands}", torch.rand(bands, 8, 8), torch.rand(bands, 16, 16))
        for bands in (6, 7)  # two band counts
    ]
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    (record,) = measuring.measure_fidelity(weights, scenes, precisions=["bf16"], backends=["torch"])
    assert record.seconds < slow_first
    assert record.seconds_fp32 < slow_first


def test_the_time_is_taken_on_scenes_grown_to_a_tile_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Held-out scenes are small (50 × 50 LR); timed as they are, a backend's per-call overhead ranked the backends.
    The time is taken on each scene repeated to a tile's window, the scores on the scenes themselves."""
    from types import SimpleNamespace

    import torch

    from dualsr_deploy.evaluation import fidelity as measuring
    from dualsr_deploy.infer import upscaler as upscaler_module

    weights = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "w_x2.safetensors", neighbour_rule="paper")
    side = measuring.timing_side()
    assert side == AUTO_TILE  # the largest window a scene held in memory runs as one tile
    shapes: list[tuple[int, ...]] = []

    class FakeUpscaler:
        def __init__(self, options: object) -> None:
            pass

        def __enter__(self) -> FakeUpscaler:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def __call__(self, lr: torch.Tensor) -> SimpleNamespace:
            shapes.append(tuple(lr.shape))
            up = torch.nn.functional.interpolate(lr[None], scale_factor=2, mode="nearest")[0]
            return SimpleNamespace(coarse=up, fine=None)

    monkeypatch.setattr(upscaler_module, "Upscaler", FakeUpscaler)
    monkeypatch.setattr(choice_module, "unavailable", lambda backend, device: None)
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    lr = torch.rand(6, 10, 12)
    hr = torch.nn.functional.interpolate(lr[None], scale_factor=2, mode="nearest")[0] + 0.01  # ~40 dB from it
    (record,) = measuring.measure_fidelity(weights, [("s", lr, hr)], precisions=["fp32"], backends=["torch"])
    assert record.timed_side == side
    # grown twice (untimed, timed), then the scene itself, scored against its own HR
    assert shapes == [(6, side, side), (6, side, side), (6, 10, 12)]
    assert record.scenes[0].psnr == pytest.approx(-10 * math.log10(0.01**2), abs=0.5)
    assert "repeated to" in measuring.fidelity_section([record], weights.name)
    again = FidelityRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record


def test_a_scene_is_grown_by_repeating_it() -> None:
    import torch

    from dualsr_deploy.evaluation.fidelity import grown

    lr = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    big = grown(lr, 7)
    assert big.shape == (2, 7, 7)
    assert torch.equal(big[:, :3, :5], lr)
    assert torch.equal(big[:, 3:6, 5:7], lr[:, :, :2])  # the scene again, its own spectra
    assert grown(lr, 3).shape == (2, 3, 5)  # a side already long enough is kept, never cropped
    assert grown(torch.rand(2, 9, 4), 6).shape == (2, 9, 6)


def test_fp32_records_time_each_backend_against_torchs_fp32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dualsr card --precision fp32``: one record per backend, its fp32 scored against torch's fp32 (torch's own
    run once, the reference) and timed, for ``--backend auto`` on a CPU where ``auto`` runs fp32."""
    from types import SimpleNamespace

    import torch

    from dualsr_deploy.evaluation import fidelity as measuring
    from dualsr_deploy.infer import upscaler as upscaler_module

    weights = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "w_x2.safetensors", neighbour_rule="paper")
    opened: list[tuple[str, str]] = []

    class FakeUpscaler:
        def __init__(self, options: SimpleNamespace) -> None:
            self.backend = options.backend.backend
            opened.append((self.backend, options.backend.precision))

        def __enter__(self) -> FakeUpscaler:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def __call__(self, lr: torch.Tensor) -> SimpleNamespace:
            up = torch.nn.functional.interpolate(lr[None], scale_factor=2, mode="nearest")[0]
            return SimpleNamespace(coarse=up + (0.01 if self.backend == "openvino" else 0.0), fine=None)

    monkeypatch.setattr(upscaler_module, "Upscaler", FakeUpscaler)
    monkeypatch.setattr(choice_module, "unavailable", lambda backend, device: None)  # OpenVINO faked, not needed
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    scenes = [("s", torch.rand(6, 8, 8), torch.rand(6, 16, 16))]
    records = measuring.measure_fidelity(weights, scenes, precisions=["fp32"], backends=["torch", "openvino"])
    assert opened == [("torch", "fp32"), ("openvino", "fp32")]  # torch's fp32 once: it is the reference
    torch_record, openvino_record = records
    assert [(r.backend, r.precision, r.kind) for r in records] == [
        ("torch", "fp32", "cpu"),
        ("openvino", "fp32", "cpu"),
    ]
    assert torch_record.worst() == (0.0, 0.0)
    assert openvino_record.scenes[0].psnr_fp32 == torch_record.scenes[0].psnr  # against torch's fp32
    assert openvino_record.scenes[0].d_psnr != 0.0
    assert openvino_record.seconds == openvino_record.seconds_fp32 > 0
    text = measuring.fidelity_section(records, weights.name)
    assert "torch fp32's speed" in text
    opened.clear()
    alone = measuring.measure_fidelity(weights, scenes, precisions=["fp32"], backends=["openvino"])
    assert [r.backend for r in alone] == ["torch", "openvino"]  # the reference's record too: auto weighs against it
    assert opened == [("torch", "fp32"), ("openvino", "fp32")]
    with pytest.raises(InputError, match="or fp32 to time"):
        measuring.measure_fidelity(weights, scenes, precisions=[], backends=["torch"])
    opened.clear()  # a backend that cannot run here is refused before anything is measured, not after
    with pytest.raises(InputError, match="trt backend runs on an NVIDIA GPU"):
        measuring.measure_fidelity(weights, scenes, precisions=["fp32"], backends=["onnx", "trt"])
    monkeypatch.setattr(
        choice_module,
        "unavailable",
        lambda backend, device: "OpenVINO not installed" if backend == "openvino" else None,
    )
    with pytest.raises(BackendUnavailableError, match="--backend openvino: OpenVINO not installed"):
        measuring.measure_fidelity(weights, scenes, precisions=["fp32"], backends=["openvino"])
    assert opened == []
