"""``dualsr train`` and ``dualsr card`` end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dualsr_deploy.checkpoint import read_checkpoint
from dualsr_deploy.cli.main import app
from dualsr_deploy.data import write_scene
from dualsr_deploy.data.synth import synthesize

runner = CliRunner()
TINY = ["--n-feats", "4", "--n-blocks", "1", "--batch-size", "16", "--lr", "1e-3"]


def test_train_on_scenes_then_resume_then_card(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    for seed in range(4):
        write_scene(scenes / f"s{seed}.h5", synthesize(seed, size=48, bands=6))
    run = tmp_path / "run"
    first = runner.invoke(
        app,
        ["train", str(scenes), "--out", str(run), "--scale", "2", "--lr-patch", "8", "--validation", "s3",
         "--max-steps", "3", "--validate-every", "3", *TINY],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "stopped (max_steps) at step 3" in first.output
    assert "--resume" in first.output
    assert (run / "patches.h5").is_file()
    assert (run / "MODEL_CARD.md").is_file()
    again = runner.invoke(app, ["train", str(scenes), "--out", str(run), "--scale", "2", "--lr-patch", "8", *TINY])
    assert again.exit_code == 2
    assert "already holds a training run" in again.output
    resumed = runner.invoke(app, ["train", str(run / "patches.h5"), "--out", str(run), "--resume", "--max-steps", "5"])
    assert resumed.exit_code == 0, resumed.output
    assert read_checkpoint(run / "last.safetensors")[1].provenance["steps"] == 5
    clash = runner.invoke(
        app,
        ["train", str(run / "patches.h5"), "--out", str(run), "--resume-from", str(run / "last.pt"), "--n-feats", "8"],
    )
    assert clash.exit_code == 2
    assert "another model or recipe" in clash.output
    card = runner.invoke(
        app,
        ["card", str(run / "best.safetensors"), "--store", str(run / "patches.h5"), "--out", str(tmp_path / "card.md")],
    )
    assert card.exit_code == 0, card.output
    text = (tmp_path / "card.md").read_text()
    assert "| s3: CoarSR |" in text
    assert "| s3: bicubic |" in text


def test_train_refuses_a_store_of_another_scale(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    for seed in range(3):
        write_scene(scenes / f"s{seed}.h5", synthesize(seed, size=32, bands=6))
    prep = runner.invoke(
        app,
        [
            "data",
            "prepare",
            str(scenes),
            str(tmp_path / "x2.h5"),
            "--scale",
            "2",
            "--lr-patch",
            "8",
            "--validation-count",
            "1",
        ],
    )
    assert prep.exit_code == 0, prep.output
    result = runner.invoke(app, ["train", str(tmp_path / "x2.h5"), "--out", str(tmp_path / "run"), "--scale", "4"])
    assert result.exit_code == 2
    assert "a ×2 patch store, but the model is ×4" in result.output


def test_train_says_what_is_wrong_with_its_source(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["train", str(tmp_path / "nowhere.h5"), "--out", str(tmp_path / "run")])
    assert missing.exit_code == 2
    assert "no such patch store, scene file or folder" in missing.output
    (tmp_path / "scenes").mkdir()
    no_scale = runner.invoke(app, ["train", str(tmp_path / "scenes"), "--out", str(tmp_path / "run")])
    assert no_scale.exit_code == 2
    assert "not a patch store" in no_scale.output
    assert "--scale" in no_scale.output
    assert not (tmp_path / "run").exists()


def held_out_store(tmp_path: Path, *, scale: int, lr_patch: int) -> Path:
    """A patch store of three small synthetic scenes, ``s2`` held out."""
    scenes = tmp_path / "scenes"
    for seed in range(3):
        write_scene(scenes / f"s{seed}.h5", synthesize(seed, size=48, bands=6))
    store = tmp_path / f"x{scale}.h5"
    argv = ["data", "prepare", str(scenes), str(store), "--scale", str(scale), "--lr-patch", str(lr_patch)]
    prep = runner.invoke(app, [*argv, "--validation", "s2"])
    assert prep.exit_code == 0, prep.output
    return store


def test_card_scores_the_dual_stage_with_half_weights(tmp_path: Path) -> None:
    # With --half, the card adds DualSR's fine result per held-out scene: the same numbers the dual stage of
    # `dualsr eval` gives (tests/evaluation checks those against the metrics module).
    import torch

    from dualsr_deploy.archs.coarsr import per_band_loop
    from dualsr_deploy.checkpoint import write_checkpoint
    from dualsr_deploy.data.patches import PatchDataset
    from dualsr_deploy.ops.fine import finish_stage
    from dualsr_deploy.train.validate import score_cube
    from tests.helpers import random_coarsr

    store = held_out_store(tmp_path, scale=4, lr_patch=4)
    x4 = write_checkpoint(random_coarsr(4, n_feats=4), tmp_path / "x4.safetensors", neighbour_rule="paper")
    x2 = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "x2.safetensors", neighbour_rule="paper")
    card = runner.invoke(
        app, ["card", str(x4), "--store", str(store), "--half", str(x2), "--out", str(tmp_path / "c.md")]
    )
    assert card.exit_code == 0, card.output
    assert "DualSR" in card.output
    text = (tmp_path / "c.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| s2: DualSR |"))
    dataset = PatchDataset(store, augmentation=False)
    ((_name, lr, hr),) = list(dataset.validation())
    dataset.close()
    with torch.no_grad():
        high = per_band_loop(read_checkpoint(x4)[0].eval(), lr[None], "paper")[0]
        low = per_band_loop(read_checkpoint(x2)[0].eval(), lr[None], "paper")[0]
    expected = score_cube(finish_stage("dual", True, high, low, lr)[0], hr)
    assert row == f"| s2: DualSR | {expected['psnr']:.3f} | {expected['ssim']:.4f} | {expected['sam']:.3f} |"
    assert "DualSR" in text.split("Gain over bicubic:")[1]
    wrong = runner.invoke(app, ["card", str(x4), "--store", str(store), "--half", str(x4)])
    assert wrong.exit_code == 2
    assert "needs ×s/2" in wrong.output


def test_card_measures_the_quality_rule_and_keeps_it_beside_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #45: ``dualsr card --precision`` runs fp32 and each reduced precision on the held-out scenes, prints a
    verdict, adds the table to the card and keeps the records where ``--precision auto`` reads them."""
    import json

    from dualsr_deploy.backends.fidelity import read_records
    from dualsr_deploy.backends.precision import auto_precision
    from dualsr_deploy.checkpoint import write_checkpoint
    from tests.helpers import random_coarsr

    monkeypatch.setenv("DUALSR_CPU_BF16", "1")  # emulated where the CPU lacks it: slow, still bf16's rounding
    store = held_out_store(tmp_path, scale=2, lr_patch=8)
    x2 = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "x2.safetensors", neighbour_rule="paper")
    card = runner.invoke(
        app,
        ["card", str(x2), "--store", str(store), "--precision", "bf16", "--precision", "bf16-mixed",
         "--backend", "torch", "--backend", "onnx", "--out", str(tmp_path / "c.md")],
    )  # fmt: skip
    assert card.exit_code == 0, card.output
    said = " ".join(card.output.split())
    assert "onnx runs none of bf16, bf16-mixed: skipped" in said
    found, why = read_records(x2)
    assert found is not None, why
    assert [(r.backend, r.precision, r.stage) for r in found.records] == [
        ("torch", "bf16", "backproject"),
        ("torch", "bf16-mixed", "backproject"),
    ]
    for record in found.records:
        assert {(s.scene, s.result) for s in record.scenes} == {("s2", "coarse"), ("s2", "backproject")}
        verdict = "passes" if record.passes() else "fails"
        assert f"torch {record.precision} (cpu-bf16): {verdict} the quality rule" in said
    text = (tmp_path / "c.md").read_text()
    coarse_row = next(line for line in text.splitlines() if line.startswith("| s2: CoarSR |"))
    fp32_psnr = next(s.psnr_fp32 for s in found.records[0].scenes if s.result == "coarse")
    assert coarse_row.split("|")[2].strip() == f"{fp32_psnr:.3f}"  # the run's path scores what the card scores
    assert "| torch | bf16 | cpu-bf16 | s2 | coarse |" in text
    assert auto_precision("torch", "cpu", [x2]).precision == ("bf16" if found.records[0].passes() else "fp32")
    elsewhere = tmp_path / "records.json"
    again = runner.invoke(
        app, ["card", str(x2), "--store", str(store), "--precision", "bf16", "--record", str(elsewhere)]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(elsewhere.read_text())["weights"]["name"] == "x2.safetensors"


def test_card_fp32_times_each_backend_for_a_cpu_without_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dualsr card --precision fp32`` on a CPU without native bf16: each backend's fp32 against torch's, kept for
    that kind of CPU, where ``--backend auto`` then compares their times (and says so)."""
    pytest.importorskip("onnxruntime")
    from dualsr_deploy.backends.choice import choose_backend
    from dualsr_deploy.backends.fidelity import read_records
    from dualsr_deploy.checkpoint import write_checkpoint
    from tests.helpers import random_coarsr

    monkeypatch.setenv("DUALSR_CPU_BF16", "0")
    store = held_out_store(tmp_path, scale=2, lr_patch=8)
    x2 = write_checkpoint(random_coarsr(2, n_feats=4), tmp_path / "x2.safetensors", neighbour_rule="paper")
    card = runner.invoke(
        app,
        ["card", str(x2), "--store", str(store), "--precision", "fp32", "--backend", "torch", "--backend", "onnx",
         "--out", str(tmp_path / "c.md")],
    )  # fmt: skip
    assert card.exit_code == 0, card.output
    said = " ".join(card.output.split())
    found, why = read_records(x2)
    assert found is not None, why
    assert [(r.backend, r.precision, r.kind) for r in found.records] == [
        ("torch", "fp32", "cpu"),
        ("onnx", "fp32", "cpu"),
    ]
    onnx = found.records[1]
    assert onnx.passes(), said  # the exported graph computes torch's fp32 to within the rule
    assert "onnx fp32 (cpu): passes the quality rule" in said
    assert "torch fp32's speed" in said
    text = (tmp_path / "c.md").read_text()
    assert "| onnx | fp32 | cpu | s2 | coarse |" in text
    chosen = choose_backend("cpu", "auto", [x2])
    assert f"onnx fp32 {onnx.seconds:.2f} s" in chosen.reason
    assert "on a cpu device" in chosen.reason
