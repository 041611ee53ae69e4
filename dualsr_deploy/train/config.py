"""What a training run is asked to do: :class:`TrainConfig`, frozen, with the paper's recipe as its defaults."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from dualsr_deploy.archs.coarsr import SUPPORTED_SCALES, CoarSRConfig
from dualsr_deploy.archs.neighbours import NeighbourRule, check_rule
from dualsr_deploy.errors import TrainError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")
Schedule = Literal["band", "parallel"]
BatchNorm = Literal["train", "frozen"]

# Fields that define the model; a resumed run must agree with its resume file on these.
MODEL_FIELDS = ("scale", "n_feats", "n_blocks", "neighbour_rule")


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`dualsr_deploy.train.train`. Defaults are the published recipe.

    ``batch_size`` is global: with ``world_size`` processes each takes ``batch_size / world_size`` samples.
    One *step* is one batch; the band-by-band schedule makes ``bands`` optimiser updates per step.
    ``precision="auto"`` means bf16 autocast on CUDA and on CPUs with native bf16, fp32 elsewhere.
    """

    scale: int
    n_feats: int = 64
    n_blocks: int = 2
    neighbour_rule: NeighbourRule = "paper"
    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_step_epochs: int = 30
    lr_gamma: float = 0.5
    augmentation: bool = True
    seed: int = 0
    precision: Precision = "auto"
    schedule: Schedule = "band"  # band: the paper's band-by-band updates; parallel: one update per batch
    max_steps: int | None = None  # stop (resumably) after this many steps in all
    time_limit_s: float | None = None  # stop (resumably) after this much wall time in this process
    checkpoint_every_s: float = 600.0  # also write the resume file this often within an epoch
    log_every_steps: int = 10
    validate_every_steps: int | None = None  # validate (and keep the best) this often too, not only per epoch
    # train: the paper's (batch statistics in training, running averages updated); frozen: the running statistics
    # of the starting weights are kept and used in training too (fine-tuning on small patches of other data).
    batch_norm: BatchNorm = "train"
    ema: float = 0.0  # > 0: validate, keep and write an exponential moving average of the weights with this decay

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise TrainError(f"scale must be one of {SUPPORTED_SCALES}; got {self.scale}")
        check_rule(self.neighbour_rule)
        positive = {
            "n_feats": self.n_feats,
            "n_blocks": self.n_blocks,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr_step_epochs": self.lr_step_epochs,
            "log_every_steps": self.log_every_steps,
        }
        bad = [f"{name}={value}" for name, value in positive.items() if value < 1]
        if bad:
            raise TrainError(f"these options must be at least 1: {', '.join(bad)}")
        if not self.learning_rate > 0 or not 0 < self.lr_gamma <= 1:
            raise TrainError(f"need learning_rate > 0 and 0 < lr_gamma ≤ 1; got {self.learning_rate}, {self.lr_gamma}")
        if self.precision not in PRECISIONS:
            raise TrainError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.schedule not in ("band", "parallel"):
            raise TrainError(f"schedule must be band or parallel; got {self.schedule!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainError(f"max_steps must be at least 1; got {self.max_steps}")
        if self.validate_every_steps is not None and self.validate_every_steps < 1:
            raise TrainError(f"validate_every_steps must be at least 1; got {self.validate_every_steps}")
        if self.batch_norm not in ("train", "frozen"):
            raise TrainError(f"batch_norm must be train or frozen; got {self.batch_norm!r}")
        if not 0 <= self.ema < 1:
            raise TrainError(f"ema must be in [0, 1) (0: off; e.g. 0.995); got {self.ema}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise TrainError(f"time_limit_s must be positive; got {self.time_limit_s}")

    @property
    def model(self) -> CoarSRConfig:
        return CoarSRConfig(self.scale, self.n_feats, self.n_blocks)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)

    def resumed_with(self, requested: TrainConfig, given: set[str]) -> TrainConfig:
        """This (saved) config, continued with the run-length options of ``requested``.

        ``given`` names the options the caller set explicitly; one that would change the model or the optimiser
        of a run half done is refused rather than silently ignored.
        """
        fixed = set(MODEL_FIELDS) | {
            "batch_size",
            "learning_rate",
            "betas",
            "lr_step_epochs",
            "lr_gamma",
            "seed",
            "schedule",
            "batch_norm",
            "ema",
        }
        clashes = [
            f"{name}: resume file {getattr(self, name)!r}, requested {getattr(requested, name)!r}"
            for name in sorted(given & fixed)
            if getattr(self, name) != getattr(requested, name)
        ]
        if clashes:
            raise TrainError(
                "the resume file belongs to another model or recipe ("
                + "; ".join(clashes)
                + "); drop these options to continue it, or start a new run in another --out folder"
            )
        free = (
            "epochs",
            "precision",
            "max_steps",
            "time_limit_s",
            "checkpoint_every_s",
            "log_every_steps",
            "validate_every_steps",
        )
        return replace(self, **{name: getattr(requested, name) for name in free if name in given})
