"""The resume file (``last.pt``): everything needed to continue a run exactly where it stopped.

It holds the model, optimiser and scheduler states, the position (epoch, batch within the epoch, global step),
the best validation result so far, the RNG states, the run's :class:`TrainConfig` as JSON and, for runs that keep
one, the moving average of the weights, and for runs started from weights, what they were. It is written with
``torch.save`` atomically and read back with ``weights_only=True``, so loading one never runs pickled code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.errors import TrainError
from dualsr_deploy.train.config import TrainConfig

STATE_FORMAT = "dualsr-train-state/1"


@dataclass
class Position:
    """Where a run is: ``epoch`` (0-based, the one in progress), ``batch`` done within it, ``step`` done in all,
    and the wall time spent on it in all processes' lifetimes so far."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    seconds: float = 0.0


@dataclass
class TrainingState:
    config: TrainConfig
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    position: Position
    best: dict[str, float] = field(default_factory=dict)  # {"psnr": …, "epoch": …} of the best validation
    rng: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)  # what the run trains on (path, scale, bands, patches)
    ema: dict[str, torch.Tensor] | None = None  # the moving average of the weights (runs with ``config.ema``)
    init: dict[str, Any] | None = None  # the weights the run started from (``--init``), for the provenance


def capture_rng() -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_state(state: TrainingState, path: str | os.PathLike[str]) -> Path:
    payload = {
        "format": STATE_FORMAT,
        "config": state.config.to_json(),
        "model": state.model,
        "optimizer": state.optimizer,
        "scheduler": state.scheduler,
        "epoch": state.position.epoch,
        "batch": state.position.batch,
        "step": state.position.step,
        "seconds": state.position.seconds,
        "best": dict(state.best),
        "rng": state.rng,
        "store": dict(state.store),
        "ema": state.ema,
        "init": state.init,
    }
    target = Path(path)
    with atomic_output(target) as tmp:
        torch.save(payload, tmp)
    return target


def load_state(path: str | os.PathLike[str]) -> TrainingState:
    """Read a resume file; a :class:`TrainError` names the file when it is missing, corrupt or not one."""
    file = Path(path)
    if not file.is_file():
        raise TrainError(f"{file}: no such resume file (a run folder's last.pt)")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here: unpickling, zip, EOF, runtime
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f"{file}: not a readable resume file ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise TrainError(
            f"{file}: not a dualsr training state (no {STATE_FORMAT!r} tag). A weights file starts a new run "
            "with --init; --resume takes the last.pt of an earlier run"
        )
    try:
        config = TrainConfig.from_json(payload["config"])
        return TrainingState(
            config=config,
            model=payload["model"],
            optimizer=payload["optimizer"],
            scheduler=payload["scheduler"],
            position=Position(
                int(payload["epoch"]), int(payload["batch"]), int(payload["step"]), float(payload.get("seconds", 0.0))
            ),
            best=dict(payload.get("best", {})),
            rng=dict(payload.get("rng", {})),
            store=dict(payload.get("store", {})),
            ema=payload.get("ema"),
            init=payload.get("init"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainError(f"{file}: corrupt resume file ({type(exc).__name__}: {exc})") from None
