"""``dualsr info`` and ``dualsr convert``: inspect checkpoints and convert them to the project's format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from dualsr_deploy.cli.common import NEIGHBOUR_RULES, Column, console, print_table, user_errors
from dualsr_deploy.errors import CheckpointError

if TYPE_CHECKING:
    from dualsr_deploy.checkpoint import CheckpointInfo


def _table(info: CheckpointInfo) -> Table:
    table = Table(title=f"CoarSR checkpoint {info.path}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("format", info.format)
    table.add_row("sha256", info.sha256)
    table.add_row("scale", f"×{info.scale}")
    table.add_row("n_feats / n_blocks", f"{info.n_feats} / {info.n_blocks}")
    table.add_row("neighbour rule", f"{info.neighbour_rule} ({info.rule_source})")
    table.add_row("parameters", f"{info.parameters:,}")
    table.add_row("trained on bands", "unknown" if info.bands is None else str(info.bands))
    table.add_row("epoch", "unknown" if info.epoch is None else str(info.epoch))
    table.add_row("written by", info.version or "published training code")
    for key, value in info.provenance.items():
        table.add_row(f"provenance: {key}", str(value))
    return table


@user_errors
def info(
    checkpoint: Path = typer.Argument(..., help="A published .pth or a dualsr .safetensors checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the detected facts as JSON."),
) -> None:
    """Print what a checkpoint holds: format, scale, size, neighbour rule, provenance."""
    from dualsr_deploy.checkpoint import read_checkpoint

    _, detected = read_checkpoint(checkpoint)
    if as_json:
        console.print_json(json.dumps(detected.to_dict()))
    else:
        console.print(_table(detected))


@user_errors
def convert(
    source: Path = typer.Argument(..., help="Checkpoint to convert (published .pth or dualsr .safetensors)."),
    target: Path = typer.Argument(..., help="Output file; must end with .safetensors."),
    neighbours: str | None = typer.Option(
        None,
        help=f"Neighbour rule to record ({', '.join(NEIGHBOUR_RULES)}); default: the source's rule "
        "(published files: reference, what their training loop used).",
    ),
    bands: int | None = typer.Option(None, help="Number of bands the model was trained on, to record."),
    force: bool = typer.Option(False, help="Overwrite TARGET if it exists."),
) -> None:
    """Write a checkpoint in the project's own format (safetensors + JSON metadata, no pickle)."""
    if target.exists() and not force:
        raise CheckpointError(f"{target}: exists already; pass --force to overwrite it")
    if target.resolve() == source.resolve():
        raise CheckpointError(f"{target}: would overwrite the source checkpoint; choose another name")
    from dualsr_deploy.archs.neighbours import check_rule
    from dualsr_deploy.checkpoint import read_checkpoint, write_checkpoint

    model, detected = read_checkpoint(source)
    rule = check_rule(neighbours) if neighbours is not None else detected.neighbour_rule
    provenance = dict(detected.provenance)
    provenance.setdefault("converted_from", f"{source.name} (sha256 {detected.sha256})")
    write_checkpoint(
        model,
        target,
        neighbour_rule=rule,
        bands=bands if bands is not None else detected.bands,
        epoch=detected.epoch,
        provenance=provenance,
    )
    console.print(f"wrote {escape(str(target))} (×{detected.scale}, n_feats {detected.n_feats}, neighbour rule {rule})")


def register(app: typer.Typer) -> None:
    app.command()(info)
    app.command()(convert)
    app.command()(weights)


@user_errors
def weights(as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON.")) -> None:
    """List the shipped weights by family and scale, with their model cards' numbers."""
    from dualsr_deploy.weights import FAMILIES, list_shipped, model_card, shipped_scales

    shipped = list_shipped()
    if as_json:
        console.print_json(
            json.dumps([{**{k: v for k, v in vars(w).items() if k != "path"}, "path": str(w.path)} for w in shipped])
        )
        return
    columns = [
        Column("family"),
        Column("×", "×", "right"),
        Column("size (feats/blocks, params)", "size"),
        Column("held out", None),
        Column("CoarSR PSNR / SAM", "CoarSR", "right"),
        Column("bicubic PSNR / SAM", "bicubic", "right"),
        Column("gain", "gain", "right"),
        Column("file", None),
    ]
    rows = []
    for w in shipped:
        v = w.validation
        rows.append(
            [
                w.family,
                str(w.scale),
                f"{w.n_feats}/{w.n_blocks}, {w.parameters / 1e3:.0f} k",
                ", ".join(w.validation_scenes),
                f"{v.get('psnr', float('nan')):.2f} dB / {v.get('sam', float('nan')):.2f}°",
                f"{v.get('bicubic_psnr', float('nan')):.2f} dB / {v.get('bicubic_sam', float('nan')):.2f}°",
                f"{v.get('psnr', 0) - v.get('bicubic_psnr', 0):+.2f} dB",
                w.path.name,
            ]
        )
    print_table("shipped CoarSR weights (validation on each file's held-out scenes)", columns, rows)
    how = sorted({w.computed_in for w in shipped if w.computed_in})
    console.print(
        "PSNR and SAM as validated while training"
        + (f" (computed in {', '.join(how)})" if how else "")
        + "; the model cards also score the same scenes in fp32, which differs by up to a few hundredths of a dB",
        highlight=False,
    )
    for family in FAMILIES:
        card = model_card(family)
        if shipped_scales(family):
            console.print(f"{family}: model card {card}")
        else:
            console.print(f"{family}: none ship yet")
