"""The training loop of one run: :class:`Trainer` over one state (model, optimiser, scheduler, position, best), and
what a run reports (:class:`TrainEvent`) and returns (:class:`TrainResult`). :func:`dualsr_deploy.train.train`
checks the store and the resume file, then runs a :class:`Trainer`."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.nn.parallel import DistributedDataParallel

from dualsr_deploy.archs.coarsr import CoarSR
from dualsr_deploy.checkpoint import read_checkpoint, write_checkpoint
from dualsr_deploy.data.patches import PatchDataset
from dualsr_deploy.errors import TrainError
from dualsr_deploy.stop import StopRequest
from dualsr_deploy.train.card import model_card
from dualsr_deploy.train.config import TrainConfig
from dualsr_deploy.train.distributed import Distributed
from dualsr_deploy.train.grow import grow
from dualsr_deploy.train.lineage import init_record
from dualsr_deploy.train.log import RunLog
from dualsr_deploy.train.sampler import EpochBatches
from dualsr_deploy.train.schedule import BandParallel, autocast_dtype, train_batch, train_batch_parallel
from dualsr_deploy.train.state import Position, TrainingState, capture_rng, restore_rng, save_state
from dualsr_deploy.train.validate import validate

StopReason = Literal["finished", "max_steps", "time_limit", "interrupted"]
RESUME_FILE = "last.pt"
BEST_WEIGHTS = "best.safetensors"
LAST_WEIGHTS = "last.safetensors"


@dataclass(frozen=True)
class TrainEvent:
    """What the loop reports to a progress callback (only on the main process)."""

    kind: Literal["start", "step", "validation", "checkpoint", "stop"]
    step: int
    total_steps: int
    epoch: int
    epochs: int
    loss: float | None = None
    learning_rate: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    config: TrainConfig
    steps: int
    epochs_done: int
    stop_reason: StopReason
    seconds: float
    best: Mapping[str, float]
    best_weights: Path | None
    last_weights: Path
    resume_file: Path
    validation: Mapping[str, float] | None
    main: bool = True  # False in the other processes of a distributed run (which write nothing)


ProgressCallback = Callable[[TrainEvent], None]


def _new_model(config: TrainConfig, init: Path | None) -> tuple[CoarSR, dict[str, Any] | None]:
    """The run's starting model, and the ``init`` provenance record when it starts from weights."""
    torch.manual_seed(config.seed)
    model = CoarSR(config.model)
    record = None
    if init is not None:
        weights, info = read_checkpoint(init)
        record = init_record(init, info, config.model)
        if info.config == config.model:
            model.load_state_dict(weights.state_dict())
        elif info.scale == config.scale and info.n_feats <= config.n_feats and info.n_blocks <= config.n_blocks:
            model = grow(weights, config.model)  # a smaller model grown into the run's size, computing the same
        else:
            raise TrainError(
                f"{init}: --init weights are CoarSR(scale={info.scale}, n_feats={info.n_feats}, "
                f"n_blocks={info.n_blocks}), the run asks for CoarSR(scale={config.scale}, n_feats={config.n_feats}, "
                f"n_blocks={config.n_blocks}); --init takes the same model, or a smaller one of the same scale "
                "(grown into the larger one)"
            )
    return model, record


