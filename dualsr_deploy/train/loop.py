"""``train``: CoarSR on a patch store by the published recipe, resumable, single process or DDP.

A run folder holds:

- ``last.pt``: the resume file (written at every epoch end, every ``checkpoint_every_s`` seconds, and when the
  run stops for any reason, including Ctrl-C or SIGTERM, which are honoured at the next batch boundary so the
  resumed run continues exactly);
- ``best.safetensors``: the weights with the best validation PSNR so far, in the project's format;
- ``last.safetensors``: the weights when the run stopped;
- ``config.json``, ``log.jsonl``, ``validation.csv`` (and ``tensorboard/`` when tensorboard is installed).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dualsr_deploy.archs.neighbours import check_band_count
from dualsr_deploy.data.patches import PatchDataset, PatchStoreInfo, read_store_info
from dualsr_deploy.errors import InputError, TrainError
from dualsr_deploy.train.config import TrainConfig
from dualsr_deploy.train.distributed import distributed
from dualsr_deploy.train.state import TrainingState, load_state
from dualsr_deploy.train.trainer import RESUME_FILE, ProgressCallback, Trainer, TrainResult


def _check_store(info: PatchStoreInfo, config: TrainConfig, store: Path) -> None:
    if info.scale != config.scale:
        raise TrainError(
            f"{store}: a ×{info.scale} patch store, but the model is ×{config.scale}; build a ×{config.scale} store "
            f"with `dualsr data prepare … --scale {config.scale}` or train with --scale {info.scale}"
        )
    try:
        check_band_count(info.bands)
    except InputError as exc:
        raise TrainError(f"{store}: {exc}") from None


def _resolve(
    config: TrainConfig | None, resume: Path | None, given: frozenset[str], info: PatchStoreInfo
) -> tuple[TrainConfig, TrainingState | None]:
    if resume is None:
        return (config if config is not None else TrainConfig(scale=info.scale)), None
    saved = load_state(resume)
    if config is None:
        return saved.config, saved
    return saved.config.resumed_with(config, set(given)), saved


def _check_resumed_store(saved: TrainingState, info: PatchStoreInfo, store: Path, resume: Path) -> None:
    was = saved.store
    now = {"scale": info.scale, "bands": info.bands, "patches": info.patches}
    differs = [f"{k} {was[k]} → {v}" for k, v in now.items() if k in was and was[k] != v]
    if differs:
        raise TrainError(
            f"{resume} was trained on another patch store ({was.get('path')}): {', '.join(differs)}; resume on the "
            f"same store, or start a new run (optionally --init from its weights) on {store}"
        )


def train(
    store: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    given: frozenset[str] = frozenset(),
    init: str | Path | None = None,
    device: str | torch.device | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    tensorboard: bool = True,
) -> TrainResult:
    """Train CoarSR on the patch store ``store``, writing the run folder ``out_dir``.

    Args:
        config: the run's options; ``None`` means the recipe defaults at the store's scale (or, with ``resume``,
            the resume file's config).
        resume: a ``last.pt`` to continue. Options named in ``given`` override the saved ones where that is safe
            (run length, precision); any that would change the model or the optimiser raise :class:`TrainError`.
        init: weights (any checkpoint format) to start a new run from instead of a random initialisation.
        device: ``None`` means CUDA when available, else CPU (under torchrun: this process's GPU).
        workers: data-loading processes; ``None`` means 0 on CPU and 4 on CUDA.
    """
    store_path = Path(store)
    run_dir = Path(out_dir)
    info = read_store_info(store_path)
    resume_path = Path(resume) if resume is not None else None
    config, saved = _resolve(config, resume_path, given, info)
    _check_store(info, config, store_path)
    if saved is not None and resume_path is not None:
        _check_resumed_store(saved, info, store_path, resume_path)
    if resume_path is None and (run_dir / RESUME_FILE).exists():
        raise TrainError(
            f"{run_dir} already holds a training run; continue it with --resume {run_dir / RESUME_FILE} or choose "
            "another --out"
        )
    if init is not None and saved is not None:
        raise TrainError("give --init (start a new run from weights) or --resume (continue a run), not both")
    dataset = PatchDataset(store_path, augmentation=config.augmentation)
    with distributed(device) as dist_ctx:
        init_path = Path(init) if init is not None else None
        trainer = Trainer(config, dataset, run_dir, dist_ctx, saved, init_path, workers, progress, tensorboard)
        return trainer.run()
