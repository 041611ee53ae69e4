"""``dualsr data``: inspect archives, convert and degrade scenes, make synthetic scenes, build patch stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from dualsr_deploy.cli.common import (
    NORMALISE_HELP,
    TO_HELP,
    Column,
    console,
    error_console,
    parse_bytes,
    print_skipped,
    print_table,
    progress_bar,
    user_errors,
)

if TYPE_CHECKING:
    from dualsr_deploy.data.archive import Archive
    from dualsr_deploy.data.convert import SceneTransform

data_app = typer.Typer(help="Scene archives: inspect, convert, degrade, synthesise, prepare training patches.")


@user_errors
def info(
    archive: str = typer.Argument(
        ..., help="A scene file, a folder, a glob pattern, a list file or a multi-scene HDF5."
    ),
    key: str | None = typer.Option(None, help="Array inside MATLAB/HDF5/NPZ files (default: the largest 3-D one)."),
    layout: str | None = typer.Option(None, help="Axis order of that array: hwc, chw, … (MATLAB order for .mat)."),
    root: Path | None = typer.Option(None, help="Allow scenes anywhere under this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
) -> None:
    """List the scenes of an archive with their format, size and type; exit 1 if any cannot be read."""
    from dualsr_deploy.data.archive import open_archive

    found = open_archive(archive, key=key, layout=layout, root=root)
    if as_json:
        rows = [
            {
                "name": e.name,
                "path": str(e.path),
                "key": e.key,
                "format": e.format,
                "shape": e.shape,
                "dtype": e.dtype,
                "error": e.error,
            }
            for e in found.entries
        ]
        skipped = [{"path": str(s.path), "reason": s.reason} for s in found.skipped]
        console.print_json(json.dumps({"scenes": rows, "skipped": skipped}))
    else:
        columns = [
            Column("scene", text=True),
            Column("format"),
            Column("bands × H × W", "C×H×W", "right"),
            Column("dtype"),
            Column("MB (float32)", "MB", "right"),
            Column("status"),
            Column("error", note=True),
        ]
        cells = [
            [
                escape(e.name),
                e.format or "-",
                "×".join(map(str, e.shape)) if e.shape else "-",
                e.dtype or "-",
                f"{e.nbytes / 1e6:.1f}",
                "[green]ok[/]" if e.error is None else "[red]failed[/]",
                escape(e.error or ""),
            ]
            for e in found.entries
        ]
        print_table(f"{len(found)} scenes in {archive}", columns, cells)
        print_skipped(found.skipped, found.root)
        console.print(
            f"{len(found.readable)} readable, {len(found.failed)} failed, {found.nbytes / 1e9:.2f} GB as float32"
        )
    if found.failed:
        raise typer.Exit(1)


@user_errors
def convert(
    archive: str = typer.Argument(..., help="Scenes to convert (file, folder, glob, list file)."),
    out_dir: Path = typer.Argument(..., help="Folder for the converted scenes (<name><suffix>)."),
    to: str = typer.Option(".h5", "--to", help=TO_HELP),
    units: str = typer.Option("normalised", help="normalised (float32 in [0, 1]) or source (original units/dtype)."),
    key: str | None = typer.Option(None, help="Array inside MATLAB/HDF5/NPZ files."),
    layout: str | None = typer.Option(None, help="Axis order of that array (MATLAB order for .mat)."),
    normalise: str = typer.Option("auto", help=NORMALISE_HELP),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
    memory_budget: str | None = typer.Option(
        None,
        help="Bytes a scene's conversion may hold (e.g. 2G); larger scenes are converted in strips. Default: RAM/4.",
    ),
) -> None:
    """Rewrite every scene of an archive in another format (metadata kept)."""
    from dualsr_deploy.data.archive import open_archive

    found = open_archive(archive, key=key, layout=layout)
    budget = parse_bytes(memory_budget) if memory_budget else None
    _run_batch(
        found,
        out_dir,
        to=to,
        units=units,
        normalise=normalise,
        force=force,
        transform=None,
        verb="convert",
        memory_budget=budget,
    )


@user_errors
def degrade(
    archive: str = typer.Argument(..., help="HR scenes (file, folder, glob, list file)."),
    out_dir: Path = typer.Argument(..., help="Folder for the LR scenes."),
    scale: int = typer.Option(..., help="Downsampling factor (HR is first cropped to a multiple of it)."),
    blur: str | None = typer.Option(None, help="Gaussian blur before downsampling, SIZE:SIGMA (e.g. 7:1.5)."),
    noise: float = typer.Option(0.0, help="Standard deviation of Gaussian noise on the [0, 1] scale."),
    seed: int = typer.Option(0, help="Seed of the noise."),
    to: str = typer.Option(".h5", "--to", help=TO_HELP),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    """Make LR scenes by the paper's protocol: (blur,) MATLAB bicubic downsampling (, noise)."""
    from dualsr_deploy.data.archive import open_archive
    from dualsr_deploy.data.convert import degradation
    from dualsr_deploy.data.degrade import Blur

    transform = degradation(scale, blur=Blur.parse(blur) if blur else None, noise_sigma=noise, seed=seed)
    found = open_archive(archive)
    _run_batch(
        found, out_dir, to=to, units="normalised", normalise="auto", force=force, transform=transform, verb="degrade"
    )


