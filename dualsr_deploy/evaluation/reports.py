"""Writing an :class:`EvalReport`: JSON (complete), CSV, Markdown, and one self-contained HTML page with figures.

Every file is written atomically. The HTML page embeds its figures as PNG data URIs, so it can be mailed or
archived alone; a small script marks ``<body data-images-loaded="N">`` once the page has loaded, which is what
the browser test reads.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

from dualsr_deploy.atomic import atomic_output
from dualsr_deploy.evaluation.core import EvalOptions, EvalReport

METRICS = ("psnr", "mpsnr", "ssim", "sam", "ergas", "rmse", "cc")
HEADERS = {
    "psnr": "PSNR (dB)",
    "mpsnr": "MPSNR",
    "ssim": "SSIM",
    "sam": "SAM (°)",
    "ergas": "ERGAS",
    "rmse": "RMSE",
    "cc": "CC",
}


def _fmt(key: str, value: float) -> str:
    return f"{value:.4f}" if key in ("ssim", "cc", "rmse") else f"{value:.3f}"


def write_reports(
    report: EvalReport,
    out_dir: str | os.PathLike[str],
    options: EvalOptions,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Path]:
    """``report.json``, ``report.csv``, ``report.md`` and ``report.html`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"report.{kind}" for kind in ("json", "csv", "md", "html")}
    with atomic_output(paths["json"]) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    with atomic_output(paths["csv"]) as tmp:
        tmp.write_text(_csv(report))
    with atomic_output(paths["md"]) as tmp:
        tmp.write_text(_markdown(report))
    figures: dict[str, dict[str, bytes]] = {}
    if options.figures:
        from dualsr_deploy.evaluation.figures import scene_figures

        methods = [m for m in report.methods]
        for index, scene in enumerate(report.scenes):
            if progress is not None:
                progress(scene.name, index, len(report.scenes))
            figures[scene.name] = scene_figures(scene, methods, bands=options.bands_shown, pixels=options.pixels)
            if scene.checked is not None:  # against the LR, as without HR: per-band curves and disagreement maps
                from dualsr_deploy.evaluation.without_hr_reports import consistency_figures

                curves, maps = consistency_figures(scene.checked)
                figures[scene.name] |= {"consistency_curves": curves, "consistency_maps": maps}
    with atomic_output(paths["html"]) as tmp:
        tmp.write_text(_html(report, figures))
    return paths


def csv_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return is a formula to Excel and LibreOffice (CSV injection), so it gets a leading apostrophe (OWASP's advice)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def md_text(text: str | None) -> str:
    """Text for a Markdown table cell or list item: HTML and Markdown's own characters escaped, one line."""
    text = html.escape(" ".join(str(text).splitlines()), quote=False)
    for char in "\\`*_[]|<>#!":
        text = text.replace(char, "\\" + char) if char not in "<>" else text
    return text


def gains(report: EvalReport) -> str:
    """``gain over bicubic: coarse +1.132 dB PSNR, -0.21° SAM; fine …`` (empty without a bicubic row)."""
    base = report.mean("bicubic")
    if not base:
        return ""
    parts = []
    for method in report.methods:
        mean = report.mean(method)
        if method != "bicubic" and mean:
            parts.append(f"{method} {mean['psnr'] - base['psnr']:+.3f} dB PSNR, {mean['sam'] - base['sam']:+.3f}° SAM")
    return "gain over bicubic (means): " + "; ".join(parts) if parts else ""


