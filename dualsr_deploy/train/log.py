"""The machine-readable record of a run: ``log.jsonl`` (every record), ``validation.csv`` (one row per
validation) and TensorBoard event files when the ``tensorboard`` package is installed."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from dualsr_deploy.optional import find


class RunLog:
    """Appends to the run folder's logs; a resumed run continues the same files."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True) -> None:
        self.jsonl = run_dir / "log.jsonl"
        self.csv = run_dir / "validation.csv"
        self._writer: Any = None
        board = find("torch.utils.tensorboard") if tensorboard else None  # tensorboard is optional
        if board is not None:
            self._writer = board.SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def record(self, kind: str, step: int, **values: Any) -> None:
        entry = {"time": round(time.time(), 3), "kind": kind, "step": step, **values}
        with self.jsonl.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{name}", value, step)

    def validation(
        self, step: int, epoch: int, summary: dict[str, float], scenes: dict[str, float], seconds: float
    ) -> None:
        """One validation: a CSV row and a log record; ``seconds`` is the run's wall time so far (resumes added)."""
        row = {
            "step": step,
            "epoch": epoch,
            "seconds": round(seconds, 1),
            **{k: round(v, 6) for k, v in summary.items()},
        }
        row |= {f"psnr_{name}": round(v, 6) for name, v in scenes.items()}
        new = not self.csv.exists()
        with self.csv.open("a", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.record("validation", step, epoch=epoch, seconds=round(seconds, 1), **summary, scenes=scenes)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
