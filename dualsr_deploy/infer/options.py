"""What an inference run is asked to do: :class:`BackendSpec` (which backend, where, in which precision, with which
weights) and :class:`InferOptions` (scale, stage, tiles, output format, resume, memory budget, how to read scenes),
both validated when made; and :class:`Event`, what a run reports to its progress callback."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dualsr_deploy.archs.coarsr import SUPPORTED_SCALES
from dualsr_deploy.backends import BackendKind, backend_kind, check_backend
from dualsr_deploy.backends.choice import AUTO_BACKEND, DEFAULT_BACKEND
from dualsr_deploy.backends.precision import resolve_precision
from dualsr_deploy.data.formats import OPTIONS
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.validity import Masking
from dualsr_deploy.errors import CheckpointError, InputError
from dualsr_deploy.infer.manifest import SceneRecord
from dualsr_deploy.infer.shards import Shard
from dualsr_deploy.infer.stages import AUTO_STAGE, STAGES, choose_stage
from dualsr_deploy.runtimes import check_device, default_device
from dualsr_deploy.weights import run_weights

if TYPE_CHECKING:
    from dualsr_deploy.backends.choice import BackendChoice
    from dualsr_deploy.weights import FamilyChoice

UNITS = ("source", "normalised")
AUTO_TILE = 128  # LR pixels: whole CAVE-size ×4 scenes in one tile (see TileRunner.tile_for)
# A streamed scene's row of tiles holds its ×s rows twice (the pasted result and its clipped copy), and writing holds
# a sub-strip in float64 (the source's units) and in the output dtype: sized so that all of it fits the budget
STRIP_COPIES = 4
# The memory budget's share for one backend call (its tiles' windows, the model's maps, the results); the rest is for
# the scene held in memory, or a streamed scene's strips
TILE_SHARE = 0.4
WORK_DIR = ".dualsr-work"  # streamed scenes' intermediates, inside the output folder


def scene_work_dir(output: Path, name: str) -> Path:
    """The folder of one streamed scene's intermediates, beside its output."""
    import hashlib

    return output.parent / WORK_DIR / hashlib.sha1(name.encode()).hexdigest()[:16]


EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def default_memory_budget() -> int:
    """A quarter of the memory this process may use (physical memory, capped by a cgroup limit: containers, Slurm
    and Kubernetes jobs)."""
    from dualsr_deploy.resources import usable_memory

    return usable_memory() // 4


