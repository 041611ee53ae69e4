"""Model cards: what a set of weights is, what it was trained on, how, and what it scores on held-out scenes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from dualsr_deploy.archs.coarsr import CoarSR
from dualsr_deploy.archs.neighbours import NeighbourRule
from dualsr_deploy.checkpoint import CheckpointInfo, read_checkpoint
from dualsr_deploy.data.patches import PatchDataset
from dualsr_deploy.errors import TrainError
from dualsr_deploy.train.config import TrainConfig
from dualsr_deploy.train.validate import VALIDATION_METRICS, Validation, score_cube, validate


def validate_weights(
    weights: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    device: str | None = None,
    half: str | os.PathLike[str] | None = None,
) -> tuple[CheckpointInfo, Validation, dict[str, dict[str, float]] | None]:
    """Score ``weights`` on the held-out scenes of the patch ``store`` (model and bicubic, per scene), and with the
    ×s/2 weights ``half`` the dual stage too (DualSR's fine result, per scene; else None)."""
    model, info = read_checkpoint(weights)
    dataset = PatchDataset(Path(store), augmentation=False)
    if dataset.info.scale != info.scale:
        raise TrainError(f"{store}: a ×{dataset.info.scale} patch store, {weights} is a ×{info.scale} model")
    guide = None
    if half is not None:
        guide, guide_info = read_checkpoint(half)
        if guide_info.scale * 2 != info.scale:
            raise TrainError(f"{half}: a ×{guide_info.scale} model, the dual stage of ×{info.scale} needs ×s/2")
    where = torch.device(device or "cpu")
    try:
        result = validate(model, dataset.validation(), rule=info.neighbour_rule, device=where)
        fine = None
        if guide is not None:
            rules = (info.neighbour_rule, guide_info.neighbour_rule)
            fine = {name: dual_scores(model, guide, lr, hr, where, rules) for name, lr, hr in dataset.validation()}
    finally:
        dataset.close()
    return info, result, fine


@torch.no_grad()
def dual_scores(
    model: CoarSR,
    half: CoarSR,
    lr: torch.Tensor,
    hr: torch.Tensor,
    device: torch.device,
    rules: tuple[NeighbourRule, NeighbourRule] = ("paper", "paper"),
) -> dict[str, float]:
    """DualSR's fine result (CoarSR ×s and ×s/2, then the SAM-weighted back-projection) scored against ``hr``."""
    from dualsr_deploy.archs.coarsr import per_band_loop
    from dualsr_deploy.ops.fine import finish_stage

    model.eval(), half.eval()
    cube = lr.to(device)
    high = per_band_loop(model.to(device), cube[None], rules[0])[0]
    low = per_band_loop(half.to(device), cube[None], rules[1])[0]
    fine, _weight = finish_stage("dual", True, high, low, cube)
    return score_cube(fine.float().cpu(), hr)


def _row(label: str, scores: dict[str, float]) -> str:
    return f"| {label} | {scores['psnr']:.3f} | {scores['ssim']:.4f} | {scores['sam']:.3f} |"


def _lineage(init: dict[str, Any]) -> str:
    """The ``init`` record's chain: the starting weights, then what they had started from, and so on."""
    chain = [str(init.get("weights", "?"))]
    while isinstance(init.get("its_init"), dict):
        init = init["its_init"]
        chain.append(f"itself fine-tuned from {init.get('weights', '?')}")
    return ", ".join(chain)


def model_card(
    info: CheckpointInfo,
    validation: Validation | None = None,
    *,
    title: str | None = None,
    fine: dict[str, dict[str, float]] | None = None,
    half: str | None = None,
) -> str:
    """A Markdown card from the checkpoint's provenance, and per-scene scores when ``validation`` is given (and
    DualSR's, ``fine``, with the ×s/2 weights named ``half``)."""
    prov = dict(info.provenance)
    lines = [f"# {title or Path(info.path).name}", ""]
    lines += [
        f"CoarSR ×{info.scale}, n_feats {info.n_feats}, n_blocks {info.n_blocks}, {info.parameters:,} parameters, "
        f"neighbour rule `{info.neighbour_rule}`, trained on {info.bands} bands. SHA-256 `{info.sha256[:16]}…`.",
        "",
    ]
    if "recipe" in prov:
        recipe = TrainConfig.from_json(prov["recipe"])
        store = prov.get("store", {})
        lines += [
            "## Training",
            "",
            f"- Data: patch store `{Path(str(store.get('path', '?'))).name}` ({store.get('patches', '?')} patches × 8 "
            f"augmentations); training scenes: {', '.join(prov.get('train_scenes', []))}.",
            f"- Held out for validation: {', '.join(prov.get('validation_scenes', []))}.",
            f"- Recipe: L1, Adam lr {recipe.learning_rate:g} β {recipe.betas}, halved every {recipe.lr_step_epochs} "
            f"epochs, batch {recipe.batch_size}, "
            + ("band-by-band updates" if recipe.schedule == "band" else "band-parallel updates (one per batch)")
            + f", seed {recipe.seed}, precision {recipe.precision}"
            + (f" ({prov['computed_in']})" if "computed_in" in prov else "")
            + (", BatchNorm statistics frozen at the starting weights'" if recipe.batch_norm == "frozen" else "")
            + (f", weights averaged (EMA {recipe.ema:g}): the average is validated and written" if recipe.ema else "")
            + ".",
            *([f"- Started from: {_lineage(prov['init'])}."] if isinstance(prov.get("init"), dict) else []),
            f"- Length: {prov.get('steps', '?')} steps ({prov.get('epochs', '?')} full epochs) on "
            f"{prov.get('device', '?')} × {prov.get('processes', 1)} process(es)"
            + (f", {float(prov['seconds']) / 60:.0f} min." if "seconds" in prov else "."),
            "",
        ]
    lines += ["## Validation (held-out scenes, SR clipped to [0, 1])", ""]
    lines += ["| | PSNR (dB) | SSIM | SAM (°) |", "|---|---|---|---|"]
    if validation is not None:
        for scene in validation.scenes:
            lines.append(_row(f"{scene.name}: CoarSR", scene.model))
            if fine is not None:
                lines.append(_row(f"{scene.name}: DualSR", fine[scene.name]))
            lines.append(_row(f"{scene.name}: bicubic", scene.bicubic))
        summary = validation.summary()
    else:
        summary = dict(prov.get("validation", {}))
    if summary:
        lines.append(_row("**mean: CoarSR**", {m: summary[m] for m in VALIDATION_METRICS}))
        fine_mean = None
        if fine:
            fine_mean = {m: sum(scores[m] for scores in fine.values()) / len(fine) for m in VALIDATION_METRICS}
            lines.append(_row("**mean: DualSR**", fine_mean))
        lines.append(_row("**mean: bicubic**", {m: summary[f"bicubic_{m}"] for m in VALIDATION_METRICS}))
        lines += ["", f"Gain over bicubic: CoarSR {summary['psnr'] - summary['bicubic_psnr']:+.3f} dB PSNR"]
        if fine_mean is not None:
            lines[-1] += f", DualSR {fine_mean['psnr'] - summary['bicubic_psnr']:+.3f} dB (×s/2 guide: `{half}`)"
        lines[-1] += "."
    else:
        lines.append("| (no validation recorded) | | | |")
    lines += [
        "",
        "Bicubic is MATLAB's `imresize` of the LR cube; LR is the MATLAB bicubic degradation of the HR scene.",
    ]
    lines += [
        "",
        "<details><summary>provenance</summary>",
        "",
        "```json",
        json.dumps(prov, indent=2),
        "```",
        "</details>",
    ]
    return "\n".join(lines) + "\n"
