"""``dualsr manifest merge``: join the shards' manifest parts of an output folder into its ``manifest.jsonl``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from dualsr_deploy.cli.common import console, user_errors

manifest_app = typer.Typer(help="The run manifest of an output folder.", no_args_is_help=True)


@user_errors
def merge(
    out: str = typer.Argument(..., help="The output folder the shards wrote to, or its prefix in object storage."),
) -> None:
    """Join every manifest.shard-I-of-N.jsonl of OUT onto OUT/manifest.jsonl (then remove the parts). Refused while a
    shard still runs; exits 1 when a shard of the array left no part or a scene was written by two shards."""
    from dualsr_deploy.data.remote import is_url
    from dualsr_deploy.infer.manifest import merge_parts

    if is_url(out):
        from dualsr_deploy.infer.remote_output import merge_remote

        report = merge_remote(out)
    else:
        report = merge_parts(Path(out))
    joined = report.manifest_url or str(report.manifest)
    if not report.parts:
        console.print(f"{escape(out)}: no shard parts to merge; {escape(joined)} is as it was")
    else:
        console.print(
            f"merged {len(report.parts)} part(s) into {escape(joined)}: {report.records} records, "
            f"{report.scenes} scenes ({report.ok} ok, {report.failed} failed)"
        )
    catalog = report.catalog_url or (str(report.catalog) if report.catalog is not None else None)
    if catalog is not None:
        console.print(f"STAC catalog of the run: {escape(catalog)}")
    if report.cut_lines:
        console.print(f"passed over {report.cut_lines} line(s) cut short by a killed run")
    problems = False
    for count, missing in report.missing.items():
        problems = True
        shown = ", ".join(f"{index}/{count}" for index in missing[:20]) + (" …" if len(missing) > 20 else "")
        console.print(f"[red]no part[/] from shard(s) {shown}: run them (or --resume them) and merge again")
    if report.twice:
        problems = True
        console.print(f"[red]written by two shards[/]: {escape(', '.join(report.twice[:10]))}")
    raise typer.Exit(1 if problems else 0)


def register(app: typer.Typer) -> None:
    manifest_app.command()(merge)
    app.add_typer(manifest_app, name="manifest")
