"""How the fill of no-data pixels affects the valid pixels next to them: nearest-valid fill (what ``dualsr infer``
does) against zero-fill (what clipping a −9999 fill to 0 amounted to before) and against bicubic.

A real scene is the ground truth (HR); its LR is MATLAB bicubic ×1/s; the LR's left ``--columns`` columns are
declared no-data (a swath edge). Each method's SR is scored by PSNR over the valid HR pixels within the network's
receptive field of the edge (where a fill can reach), and over all valid pixels.

    python benchmarks/nodata_fill.py                             # ../shared/data/remote_train/abu-beach-1.mat, ×2
    python benchmarks/nodata_fill.py --scene ../shared/data/remote/pavia_centre_crop.mat --columns 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dualsr_deploy.data import read_scene
from dualsr_deploy.data.validity import fill_invalid, nearest_up
from dualsr_deploy.infer import InferOptions, Upscaler
from dualsr_deploy.infer.tiling import receptive_radius
from dualsr_deploy.ops.imresize import imresize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def psnr(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float:
    error = float(np.mean((np.clip(sr, 0, 1)[:, mask] - hr[:, mask]) ** 2))
    return 10 * np.log10(1.0 / error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", type=Path, default=SHARED / "remote_train" / "abu-beach-1.mat")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--columns", type=int, default=12, help="LR columns declared no-data, from the left")
    args = parser.parse_args()
    scale = args.scale
    hr_scene = read_scene(args.scene)
    c, h, w = hr_scene.cube.shape
    hr = hr_scene.cube[:, : h - h % scale, : w - w % scale]
    lr = imresize(torch.from_numpy(hr).double(), 1 / scale).clamp(0, 1).float().numpy()
    valid = np.ones(lr.shape[1:], dtype=bool)
    valid[:, : args.columns] = False
    upscaler = Upscaler(InferOptions(scale=scale, stage="coarse"))
    radius = receptive_radius(upscaler.pool.model(scale).config)
    hr_valid = nearest_up(valid, scale)
    near = np.zeros_like(hr_valid)
    near[:, scale * args.columns : scale * (args.columns + radius)] = True
    near &= hr_valid
    inputs = {
        "nearest-valid fill (dualsr)": fill_invalid(lr, valid),
        "zero fill": np.where(valid, lr, 0).astype(np.float32),
    }
    print(
        f"{args.scene.name}: HR {c}×{hr.shape[1]}×{hr.shape[2]}, ×{scale}, LR columns 0–{args.columns - 1} no-data, "
        f"receptive radius {radius} LR px ({scale * radius} HR px)"
    )
    print(f"{'method':32} {'PSNR near the edge':>20} {'PSNR all valid':>16}")
    for name, cube in inputs.items():
        sr = upscaler(torch.from_numpy(cube)).coarse.numpy()
        print(f"{name:32} {psnr(sr, hr, near):20.3f} {psnr(sr, hr, hr_valid):16.3f}")
    bicubic = imresize(torch.from_numpy(fill_invalid(lr, valid)).double(), scale).float().numpy()
    print(f"{'bicubic (of the filled LR)':32} {psnr(bicubic, hr, near):20.3f} {psnr(bicubic, hr, hr_valid):16.3f}")
    upscaler.close()


if __name__ == "__main__":
    main()
