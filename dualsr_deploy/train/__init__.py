"""Training CoarSR: the published recipe (L1, Adam, band-by-band updates), resumable, DDP under torchrun."""

from dualsr_deploy.errors import TrainError
from dualsr_deploy.train.config import TrainConfig
from dualsr_deploy.train.loop import train
from dualsr_deploy.train.source import resolve_store
from dualsr_deploy.train.trainer import TrainEvent, TrainResult

__all__ = ["TrainConfig", "TrainError", "TrainEvent", "TrainResult", "resolve_store", "train"]
