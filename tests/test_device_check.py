"""``benchmarks/device_check.sh --cpu-smoke``: the GPU check's plumbing, run on the CPU at toy sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("environment", "gpu_tests", "parity", "onnxruntime", "bench", "infer", "train")


def test_cpu_smoke_runs_every_step_and_writes_its_summaries(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", "benchmarks/device_check.sh", "--cpu-smoke", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "device_check.json").read_text())
    assert summary["mode"] == "cpu-smoke"
    assert summary["ok"] is True
    assert tuple(summary["steps"]) == STEPS
    assert all(step["status"] == "ok" for step in summary["steps"].values())
    assert all(row["passed"] for row in summary["steps"]["parity"]["rows"])
    # The CPU's own fp32 run is the reference of the infer comparison: identical to itself.
    cpu = summary["steps"]["infer"]["runs"]["cpu fp32"]["scenes"]
    assert {scene["max_abs"] for scene in cpu.values()} == {0.0}
    assert summary["steps"]["train"]["steps"] == 4
    markdown = (tmp_path / "device_check.md").read_text()
    assert markdown.startswith("# device_check (cpu-smoke, cpu)")
    for step in STEPS:
        assert f"## {step}: ok" in markdown