def _run_batch(
    found: Archive,
    out_dir: Path,
    *,
    to: str,
    units: str,
    normalise: str,
    force: bool,
    transform: SceneTransform | None,
    verb: str,
    memory_budget: int | None = None,
) -> None:
    from dualsr_deploy.data.convert import BatchResult, convert_archive
    from dualsr_deploy.data.normalise import Normalisation

    failures: list[BatchResult] = []
    with progress_bar() as progress:
        task = progress.add_task(verb, total=len(found))

        def report(result: BatchResult, done: int, total: int) -> None:
            if result.error:
                failures.append(result)
                progress.console.print(f"[red]failed[/] {escape(result.name)}: {escape(result.error)}")
            progress.update(task, completed=done, description=f"{verb} {escape(result.name)}")

        results = convert_archive(
            found,
            out_dir,
            suffix=to,
            units=units,
            normalise=Normalisation.parse(normalise),
            transform=transform,
            overwrite=force,
            progress=report,
            memory_budget=memory_budget,
        )
    console.print(f"{len(results) - len(failures)} written to {escape(str(out_dir))}, {len(failures)} failed")
    if failures:
        raise typer.Exit(1)


@user_errors
def synth(
    out_dir: Path = typer.Argument(..., help="Folder for the scenes (and previews/ with their sRGB renderings)."),
    count: int = typer.Option(4, min=1, help="Number of scenes."),
    size: int = typer.Option(256, min=16, help="Height and width in pixels."),
    bands: int = typer.Option(31, min=5, help="Bands evenly spaced over 400–700 nm."),
    seed: int = typer.Option(0, help="Seed of the first scene (scene k uses seed + k)."),
    to: str = typer.Option(".h5", "--to", help=TO_HELP),
    preview: bool = typer.Option(True, help="Also write an sRGB PNG of each scene under previews/."),
    force: bool = typer.Option(False, help="Overwrite existing scenes."),
) -> None:
    """Make CAVE-like scenes from measured reflectances laid over real photographs (deterministic per seed)."""
    from dualsr_deploy.data.formats import write_scene
    from dualsr_deploy.data.synth import render_srgb, synthesize

    with progress_bar() as progress:
        task = progress.add_task("synthesise", total=count)
        for index in range(count):
            scene = synthesize(seed + index, size=size, bands=bands)
            target = out_dir / f"{scene.name}{to}"
            if target.exists() and not force:
                raise typer.BadParameter(f"{target} exists already; pass --force to overwrite")
            write_scene(target, scene)
            if preview:
                _write_png(
                    out_dir / "previews" / f"{scene.name}.png", render_srgb(scene.cube, scene.meta.wavelengths or ())
                )
            progress.update(task, advance=1, description=f"synthesise {scene.name}")
    console.print(f"wrote {count} scenes ({bands}×{size}×{size}) to {escape(str(out_dir))}")