def _csv(report: EvalReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["scene", "method", *METRICS])
    for scene in report.scenes:
        for method, scores in scene.scores.items():
            writer.writerow([csv_cell(scene.name), csv_cell(method), *(f"{scores[k]:.6f}" for k in METRICS)])
    for method in report.methods:
        mean = report.mean(method)
        if mean:
            writer.writerow(["(mean)", csv_cell(method), *(f"{mean[k]:.6f}" for k in METRICS)])
    return buffer.getvalue()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _markdown(report: EvalReport) -> str:
    lines = [
        f"# DualSR evaluation, ×{report.scale}",
        "",
        f"{_count(len(report.scenes), 'scene')}; {report.protocol}. Scores: `dualsr_deploy.metrics.evaluate` on "
        "clipped results.",
        "",
        "| method | " + " | ".join(HEADERS[k] for k in METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for method in report.methods:
        mean = report.mean(method)
        if mean:
            lines.append(f"| {method} (mean) | " + " | ".join(_fmt(k, mean[k]) for k in METRICS) + " |")
    if report.mixed:
        for method in report.methods:
            mean = report.mean(method, held_out_only=True)
            if mean:
                values = " | ".join(_fmt(k, mean[k]) for k in METRICS)
                lines.append(f"| {method} (mean over scenes not seen in training) | {values} |")
    if gains(report):
        lines[4:4] = [md_text(gains(report)) + ".", ""]
    for name, row in report.paper_rows.items():
        cells = [_fmt(k, row[k]) if k in row else "" for k in METRICS]
        lines.append(
            f"| *paper, CAVE ×{report.scale}: {name} (its test split, reference only)* | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "## Per scene",
        "",
        "| scene | method | PSNR (dB) | SSIM | SAM (°) | ERGAS |",
        "|---|---|---|---|---|---|",
    ]
    for scene in report.scenes:
        for method, s in scene.scores.items():
            mark = " †" if scene.in_training else ""
            values = f"{s['psnr']:.3f} | {s['ssim']:.4f} | {s['sam']:.3f} | {s['ergas']:.3f}"
            lines.append(f"| {md_text(scene.name)}{mark} | {md_text(method)} | {values} |")
    if any(scene.in_training for scene in report.scenes):
        lines += ["", "† seen in training by the weights used: its scores flatter the method."]
    chosen = [scene for scene in report.scenes if scene.weights]
    if chosen:
        lines += ["", "## Weights (--weights auto)", ""] + [
            f"- {md_text(scene.name)}: {md_text(scene.weights)}" for scene in chosen
        ]
    masked = [scene for scene in report.scenes if scene.quality is not None]
    if masked:
        lines += ["", "## Scenes with no-data", ""]
        lines += [
            f"- {md_text(scene.name)}: "
            + md_text("; ".join(n for n in scene.notes if n.startswith(("output pixels", "scored"))))
            for scene in masked
        ]
    consistency = _consistency_rows(report)
    if consistency:
        lines += ["", "## Consistency with the LR (no HR needed)", "", md_text(CONSISTENCY_NOTE), ""]
        lines += ["| " + " | ".join(CONSISTENCY_HEADER) + " |", "|" + "---|" * len(CONSISTENCY_HEADER)]
        lines += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in consistency]
    if report.failed:
        lines += ["", "## Failed", ""] + [f"- {md_text(name)}: {md_text(error)}" for name, error in report.failed]
    return "\n".join(lines) + "\n"


CONSISTENCY_HEADER = ["scene", "method", "area PSNR (dB)", "area SAM (°)", "bicubic-operator PSNR (dB)", "suspect"]
CONSISTENCY_NOTE = (
    "Each result brought back to the LR grid (block mean of each s×s block: area; MATLAB bicubic) and compared with "
    "the LR it came from: what can be checked on real scenes that have no HR (dualsr eval --lr LR --sr SR)."
)


def _consistency_rows(report: EvalReport) -> list[list[str]]:
    rows = []
    for scene in report.scenes:
        for method, figures in scene.consistency.items():
            rows.append(
                [
                    scene.name,
                    method,
                    f"{figures['area']['psnr_db']:.2f}",
                    f"{figures['area']['sam_deg']:.3f}",
                    f"{figures['bicubic']['psnr_db']:.2f}",
                    figures.get("suspect") or "",
                ]
            )
    return rows


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}tr.paper td{color:#666;font-style:italic;background:#f6f6f6}
td.best{font-weight:bold}img{max-width:100%;display:block;margin:.5rem 0}.meta{color:#555;font-size:.85rem}
"""

_SCRIPT = """
window.addEventListener('load', () => {
  const loaded = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = String(loaded);
});
"""


def _html(report: EvalReport, figures: dict[str, dict[str, bytes]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{HEADERS[k]}</th>" for k in METRICS)
    means = {m: report.mean(m) for m in report.methods if report.mean(m)}
    best: dict[str, str] = {}
    for k in METRICS:
        if means:
            ranked = sorted(means, key=lambda m, k=k: means[m][k])  # type: ignore[misc]
            best[k] = ranked[-1] if k in ("psnr", "mpsnr", "ssim", "cc") else ranked[0]
    rows = []
    for method, mean in means.items():
        cells = "".join(
            f'<td class="{"best" if best.get(k) == method else ""}">{_fmt(k, mean[k])}</td>' for k in METRICS
        )
        rows.append(f"<tr><td>{esc(method)}</td>{cells}</tr>")
    if report.mixed:
        for method in report.methods:
            held = report.mean(method, held_out_only=True)
            if held:
                cells = "".join(f"<td>{_fmt(k, held[k])}</td>" for k in METRICS)
                rows.append(f"<tr><td>{esc(method)}, scenes not seen in training</td>{cells}</tr>")
    for name, ref in report.paper_rows.items():
        cells = "".join(f"<td>{_fmt(k, ref[k])}</td>" if k in ref else "<td></td>" for k in METRICS)
        rows.append(f'<tr class="paper"><td>paper, CAVE ×{report.scale}: {esc(name)} (reference)</td>{cells}</tr>')
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>DualSR evaluation ×{report.scale}</title><style>{_STYLE}</style>",
        f"<script>{_SCRIPT}</script></head><body>",
        f"<h1>DualSR evaluation, ×{report.scale}: {_count(len(report.scenes), 'scene')}</h1>",
        f"<p class='meta'>{esc(report.protocol)}. Scores are <code>dualsr_deploy.metrics.evaluate</code> of the "
        "clipped results against the HR cube. "
        + (
            "Rows in grey are the paper's CAVE results on its own test split, shown for orientation only. "
            if report.paper_rows
            else ""
        )
        + f"{report.seconds:.1f} s. "
        + esc(", ".join(f"{k} {v}" for k, v in report.versions.items()))
        + "</p>",
        "<h2>Mean over scenes</h2>",
        f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>",
        f"<p class='gain'>{esc(gains(report))}</p>" if gains(report) else "",
        "<h2>Per scene</h2><table><tr><th>scene</th><th>method</th><th>PSNR (dB)</th><th>SSIM</th><th>SAM (°)</th>"
        "<th>ERGAS</th></tr>",
    ]
    for scene in report.scenes:
        for method, s in scene.scores.items():
            mark = " †" if scene.in_training else ""
            parts.append(
                f"<tr><td>{esc(scene.name)}{mark}</td><td>{esc(method)}</td><td>{s['psnr']:.3f}</td><td>{s['ssim']:.4f}</td>"
                f"<td>{s['sam']:.3f}</td><td>{s['ergas']:.3f}</td></tr>"
            )
    parts.append("</table>")
    if any(scene.in_training for scene in report.scenes):
        parts.append(
            "<p class='meta'>† seen in training by the weights used (their provenance lists it): its scores flatter "
            "the method.</p>"
        )
    consistency = _consistency_rows(report)
    if consistency:
        parts.append(f"<h2>Consistency with the LR (no HR needed)</h2><p class='meta'>{esc(CONSISTENCY_NOTE)}</p>")
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in CONSISTENCY_HEADER) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in consistency]
        parts.append("</table>")
    if report.failed:
        parts.append("<h2>Failed</h2><ul>")
        parts += [f"<li>{esc(name)}: {esc(error)}</li>" for name, error in report.failed]
        parts.append("</ul>")
    keys = ("rgb", "errors", "bands", "spectra")
    for scene in report.scenes:
        if scene.name not in figures:
            continue
        parts.append(f"<h2 id='{esc(scene.name)}'>{esc(scene.name)} ({'×'.join(map(str, scene.shape))})</h2>")
        if scene.weights:
            parts.append(f"<p class='meta'>weights: {esc(scene.weights)}</p>")
        if scene.quality is not None:
            told = [n for n in scene.notes if n.startswith(("output pixels", "scored"))]
            parts.append(f"<p class='meta'>{esc('; '.join(told))}</p>")
        for key in keys:
            caption = esc(figures[scene.name][f"caption:{key}"].decode())
            parts.append(f"<p class='meta'>{caption}</p>{_img(figures[scene.name][key], f'{scene.name}: {caption}')}")
        for key, caption in (
            ("consistency_curves", "Against the LR (no HR needed): per band, each result's block mean (PSNR, dB)"),
            ("consistency_maps", "Where each result disagrees with the LR: spectral angle and mean |difference| per LR "
             "pixel (block mean)"),
        ):  # fmt: skip
            if key in figures[scene.name]:
                parts.append(
                    f"<p class='meta'>{caption}</p>{_img(figures[scene.name][key], f'{scene.name}: {caption}')}"
                )
    parts.append("</body></html>\n")
    return "\n".join(parts)
