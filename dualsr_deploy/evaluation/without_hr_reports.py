"""Writing a :class:`~dualsr_deploy.evaluation.without_hr.ConsistencyReport`: JSON (complete), CSV (a row per scene,
method and operator), Markdown, and one self-contained HTML page with the per-band curves and the disagreement
maps, each written atomically (as the HR reports are)."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.evaluation.reports import csv_cell, md_text
from dualsr_deploy.evaluation.without_hr import ConsistencyReport, SceneConsistency
from dualsr_deploy.infer.consistency import OPERATORS

COLUMNS = ("psnr_db", "mae", "sam_deg", "sam_p99_deg", "worst_band")
TITLE = "Consistency without ground truth"


def write_consistency_reports(report: ConsistencyReport, out_dir: Path, *, figures: bool = True) -> dict[str, Path]:
    """``report.{json,csv,md,html}`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"report.{kind}" for kind in ("json", "csv", "md", "html")}
    texts = {
        "json": json.dumps(report.to_dict(), indent=1, default=_number) + "\n",
        "csv": _csv(report),
        "md": _markdown(report),
        "html": _html(report, figures),
    }
    for kind, path in paths.items():
        with atomic_output(path) as tmp:
            tmp.write_text(texts[kind])
    return paths


def _number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _rows(report: ConsistencyReport) -> list[list[str]]:
    rows = []
    for scene in report.scenes:
        for method, figures in scene.figures.items():
            for op in OPERATORS:
                f = figures[op]
                shift = figures["shift_lr_pixels"]
                rows.append(
                    [
                        scene.name,
                        method,
                        op,
                        f"{f['psnr_db']:.4f}",
                        f"{f['mae']:.6g}",
                        f"{f['sam_deg']:.4f}",
                        f"{f['sam_p99_deg']:.4f}",
                        str(f["worst_band"]),
                        f"{figures['added_detail']:.6f}",
                        f"{shift[0]:+.3f}",
                        f"{shift[1]:+.3f}",
                        figures.get("suspect") or "",
                    ]
                )
    return rows


HEADER = [
    "scene",
    "method",
    "operator",
    "psnr_db",
    "mae",
    "sam_deg",
    "sam_p99_deg",
    "worst_band",
    "added_detail",
    "shift_rows",
    "shift_cols",
    "suspect",
]


def _csv(report: ConsistencyReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for row in _rows(report):
        writer.writerow([csv_cell(cell) for cell in row])
    return buffer.getvalue()


def _intro(report: ConsistencyReport) -> str:
    return (
        f"×{report.scale}, {len(report.scenes)} scene(s); each output brought back to its input's grid (block mean "
        "of each s×s block: area; MATLAB bicubic imresize: bicubic) and compared with its input on valid pixels of "
        "good bands (PSNR against the input's valid range, MAE in the product's units, spectral angle), beside the "
        "bicubic interpolation of the input as a baseline; the shift is phase correlation's, in LR pixels."
    )


def _markdown(report: ConsistencyReport) -> str:
    lines = [f"# {TITLE}", "", md_text(_intro(report)), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in _rows(report)]
    if report.suspects:
        lines += ["", "## Suspect", ""] + [f"- {md_text(s)}, {md_text(m)}: {md_text(r)}" for s, m, r in report.suspects]
    if report.failed:
        lines += ["", "## Failed", ""] + [f"- {md_text(n)}: {md_text(e)}" for n, e in report.failed]
    return "\n".join(lines) + "\n"


def _html(report: ConsistencyReport, figures: bool) -> str:
    from dualsr_deploy.evaluation.reports import _STYLE, _img

    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{TITLE} ×{report.scale}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{TITLE}, ×{report.scale}</h1><p class='meta'>{esc(_intro(report))} {report.seconds:.1f} s.</p>",
        "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in HEADER) + "</tr>",
    ]
    parts += ["<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in _rows(report)]
    parts.append("</table>")
    if report.failed:
        parts.append(
            "<h2>Failed</h2><ul>" + "".join(f"<li>{esc(n)}: {esc(e)}</li>" for n, e in report.failed) + "</ul>"
        )
    if figures:
        for scene in report.scenes:
            parts.append(f"<h2>{esc(scene.name)} ({'×'.join(map(str, scene.shape))})</h2>")
            curves, maps = consistency_figures(scene)
            from dualsr_deploy.evaluation.figures import overlapping

            same = overlapping({m: np.asarray(v, dtype=float) for m, v in scene.bands.items()}, 0.01)
            said = "; ".join(f"{a} and {b} overlap (within 0.01 dB in every band)" for a, b in same)
            parts.append(
                "<p class='meta'>Per band, each method's block mean against the input (PSNR, dB)"
                + (f"; {esc(said)}" if said else "")
                + "</p>"
            )
            parts.append(_img(curves, f"{scene.name}: per-band consistency"))
            parts.append(
                "<p class='meta'>Where each method disagrees with its input: spectral angle (°) and mean absolute "
                "difference (the product's units) per LR pixel, block mean; one colour scale per row</p>"
            )
            parts.append(_img(maps, f"{scene.name}: disagreement maps"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def consistency_figures(scene: SceneConsistency) -> tuple[bytes, bytes]:
    """The per-band curves and the disagreement maps of a scene, as PNG."""
    from dualsr_deploy.evaluation.figures import png_bytes, pyplot

    plt = pyplot()
    good = scene.good_bands
    wavelengths = scene.wavelengths
    x = [wavelengths[i] for i in good] if wavelengths and len(wavelengths) == scene.shape[0] else good
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for method, values in scene.bands.items():
        ax.plot(x, [v if np.isfinite(v) else np.nan for v in values], label=method, linewidth=1.2)
    ax.set_xlabel("wavelength (nm)" if x is not good else "band")
    ax.set_ylabel("PSNR back to LR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    curves = png_bytes(fig)
    methods = list(scene.maps)
    fig, axes = plt.subplots(2, len(methods), figsize=(3.2 * len(methods), 6), squeeze=False)
    for row, key, label in ((0, "sam_deg", "spectral angle (°)"), (1, "l1", "mean |difference|")):
        stack = [scene.maps[m][key] for m in methods]
        finite = np.concatenate([a[np.isfinite(a)] for a in stack]) if stack else np.zeros(1)
        top = float(np.percentile(finite, 99)) if finite.size else 1.0
        for column, (method, picture) in enumerate(zip(methods, stack, strict=True)):
            ax = axes[row][column]
            image = ax.imshow(picture, cmap="magma", vmin=0, vmax=top or 1.0)
            ax.set_title(f"{method}: {label}", fontsize=8)
            ax.axis("off")
        fig.colorbar(image, ax=list(axes[row]), shrink=0.8)
    maps = png_bytes(fig)
    return curves, maps


__all__ = ["consistency_figures", "write_consistency_reports"]
