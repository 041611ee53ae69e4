"""Quantisation-aware fine-tuning against the quality rule (issue #45): how far does ``dualsr export --int8
--qat-steps N`` move INT8 towards passing, step by step?

The same code as the export (:mod:`dualsr_deploy.export.int8`, :mod:`dualsr_deploy.export.qat`): ranges calibrated
on the store's training patches, then fine-tuning through the INT8 rounding. Every ``--every`` steps the held-out
scenes are scored against HR with the model still rounding as its graph will (torch; the graph's arithmetic up to
the order of float operations) and compared with the original weights' fp32 result, one JSON line each. At the end,
``--final`` checks the graph itself in ONNX Runtime and OpenVINO, as the export does.

    python benchmarks/int8_qat.py --store air2_x2.h5 --weights dualsr_deploy/weights/airborne/coarsr_x2.safetensors \
        --steps 300 --every 50 --out /tmp/qat --final
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

RULE_DB, RULE_DEG = 0.02, 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--sam-weight", type=float, default=None, help="default: the export's (export/qat.py)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="folder: log.jsonl")
    parser.add_argument("--final", action="store_true", help="check the final graph in ONNX Runtime and OpenVINO")
    args = parser.parse_args()

    from dualsr_deploy.archs.fold import fold_coarsr
    from dualsr_deploy.checkpoint import read_checkpoint
    from dualsr_deploy.data.patches import PatchDataset
    from dualsr_deploy.export.int8 import calibration_tiles, check_rule, input_ranges
    from dualsr_deploy.export.qat import SAM_WEIGHT, fine_tune, int8_rounding
    from dualsr_deploy.ops.imresize import imresize
    from dualsr_deploy.train.validate import score_cube

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "log.jsonl").open("a", encoding="utf-8")
    sam_weight = SAM_WEIGHT if args.sam_weight is None else args.sam_weight

    def say(**row: Any) -> None:
        row = {"lr": args.learning_rate, "sam_weight": sam_weight, **row}
        print(json.dumps(row), flush=True)
        log.write(json.dumps(row) + "\n")
        log.flush()

    model, info = read_checkpoint(args.weights)
    core = fold_coarsr(model, info.neighbour_rule).eval()
    dataset = PatchDataset(args.store, augmentation=False)
    scenes = list(dataset.validation())
    dataset.close()
    ranges = input_ranges(core, calibration_tiles(args.store))

    def scores(net: torch.nn.Module) -> dict[str, dict[str, float]]:
        with torch.no_grad():
            return {
                name: score_cube(
                    (net(lr[None].float())[0] + imresize(lr.double(), info.scale).float()).clamp(0, 1), hr.float()
                )
                for name, lr, hr in scenes
            }

    reference = scores(core)

    def verdict(step: int, net: torch.nn.Module) -> None:
        got = scores(net)
        for name, ref in reference.items():
            d_psnr, d_sam = got[name]["psnr"] - ref["psnr"], got[name]["sam"] - ref["sam"]
            say(
                step=step,
                scene=name,
                d_psnr=round(d_psnr, 4),
                d_sam=round(d_sam, 4),
                passes=bool(d_psnr >= -RULE_DB and d_sam <= RULE_DEG),
            )

    with int8_rounding(core, ranges):
        verdict(0, core)
    tuned = fine_tune(
        core,
        ranges,
        args.store,
        args.steps,
        learning_rate=args.learning_rate,
        sam_weight=sam_weight,
        say=lambda line: print(line, flush=True),
        every=args.every,
        check=verdict,
    )
    if args.final:
        check = check_rule(core, ranges, scenes, quantised=tuned, threads=args.threads)
        for record in check.records:
            for s in record.scenes:
                say(
                    step=args.steps,
                    runtime=record.backend,
                    scene=s.scene,
                    d_psnr=round(s.d_psnr, 4),
                    d_sam=round(s.d_sam, 4),
                    passes=s.passes(),
                )


if __name__ == "__main__":
    main()
