"""The margins the ``suspect`` rule rests on: on the product samples at ×2, how far each true output, and the same
output broken the ways that happen (shifted by one output pixel, another scene's, content at ×3, values ×10), goes
back to its input under the block mean, against bicubic interpolation of that input.

    python benchmarks/suspect_margins.py --work /tmp/margins [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.infer.consistency import scene_consistency
from dualsr_deploy.ops.imresize import imresize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    out = args.work / "sr"
    if not (out / "manifest.jsonl").is_file():
        products = args.shared / "data" / "products"
        command = [sys.executable, "-m", "dualsr_deploy", "infer", str(products), "-o", str(out), "--scale", "2"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    scenes = []
    for line in (out / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        with open_scene(record["input"]) as reader:
            lr = reader.load()
        with open_scene(out / record["output"]) as reader:
            sr = (reader.physical(reader.read_raw()) / lr.meta.scale_factor).astype(np.float32)
        scenes.append((record["name"], lr, np.nan_to_num(sr)))

    def area(lr: object, sr: np.ndarray) -> float:
        figures = scene_consistency(lr.cube, lr.valid, lr.good, sr, 2, 1.0)  # type: ignore[attr-defined]
        assert figures is not None
        return float(figures["area"]["psnr_db"])

    print("| scene | bicubic | true | shifted 1 px | another scene | content ×3 | values ×10 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for index, (name, lr, sr) in enumerate(scenes):
        base = imresize(torch.from_numpy(lr.cube).double(), 2).clamp(0, 1).float().numpy()
        _c, h, w = sr.shape
        other = scenes[(index + 1) % len(scenes)][2]
        foreign = area(lr, np.resize(other, sr.shape)) if other.shape[0] == sr.shape[0] else float("nan")
        bigger = imresize(torch.from_numpy(lr.cube).double(), 3).float().numpy()[:, :h, :w]
        cells = [area(lr, base), area(lr, sr), area(lr, np.roll(sr, 1, axis=2)), foreign, area(lr, bigger)]
        cells.append(area(lr, sr * 10))
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")


if __name__ == "__main__":
    main()
