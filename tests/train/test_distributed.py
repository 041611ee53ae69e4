"""Distributed data parallel: the CLI launched by torchrun with 2 CPU processes (gloo) trains, keeps the
processes in step, and leaves one set of outputs written by rank 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dualsr_deploy.checkpoint import read_checkpoint
from dualsr_deploy.train.state import load_state


def test_torchrun_two_gloo_processes(tiny_store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dualsr_deploy", "train", str(tiny_store), "--out", str(run), "--device", "cpu",
        "--n-feats", "4", "--n-blocks", "1", "--batch-size", "16", "--max-steps", "4", "--validate-every", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state = load_state(run / "last.pt")
    assert state.position.step == 4
    assert state.config.batch_size == 16  # global: 8 per process
    info = read_checkpoint(run / "last.safetensors")[1]
    assert info.provenance["processes"] == 2
    assert (run / "validation.csv").read_text().count("\n") == 3  # header + steps 2 and 4, written once (rank 0)
    assert not list(run.glob(".*.tmp"))