def _write_png(path: Path, rgb: object) -> None:
    import numpy as np
    from PIL import Image

    from dualsr_deploy.atomic import atomic_output

    pixels = np.clip(np.rint(np.asarray(rgb) * 255), 0, 255).astype(np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


@user_errors
def prepare(
    archive: str = typer.Argument(..., help="HR training scenes (folder, glob, list file, …)."),
    out: Path = typer.Argument(..., help="Patch store to write (.h5)."),
    scale: int = typer.Option(..., help="Super-resolution factor the store is for."),
    lr_patch: int = typer.Option(32, help="LR patch side in pixels (HR patches are scale times larger)."),
    stride: int | None = typer.Option(None, help="HR pixels between patches (default: the HR patch side)."),
    rescales: str = typer.Option("1,0.75,0.5", help="Comma-separated factors the HR scenes are resized by."),
    blur: list[str] = typer.Option([], help="Extra blur kernel SIZE:SIGMA (repeatable); plain bicubic is always in."),
    validation: list[str] = typer.Option([], help="Scene to hold out for validation (repeatable)."),
    validation_count: int = typer.Option(2, help="Scenes to hold out when --validation is not given."),
    seed: int = typer.Option(0, help="Seed of the validation choice."),
    bands: int | None = typer.Option(
        None, help="Band window: cut training patches into windows of this many bands (mixed band counts)."
    ),
    root: Path | None = typer.Option(None, help="Allow scenes anywhere under this folder."),
    normalise: str = typer.Option("auto", help=NORMALISE_HELP),
    force: bool = typer.Option(False, help="Overwrite OUT if it exists."),
) -> None:
    """Build an HDF5 patch store for training (the published recipe; augmentation happens when patches are read)."""
    from dualsr_deploy.data.archive import open_archive
    from dualsr_deploy.data.degrade import Blur
    from dualsr_deploy.data.normalise import Normalisation
    from dualsr_deploy.data.patches import PatchRecipe, prepare_patches
    from dualsr_deploy.errors import DataError

    if out.exists() and not force:
        raise DataError(f"{out}: exists already; pass --force to overwrite it")
    try:
        factors = tuple(float(v) for v in rescales.split(","))
    except ValueError:
        raise DataError(f"--rescales takes comma-separated numbers, not {rescales!r}") from None
    recipe = PatchRecipe(
        scale=scale,
        lr_patch=lr_patch,
        stride=stride,
        rescales=factors,
        blurs=tuple(Blur.parse(b) for b in blur),
        validation=tuple(validation),
        validation_count=validation_count,
        seed=seed,
        bands=bands,
    )
    found = open_archive(archive, root=root)
    for entry in found.failed:
        error_console.print(f"[yellow]skipped[/] {escape(entry.name)}: {escape(entry.error or '')}")
    with progress_bar() as progress:
        task = progress.add_task("prepare", total=len(found.readable))

        def report(name: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=f"prepare {escape(name)}")

        store = prepare_patches(found, out, recipe, normalise=Normalisation.parse(normalise), progress=report)
    for name, reason in store.skipped.items():
        if name not in {e.name for e in found.failed}:
            error_console.print(f"[yellow]skipped[/] {escape(name)}: {escape(reason)}")
    console.print(
        f"wrote {out}: {store.patches} patches × {len(store.kernels)} kernel(s) × 8 augmentations = "
        f"{store.samples} samples from {len(store.train_scenes)} scenes; validation: "
        f"{', '.join(store.validation_scenes)} ({store.seconds:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    for command in (info, convert, degrade, synth, prepare):
        data_app.command()(command)
    app.add_typer(data_app, name="data")
