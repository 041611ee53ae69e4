"""Prepare, then run: artefacts are made and verified before any scene computes, the pool only opens what was
prepared, and an artefact that cannot be made fails only the scenes that need it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dualsr_deploy.backends import BACKEND_KINDS, BACKENDS, backend_kind, check_backend
from dualsr_deploy.errors import CheckpointError, ExportError, InputError
from dualsr_deploy.infer import InferOptions, run_archive
from dualsr_deploy.infer.options import BackendSpec, Event
from dualsr_deploy.infer.pool import BackendPool
from tests.infer.conftest import lr_scene


def onnx_spec(engines: Path) -> BackendSpec:
    return BackendSpec.for_run("onnx", scale=4, stage="coarse", device="cpu", artefacts_dir=engines)


def test_the_pool_refuses_an_artefact_never_prepared(tmp_path: Path) -> None:
    pool = BackendPool(onnx_spec(tmp_path / "engines"))
    with pytest.raises(RuntimeError, match="no ×4 5-band graph was prepared for the onnx backend"):
        pool.backend(4, 5)
    assert not (tmp_path / "engines").exists()  # nothing exported on the way


def test_a_failed_artefact_fails_when_asked_for_and_run_errors_stop_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = BackendPool(onnx_spec(tmp_path / "engines"))

    tries: list[tuple[int, int]] = []

    def broken(scale: int, bands: int) -> Path:
        tries.append((scale, bands))
        raise ExportError(f"cannot export ×{scale} {bands} bands")

    monkeypatch.setattr(pool.artefacts, "_make", broken)
    pool.prepare([(4, 5)], keep_going=True)
    with pytest.raises(ExportError, match="cannot export ×4 5 bands"):
        pool.backend(4, 5)
    with pytest.raises(ExportError, match="cannot export ×4 5 bands"):  # a scene asking again: not exported again
        pool.prepare([(4, 5)])
    assert tries == [(4, 5)]
    with pytest.raises(ExportError):
        pool.prepare([(4, 6)])  # without keep_going: raised at once

    def mismatched(scale: int, bands: int) -> Path:
        raise CheckpointError("exported from other weights")

    monkeypatch.setattr(pool.artefacts, "_make", mismatched)
    with pytest.raises(CheckpointError):  # a run's error: never held back for the scenes
        pool.prepare([(4, 7)], keep_going=True)


def test_a_run_exports_every_graph_before_any_scene_starts(tmp_path: Path) -> None:
    """Two band counts, one onnx run: both graphs are exported (their messages) before the first scene event, and
    the outputs are those of a second run that finds the graphs already there."""
    pytest.importorskip("onnxruntime")
    from dualsr_deploy.data.formats import write_scene

    archive = tmp_path / "lr"
    for seed, (name, bands) in enumerate((("a", 5), ("b", 6), ("c", 5))):
        write_scene(archive / f"{name}.h5", lr_scene(seed, 12, bands))
    events: list[Event] = []
    spec = onnx_spec(tmp_path / "engines")
    first = run_archive(archive, tmp_path / "first", InferOptions(stage="coarse", backend=spec), progress=events.append)
    assert first.exit_code == 0, first.records
    kinds = [e.kind for e in events]
    exports = [i for i, e in enumerate(events) if e.kind == "message" and "exporting" in e.text]
    assert len(exports) == 2
    assert max(exports) < kinds.index("scene")
    assert all(e.kind != "message" or "exporting" not in e.text for e in events[kinds.index("scene") :])
    second = run_archive(archive, tmp_path / "second", InferOptions(stage="coarse", backend=spec))
    assert second.exit_code == 0
    from dualsr_deploy.data.formats import open_scene

    for name in ("a", "b", "c"):
        with (
            open_scene(tmp_path / "first" / f"{name}.h5") as one,
            open_scene(tmp_path / "second" / f"{name}.h5") as two,
        ):
            np.testing.assert_array_equal(one.read_raw(), two.read_raw())


def test_every_backend_has_a_kind_that_check_backend_agrees_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dualsr_deploy.backends.factory.check_bf16", lambda _device: None)  # not this CPU's test
    assert set(BACKENDS) == set(BACKEND_KINDS)
    for name, kind in BACKEND_KINDS.items():
        device = "cuda" if kind.cuda_only else "cpu"
        for precision in ("fp32", "bf16", "fp16"):
            if precision in kind.precisions:
                check_backend(name, precision, device)
            else:
                with pytest.raises(InputError):
                    check_backend(name, precision, device)
        assert kind.fixed_bands == (kind.artefact is not None)
    with pytest.raises(InputError, match="unknown backend"):
        backend_kind("tensorflow")