class Trainer:
    """One training run over one state (model, optimiser, scheduler, position, best): set up in ``__init__``, then
    :meth:`run` trains epoch by epoch (:meth:`train_epoch`), validates (:meth:`validate`), writes resume files
    (:meth:`checkpoint`), stops when :meth:`should_stop` says so, and ends with :meth:`finish`."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: PatchDataset,
        run_dir: Path,
        ctx: Distributed,
        saved: TrainingState | None,
        init: Path | None,
        workers: int | None,
        progress: ProgressCallback | None,
        tensorboard: bool,
    ) -> None:
        self.started = time.perf_counter()
        self.config, self.dataset, self.run_dir, self.ctx = config, dataset, run_dir, ctx
        self.device = device = ctx.device
        self.info = info = dataset.info
        if config.batch_size % ctx.world_size:
            raise TrainError(f"batch size {config.batch_size} does not split over {ctx.world_size} processes")
        batches_per_epoch = len(dataset) // config.batch_size
        if batches_per_epoch == 0:
            raise TrainError(
                f"{dataset.path}: {len(dataset)} samples make no full batch of {config.batch_size}; lower "
                "--batch-size or build a larger store"
            )
        self.total_steps = config.epochs * batches_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)

        model, self.init = _new_model(config, init if saved is None else None)
        self.model = model.to(device)
        self.from_weights = init is not None and saved is None  # fine-tuning: score the starting weights first
        self.ema_model: CoarSR | None = None
        if config.ema:
            self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.train_mode()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma
        )
        self.position = Position()
        self.best: dict[str, float] = {}
        if saved is not None:
            self._restore(saved)
        self.network: torch.nn.Module = self.model
        if config.schedule == "parallel":
            self.network = BandParallel(self.model, config.neighbour_rule)
        if ctx.active:
            # Band 0 does not use the recurrent merge, so some parameters get no gradient on that step.
            self.network = DistributedDataParallel(
                self.network, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
            )
        self.amp = autocast_dtype(config.precision, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 and device.type == "cuda" else None
        self.workers = workers if workers is not None else (4 if device.type == "cuda" else 0)
        self.progress = progress
        self.main = ctx.is_main
        self.log: RunLog | None = None
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(config.to_json() + "\n", encoding="utf-8")
            self.log = RunLog(run_dir, tensorboard=tensorboard)
        self.validation_scenes = list(dataset.validation()) if self.main else []
        self.baseline: dict[str, dict[str, float]] = {}
        self.store_record = {
            "path": str(dataset.path),
            "scale": info.scale,
            "bands": info.bands,
            "patches": info.patches,
        }
        self.resumed_seconds = self.position.seconds
        self.validated_at = -1
        self.last_summary: dict[str, float] | None = None
        self.window: list[torch.Tensor] = []
        self.last_checkpoint = time.perf_counter()

    def _restore(self, saved: TrainingState) -> None:
        config = self.config
        if config.max_steps is not None and saved.position.step >= config.max_steps:
            raise TrainError(
                f"the run has done {saved.position.step} steps, its --max-steps is {config.max_steps}; pass a larger "
                "--max-steps to continue it"
            )
        self.model.load_state_dict(saved.model)
        if self.ema_model is not None:
            self.ema_model.load_state_dict(saved.ema if saved.ema is not None else saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        restore_rng(saved.rng)
        self.position = saved.position
        self.best = dict(saved.best)
        self.init = saved.init

    @property
    def kept(self) -> CoarSR:
        """The weights that are validated and written: the moving average when the run keeps one."""
        return self.ema_model if self.ema_model is not None else self.model

    def train_mode(self) -> None:
        """The model in training mode; with ``batch_norm="frozen"`` its BatchNorm layers stay in eval mode (the
        running statistics are used and kept, as in inference)."""
        self.model.train()
        if self.config.batch_norm == "frozen":
            for module in self.model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema_model is None:
            return
        decay = self.config.ema
        for average, current in zip(
            self.ema_model.state_dict().values(), self.model.state_dict().values(), strict=True
        ):
            if average.dtype.is_floating_point:
                average.lerp_(current, 1.0 - decay)
            else:
                average.copy_(current)

    def emit(self, kind: Literal["start", "step", "validation", "checkpoint", "stop"], **facts: Any) -> None:
        if self.main and self.progress is not None:
            position = self.position
            self.progress(
                TrainEvent(kind, position.step, self.total_steps, position.epoch, self.config.epochs, **facts)
            )

    def checkpoint(self) -> None:
        """Write the resume file (the main process; every process waits for it)."""
        self.position.seconds = self.resumed_seconds + time.perf_counter() - self.started
        if self.main:
            state = TrainingState(
                config=self.config,
                model=self.model.state_dict(),
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                position=self.position,
                best=self.best,
                rng=capture_rng(),
                store=self.store_record,
                ema=self.ema_model.state_dict() if self.ema_model is not None else None,
                init=self.init,
            )
            save_state(state, self.run_dir / RESUME_FILE)
        self.ctx.barrier()
        self.last_checkpoint = time.perf_counter()

    def provenance(
        self, validation: Mapping[str, float] | None, scenes: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        device, info = self.device, self.info
        hardware = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        )
        return {
            "trained_by": "dualsr train",
            "recipe": self.config.to_json(),
            "store": self.store_record,
            "train_scenes": list(info.train_scenes),
            "validation_scenes": list(info.validation_scenes),
            "steps": self.position.step,
            "epochs": self.position.epoch,
            "device": hardware,
            "processes": self.ctx.world_size,
            "computed_in": {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.amp],
            "seconds": round(self.resumed_seconds + time.perf_counter() - self.started, 1),
            "validation": dict(validation or {}),
            "validation_psnr_per_scene": dict(scenes or {}),
            **({"init": self.init} if self.init is not None else {}),
        }

    def validate(self) -> None:
        """Score the held-out scenes (once per step), log them, and keep the best weights."""
        position = self.position
        if self.validated_at == position.step:  # step-interval and epoch-end validation can coincide
            return
        self.validated_at = position.step
        result = None
        if self.main and self.validation_scenes:
            result = validate(
                self.kept,
                self.validation_scenes,
                rule=self.config.neighbour_rule,
                device=self.device,
                baseline=self.baseline,
                autocast_dtype=self.amp,
            )
            self.train_mode()
        self.ctx.barrier()
        if result is None or self.log is None:
            return
        summary = result.summary()
        per_scene = {s.name: s.model["psnr"] for s in result.scenes}
        seconds = self.resumed_seconds + time.perf_counter() - self.started
        self.log.validation(position.step, position.epoch, summary, per_scene, seconds)
        if not self.best or summary["psnr"] > self.best["psnr"]:
            self.best = {"psnr": summary["psnr"], "step": float(position.step), "epoch": float(position.epoch)}
            write_checkpoint(
                self.kept,
                self.run_dir / BEST_WEIGHTS,
                neighbour_rule=self.config.neighbour_rule,
                bands=self.info.bands,
                epoch=position.epoch,
                provenance=self.provenance(summary, per_scene),
            )
        self.emit("validation", metrics=summary)
        self.last_summary = summary

    def should_stop(self, stop: StopRequest) -> StopReason | None:
        """Why the run stops after this batch (agreed by every process), or None."""
        config, now = self.config, time.perf_counter()
        wanted: StopReason | None = None
        if config.max_steps is not None and self.position.step >= config.max_steps:
            wanted = "max_steps"
        elif config.time_limit_s is not None and now - self.started >= config.time_limit_s:
            wanted = "time_limit"
        elif stop.requested:
            wanted = "interrupted"
        if self.ctx.broadcast_flag(wanted is not None):
            return wanted or "interrupted"
        return None

    def train_epoch(self, stop: StopRequest) -> StopReason | None:
        """Train the rest of the current epoch; the reason the run stopped in it, or None when it completed."""
        config, position, device = self.config, self.position, self.device
        batches = EpochBatches(
            len(self.dataset),
            config.batch_size,
            seed=config.seed,
            epoch=position.epoch,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            start=position.batch,
        )
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.workers, pin_memory=device.type == "cuda"
        )
        for lr, hr in loader:
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
            if config.schedule == "parallel":
                losses = train_batch_parallel(
                    self.network, self.optimizer, lr, hr, scale=config.scale, amp_dtype=self.amp, scaler=self.scaler
                )
            else:
                losses = train_batch(
                    self.network,
                    self.optimizer,
                    lr,
                    hr,
                    scale=config.scale,
                    rule=config.neighbour_rule,
                    amp_dtype=self.amp,
                    scaler=self.scaler,
                )
            self.update_ema()
            position.batch += 1
            position.step += 1
            self.window.append(losses.mean())
            if position.step % config.log_every_steps == 0 or position.step == self.total_steps:
                self._log_step()
            if config.validate_every_steps and position.step % config.validate_every_steps == 0:
                self.validate()
            reason = self.should_stop(stop)
            if reason is not None:
                return reason
            if self.ctx.broadcast_flag(time.perf_counter() - self.last_checkpoint >= config.checkpoint_every_s):
                self.checkpoint()
                self.emit("checkpoint")
        return None

    def _log_step(self) -> None:
        loss = float(torch.stack(self.window).mean())
        self.window.clear()
        current_lr = self.optimizer.param_groups[0]["lr"]
        if self.log is not None:
            self.log.record("train", self.position.step, epoch=self.position.epoch, loss=loss, lr=current_lr)
        self.emit("step", loss=loss, learning_rate=current_lr)

    def run(self) -> TrainResult:
        self.emit("start")
        if self.from_weights and self.position.step == 0:
            # Step 0 of a run from --init: the starting weights' validation is logged and is the best to beat, so
            # best.safetensors is never worse than where fine-tuning began.
            self.validate()
        stop_reason: StopReason | None = None
        with StopRequest().installed() as stop:
            while stop_reason is None and self.position.epoch < self.config.epochs:
                stop_reason = self.train_epoch(stop)
                if stop_reason is None:  # the epoch is complete
                    self.scheduler.step()
                    self.position.epoch += 1
                    self.position.batch = 0
                    self.validate()
                    self.checkpoint()
            stop_reason = stop_reason or "finished"
            self.checkpoint()
        return self.finish(stop_reason)

    def finish(self, stop_reason: StopReason) -> TrainResult:
        """The last weights, the model card of the best ones, the log's last line; what the run did."""
        run_dir, position = self.run_dir, self.position
        last_weights = run_dir / LAST_WEIGHTS
        if self.main:
            write_checkpoint(
                self.kept,
                last_weights,
                neighbour_rule=self.config.neighbour_rule,
                bands=self.info.bands,
                epoch=position.epoch,
                provenance=self.provenance(self.last_summary),
            )
        seconds = time.perf_counter() - self.started
        if self.main and (run_dir / BEST_WEIGHTS).exists():
            card = model_card(read_checkpoint(run_dir / BEST_WEIGHTS)[1], title=f"{run_dir.name}: best weights")
            (run_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        if self.log is not None:
            self.log.record("stop", position.step, reason=stop_reason, seconds=round(seconds, 2), epoch=position.epoch)
            self.log.close()
        self.emit("stop", message=stop_reason)
        self.dataset.close()
        return TrainResult(
            run_dir=run_dir,
            config=self.config,
            steps=position.step,
            epochs_done=position.epoch,
            stop_reason=stop_reason,
            seconds=seconds,
            best=self.best,
            best_weights=(run_dir / BEST_WEIGHTS) if (run_dir / BEST_WEIGHTS).exists() else None,
            last_weights=last_weights,
            resume_file=run_dir / RESUME_FILE,
            validation=self.last_summary,
            main=self.main,
        )