@dataclass(frozen=True)
class BackendSpec:
    """Which backend, where, in which precision; ``weights`` maps scale → a checkpoint file given, ``family`` names
    the shipped weights of the other scales (``auto``: chosen per scene, see :func:`dualsr_deploy.weights
    .choose_family`);
    ``artefacts_dir``: where exported graphs, IR and plans are found (and exported to before a run needs them)."""

    backend: str = "torch"
    device: str = "cpu"
    precision: str = "auto"  # auto: chosen by InferOptions for the weights its stage runs (as the CLI's default)
    artefacts_dir: Path = Path("engines")
    weights: tuple[tuple[int, Path], ...] = ()
    family: str = "auto"  # shipped weights for the scales without a file: auto (per scene, as the CLI), cave, airborne
    compile: bool = False
    threads: int | None = None  # intra-op threads on a CPU; None: the CPUs this process may use (resources.py)
    half_scales: tuple[int, ...] = ()  # scales used as the dual stage's ×s/2 model (for messages)
    precision_choice: str = ""  # why this precision, when --precision auto chose it (printed, in the manifest)
    backend_choice: str = ""  # why this backend, when --backend auto chose it (printed, in the manifest)
    # --backend auto chose the backend, and each family's route chooses again for its own weights (with_family);
    # False where it was named, or kept to torch (on a cluster)
    backend_auto: bool = False

    def __post_init__(self) -> None:
        if self.backend == AUTO_BACKEND:  # resolved by InferOptions (the Python API), as for_run resolves it
            return
        check_backend(self.backend, "fp32" if self.precision == "auto" else self.precision, self.device)
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1; got {self.threads}")

    @property
    def cpu_threads(self) -> int:
        """Intra-op threads of a CPU backend: ``threads``, else every CPU this process may use (its affinity and
        cgroup quota). How idle OpenMP threads wait is chosen when the package is imported
        (:mod:`dualsr_deploy._waiting`: a bounded spin on a quiet machine, passive beside busy neighbours, where
        torch's default spinning was 19.6× slower); ONNX Runtime runs without spinning."""
        from dualsr_deploy.resources import usable_cpus

        return self.threads or usable_cpus()

    @classmethod
    def for_run(
        cls,
        backend: str = "torch",
        *,
        scale: int,
        stage: str,
        device: str | None = None,
        precision: str = "fp32",
        artefacts_dir: Path = Path("engines"),
        weights: str | Path | None = None,
        weights_half: str | Path | None = None,
        compile: bool = False,
        on_cluster: bool = False,
        threads: int | None = None,
    ) -> BackendSpec:
        """The spec a command line asks for. ``device`` None: this machine's CUDA device if any, else the CPU; on
        a cluster the workers' device is the cluster's to decide (CUDA where it has GPUs), not this machine's.
        ``backend`` auto: see :mod:`dualsr_deploy.backends.choice`."""
        if backend == AUTO_BACKEND:
            make = functools.partial(
                cls.for_run,
                scale=scale,
                stage=stage,
                device=device,
                precision=precision,
                artefacts_dir=artefacts_dir,
                weights=weights,
                weights_half=weights_half,
                compile=compile,
                on_cluster=on_cluster,
                threads=threads,
            )
            spec = make(DEFAULT_BACKEND)
            picked = spec.choose_backend(precision, scale, stage, on_cluster=on_cluster)
            if picked.backend != spec.backend:  # made as `--backend NAME` makes it
                spec = make(picked.backend)
            return replace(spec, backend_choice=picked.describe(), backend_auto=not on_cluster)
        kind = backend_kind(backend)
        if on_cluster:
            chosen = device or ("cuda" if kind.cuda_only else "cpu")
        elif kind.devices == "openvino":
            chosen = device or "cpu"  # an OpenVINO device name (cpu, GPU, NPU …), checked when the backend opens
        else:
            chosen = check_device(device or default_device())
        from dualsr_deploy.weights import AUTO, FAMILIES, resolve_weights

        given: dict[int, Path] = {}
        family = AUTO if weights is None or str(weights) == AUTO else str(weights)
        full = None if family == AUTO else resolve_weights(weights, scale)
        if full is not None:
            given[scale] = full
            family = AUTO if family not in FAMILIES else family  # a PATH: the other scales' weights stay auto
        if weights_half is not None and str(weights_half) != AUTO:
            half = resolve_weights(weights_half, scale // 2)
            assert half is not None
            given[scale // 2] = half
        if family in FAMILIES:  # a family asked for by name must ship every scale the run needs
            from dualsr_deploy.weights import shipped_scales, shipped_weights

            needs_half = stage == "dual" or (stage == AUTO_STAGE and scale // 2 in shipped_scales(family))
            for needed in (scale, scale // 2) if needs_half else (scale,):
                if needed not in given:
                    given[needed] = shipped_weights(needed, family)
        maybe_half = stage == "dual" or (stage == AUTO_STAGE and scale % 2 == 0 and scale >= 4)
        # --weights auto: this spec runs cave's weights (auto's fallback); another family's route resolves its own
        used = run_weights(given, "cave" if family == AUTO else family, (scale, scale // 2) if maybe_half else (scale,))
        choice = resolve_precision(precision, backend, chosen, used)
        return cls(
            backend=backend,
            device=chosen,
            precision=choice.precision,
            precision_choice=choice.describe() if precision == "auto" else "",
            artefacts_dir=artefacts_dir,
            weights=tuple(given.items()),
            family=family,
            compile=compile,
            threads=threads,
            half_scales=(scale // 2,) if stage in ("dual", AUTO_STAGE) and scale % 2 == 0 and scale >= 4 else (),
        )

    def choose_backend(self, precision: str, scale: int, stage: str, *, on_cluster: bool = False) -> BackendChoice:
        """What ``--backend auto`` picks for this spec's device and the weights files it runs, with ``--precision
        precision``. Under ``--weights auto`` this spec runs cave's (auto's fallback); another family's route
        chooses for its own weights (:meth:`with_family`), so an archive of airborne scenes runs on the backend
        fastest for the airborne weights, whatever is fastest for CAVE's."""
        from dualsr_deploy.backends.choice import BackendChoice, choose_backend

        if on_cluster:
            return BackendChoice(DEFAULT_BACKEND, "a cluster's workers may have other runtimes than this machine")
        from dualsr_deploy.weights import AUTO

        half = stage in ("dual", AUTO_STAGE) and scale % 2 == 0 and scale >= 4
        family = "cave" if self.family == AUTO else self.family
        used = run_weights(dict(self.weights), family, (scale, scale // 2) if half else (scale,))
        return choose_backend(self.device, precision, used)

    def with_family(self, family: str, cave_scales: tuple[int, ...] = (), scales: tuple[int, ...] = ()) -> BackendSpec:
        """This spec with the shipped weights of ``family`` for the scales not given a file (cave's at
        ``cave_scales``, where ``family`` ships none); ``--precision auto`` chosen again for the weights it runs at
        ``scales`` (the quality rule is a property of the weights)."""
        from dualsr_deploy.weights import shipped_weights

        fallback = tuple((s, shipped_weights(s, "cave")) for s in cave_scales if self.given(s) is None)
        spec = replace(self, family=family, weights=self.weights + fallback)
        files = [spec.checkpoint(s) for s in scales if spec.has_weights(s)]
        backend, backend_choice = self.backend, self.backend_choice
        if self.backend_auto and files:  # --backend auto: the backend fastest for this family's weights
            from dualsr_deploy.backends.choice import choose_backend

            picked = choose_backend(self.device, "auto" if self.precision_choice else self.precision, files)
            backend, backend_choice = picked.backend, picked.describe()
        if not self.precision_choice or not scales:
            return replace(spec, backend=backend, backend_choice=backend_choice)
        from dualsr_deploy.backends.precision import auto_precision

        choice = auto_precision(backend, self.device, files)
        return replace(
            spec,
            backend=backend,
            backend_choice=backend_choice,
            precision=choice.precision,
            precision_choice=choice.describe(),
        )

    def given(self, scale: int) -> Path | None:
        """The checkpoint file given for ``scale`` (--weights/--weights-half PATH), if any."""
        return next((path for s, path in self.weights if s == scale), None)

    def checkpoint(self, scale: int) -> Path:
        """The weights for ``scale``: the file given, else the shipped ones of this spec's family (``auto`` before a
        scene has chosen one: cave, its fallback)."""
        given = self.given(scale)
        if given is not None:
            return given
        from dualsr_deploy.weights import AUTO, shipped_scales, shipped_weights

        family = "cave" if self.family == AUTO else self.family
        if scale not in shipped_scales(family):
            have = ", ".join(f"×{s}" for s in shipped_scales(family)) or "none"
            option = "--weights-half" if scale in self.half_scales else "--weights"
            raise CheckpointError(
                f"no shipped {family} ×{scale} weights (shipped {family}: {have}); pass your own ({option} PATH; "
                f"{option.lstrip('-').replace('-', '_')}=PATH in Python), or train one "
                f"with `dualsr train … --scale {scale}`"
            )
        return shipped_weights(scale, family)

    def has_weights(self, scale: int) -> bool:
        if self.given(scale) is not None:
            return True
        from dualsr_deploy.weights import AUTO, shipped_scales

        return scale in shipped_scales("cave" if self.family == AUTO else self.family)

    def weights_label(self, scale: int) -> str:
        """What the run uses at ``scale``: the shipped family (``auto`` before a scene has chosen: cave), or the
        name of a file given that is not a shipped one."""
        from dualsr_deploy.weights import AUTO, FAMILIES, family_dir

        given = self.given(scale)
        if given is None:
            return "cave" if self.family == AUTO else self.family
        for family in FAMILIES:
            if given.resolve() == (family_dir(family) / f"coarsr_x{scale}.safetensors").resolve():
                return family
        return given.name

    @property
    def kind(self) -> BackendKind:
        """What the backend is: its artefacts, precisions, devices (:mod:`dualsr_deploy.backends.kinds`)."""
        return backend_kind(self.backend)

    @property
    def band_chunk(self) -> int | None:
        """Bands per call of the graphs this run makes (None: whole-cube graphs, or the torch backend):
        :meth:`BackendKind.band_chunk`."""
        return self.kind.band_chunk(self.device, self.precision)

    @property
    def whole_activations(self) -> bool:
        """A call holds the activations of every band plane of its tiles at once (a whole-cube graph)."""
        return self.kind.whole_activations and self.band_chunk is None

    @property
    def label(self) -> str:
        return f"{self.backend}-{self.device}-{self.precision}"


CPU_BATCH = 1  # tiles per backend call on a CPU (see InferOptions.batch_on)
GPU_BATCH = 8


def default_batch(device: str) -> int:
    """Tiles per backend call when none is given: :data:`CPU_BATCH` on a CPU, :data:`GPU_BATCH` on a GPU (what
    ``dualsr infer`` and ``dualsr bench`` use alike)."""
    return CPU_BATCH if str(device).startswith("cpu") else GPU_BATCH


@dataclass(frozen=True)
class InferOptions:
    """What ``dualsr infer`` was asked to do (see the CLI's help for each)."""

    scale: int = 4
    stage: str = AUTO_STAGE
    # --backend auto, as the CLI's default: the Python API runs what `dualsr infer` runs (resolved in __post_init__)
    backend: BackendSpec = field(default_factory=lambda: BackendSpec(backend=AUTO_BACKEND))
    tile: int | None = None  # None: auto (see TileRunner.tile_for)
    batch: int | None = None  # None: auto (see InferOptions.batch_on)
    format: str | None = None
    clip: bool = True
    resume: bool = False
    overwrite: bool = False
    memory_budget: int | None = None
    normalise: Normalisation = field(default_factory=Normalisation)
    masking: Masking = field(default_factory=Masking)
    units: str = "source"  # outputs in the input's units and dtype, or float32 in [0, 1] ("normalised")
    qa: bool = False  # write a per-pixel quality layer beside each output (see dualsr_deploy.infer.quality)
    zarr_format: int | None = None  # Zarr outputs: 2 or 3; None: 3 where the installed zarr-python writes it
    reference: str | None = None  # "bicubic": the MATLAB-bicubic interpolation written beside each output
    key: str | None = None
    layout: str | None = None
    root: Path | None = None
    shard: Shard | None = None  # this job's part of the archive (dualsr_deploy.infer.shards); None: all of it
    stac: bool = False  # a STAC Item beside each output and a Catalog of the run (dualsr_deploy.infer.stac)
    stage_choice: str = ""  # why this stage, when --stage auto chose it (printed, in the manifest)

    def batch_on(self, device: str) -> int:
        """Tiles per backend call: ``--batch``, else :data:`CPU_BATCH` on a CPU and :data:`GPU_BATCH` on a GPU.

        Every call of a run has the same number of tiles (the last batch is padded), so a tile's result never
        depends on which tiles it was batched with; one tile a call on a CPU also makes it independent of the batch
        size, which oneDNN's convolutions are not between 1 and more (a few 1e-7), and was faster there (8 tiles of
        64² at ×4: 2.96 s one by one, 4.08 s batched, torch fp32 on this 2-core CPU).
        """
        return self.batch if self.batch is not None else default_batch(device)

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise InputError(f"scale {self.scale} is not supported; CoarSR exists for {SUPPORTED_SCALES}")
        if self.stage == AUTO_STAGE:  # resolved here, once, and said (stage_choice), as --precision auto is
            stage, why = choose_stage(self.scale, self.backend.has_weights)
            object.__setattr__(self, "stage", stage)
            object.__setattr__(self, "stage_choice", why)
        if self.stage not in STAGES:
            raise InputError(f"unknown stage {self.stage!r}; choose one of {AUTO_STAGE}, {', '.join(STAGES)}")
        if self.backend.backend == AUTO_BACKEND:  # a spec made directly (the Python API): chosen as for_run chooses
            spec = replace(self.backend, backend=DEFAULT_BACKEND)
            picked = spec.choose_backend(spec.precision, self.scale, self.stage)
            spec = replace(spec, backend=picked.backend, backend_choice=picked.describe(), backend_auto=True)
            check_backend(spec.backend, "fp32" if spec.precision == "auto" else spec.precision, spec.device)
            object.__setattr__(self, "backend", spec)
        if self.backend.precision == "auto":  # a spec made directly (the Python API): chosen as for_run chooses
            spec = self.backend
            used = [spec.checkpoint(s) for s in self.scales if spec.has_weights(s)]
            choice = resolve_precision("auto", spec.backend, spec.device, used)
            chosen = replace(spec, precision=choice.precision, precision_choice=choice.describe())
            object.__setattr__(self, "backend", chosen)
        if self.tile is not None and self.tile < 8:
            raise InputError(f"--tile must be at least 8 LR pixels; got {self.tile}")
        if self.batch is not None and self.batch < 1:
            raise InputError(f"--batch must be at least 1; got {self.batch}")
        if self.format is not None and self.format not in OPTIONS:
            raise InputError(f"unknown --format {self.format!r}; choose one of {', '.join(OPTIONS)}")
        if self.units not in UNITS:
            raise InputError(f"unknown --units {self.units!r}; choose one of {', '.join(UNITS)}")
        if self.reference not in (None, "bicubic"):
            raise InputError(f"--reference {self.reference}: the reference written beside outputs is bicubic")
        if self.zarr_format not in (None, 2, 3):
            raise InputError(f"--zarr-format {self.zarr_format}: give 2 or 3")
        if self.resume and self.overwrite:
            raise InputError("--resume continues a run and --overwrite redoes it: give one of them")
        if self.stage == "dual":
            if self.scale == 2:
                raise InputError(
                    "the dual stage needs a ×s/2 CoarSR for its fine stage, and ×2 has none (s/2 = 1); run --stage "
                    "coarse, or --stage backproject (SAM-weighted back-projection onto the LR input)"
                )
            if self.scale % 2 or not self.backend.has_weights(self.scale // 2):
                raise InputError(
                    f"the dual stage at ×{self.scale} needs a ×{self.scale / 2:g} CoarSR for its fine stage, and "
                    f"there is none{'' if self.scale % 2 else ' (pass one with --weights-half)'}; run --stage "
                    "coarse, or --stage backproject (SAM-weighted back-projection onto the LR input)"
                )

    def choose_weights(self, bands: int, wavelengths: Sequence[float] | None) -> FamilyChoice | None:
        """The shipped family ``--weights auto`` picks for a cube of ``bands`` bands (with ``wavelengths`` in nm when
        known), for the scales not given a file; None when the run's weights are fixed. The one place a scene's
        weights are chosen (the plan, runs, ``Upscaler`` and xarray ask here, through
        :class:`~dualsr_deploy.infer.routes.Router`)."""
        from dualsr_deploy.weights import AUTO, choose_family

        spec = self.backend
        if spec.family != AUTO:
            return None
        shipped = [s for s in self.scales if spec.given(s) is None]  # the scales that take shipped weights
        return choose_family(bands, wavelengths, shipped) if shipped else None

    def for_weights(self, choice: FamilyChoice | None) -> InferOptions | None:
        """These options with the family ``--weights auto`` chose for a scene, or None when the run's own weights
        serve it (no choice, weights not auto, or cave: auto's fallback, which the run's own options already use)."""
        from dualsr_deploy.weights import AUTO

        if choice is None or self.backend.family != AUTO or choice.family == "cave":
            return None
        return replace(self, backend=self.backend.with_family(choice.family, choice.cave_scales, self.scales))

    def for_cluster(self) -> InferOptions:
        """These options for a Ray cluster's workers: a backend ``--backend auto`` chose other than torch becomes
        torch, as ``dualsr infer --cluster`` chooses (the workers may have other runtimes than this machine), with
        ``--precision auto`` chosen again for it."""
        spec = self.backend
        if not spec.backend_choice:
            return self
        if spec.backend == DEFAULT_BACKEND:  # kept, and no family's route chooses another
            return replace(self, backend=replace(spec, backend_auto=False))
        picked = spec.choose_backend(spec.precision, self.scale, self.stage, on_cluster=True)
        precision = "auto" if spec.precision_choice else spec.precision
        torch_spec = replace(
            spec, backend=picked.backend, backend_choice=picked.describe(), precision=precision, backend_auto=False
        )
        return replace(self, backend=replace(torch_spec, precision_choice="") if precision == "auto" else torch_spec)

    @property
    def budget(self) -> int:
        return self.memory_budget if self.memory_budget is not None else default_memory_budget()

    @property
    def scales(self) -> tuple[int, ...]:
        """The coarse models the stage runs: ×s, and ×s/2 for ``dual``."""
        return (self.scale, self.scale // 2) if self.stage == "dual" else (self.scale,)

    def strip_rows(self, shape: tuple[int, int, int], scale: int | None = None) -> int:
        """The core rows of a streamed scene's tiles: the most, up to the tile size (``--tile`` or
        :data:`AUTO_TILE`), whose row of tiles fits the memory budget (:data:`STRIP_COPIES` copies of its ×s rows,
        each a full scene width, and two of its LR rows: the strip the network reads, and the one held for writing
        it). Tiles keep their width, so a low budget costs only halo rows."""
        tile = self.tile or AUTO_TILE
        c, _h, w = shape
        s = scale or self.scale
        row = (STRIP_COPIES * s * s + 2) * 4 * c * w  # bytes per LR row of a tile row, at ×s
        return max(8, min(tile, int(self.budget * (1 - TILE_SHARE)) // max(row, 1)))

    def streams(self, shape: tuple[int, int, int]) -> bool:
        """Whether a scene is streamed: its working set (:meth:`working_bytes`) over the budget less what a backend
        call takes (:data:`TILE_SHARE`)."""
        return self.working_bytes(shape) > self.budget * (1 - TILE_SHARE)

    def working_bytes(self, shape: tuple[int, int, int]) -> int:
        """Estimated peak bytes to process a scene whole: LR, the coarse SR cube(s), the fine stage's resizes and
        differences and the written copy; about 12 HR copies for the fine stages, 5 for coarse alone (measured: a
        31×256×256 LR scene at ×4 dual peaked 1.6 GB above the process, ~12.5 HR copies)."""
        c, h, w = shape
        s2 = self.scale * self.scale
        return 4 * c * h * w * (1 + (5 if self.stage == "coarse" else 12) * s2)


EventKind = Literal["plan", "scene", "tiles", "strips", "skip", "done", "message"]


@dataclass
class Event:
    """A progress report: ``kind`` is plan, scene, tiles, strips (a streamed scene's fine stage: ``count`` of
    ``total`` rows done in the step ``name``), skip, done or message (the callback may run on worker threads)."""

    kind: EventKind
    name: str = ""
    count: int = 0
    total: int = 0
    record: SceneRecord | None = None
    text: str = ""


__all__ = [
    "AUTO_STAGE",
    "AUTO_TILE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "STAGES",
    "TILE_SHARE",
    "UNITS",
    "WORK_DIR",
    "BackendSpec",
    "Event",
    "EventKind",
    "InferOptions",
    "choose_stage",
    "default_batch",
    "default_memory_budget",
    "scene_work_dir",
]
