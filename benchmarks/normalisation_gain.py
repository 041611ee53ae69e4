"""The gain of the dual stage over MATLAB bicubic on the airborne scenes, with integer sensor data divided by its
dtype's maximum (the rule before) and by the scene's own maximum over valid pixels (the ``auto`` rule now).

    python benchmarks/normalisation_gain.py [--scale 4] [SCENE …]   # default: ../shared/data/remote{,_train}/*.mat

LR = MATLAB bicubic ×1/s of the normalised HR scene (cropped to a multiple of s); both PSNRs are computed in the
same normalised units, so their difference (the gain) does not depend on the peak.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dualsr_deploy import metrics
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.errors import DualSRError
from dualsr_deploy.infer import InferOptions, Upscaler
from dualsr_deploy.ops.imresize import imresize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def gain(upscaler: Upscaler, cube: torch.Tensor, scale: int) -> tuple[float, float]:
    _, h, w = cube.shape
    hr = cube[:, : h - h % scale, : w - w % scale].double()
    lr = imresize(hr, 1 / scale).clamp(0, 1).float()
    sr = upscaler(lr).fine
    assert sr is not None
    bicubic = imresize(lr.double(), scale).clamp(0, 1)
    base = metrics.psnr(bicubic, hr)
    return base, metrics.psnr(sr.double().clamp(0, 1), hr) - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenes", nargs="*", type=Path)
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()
    scenes = args.scenes or sorted((SHARED / "remote").glob("*.mat")) + sorted((SHARED / "remote_train").glob("*.mat"))
    upscaler = Upscaler(InferOptions(scale=args.scale, stage="dual"))
    print("| scene | dtype | gain, ÷ dtype max (before) | gain, ÷ scene max (auto now) |")
    print("|---|---|---|---|")
    for path in scenes:
        try:
            now = read_scene(path)
            if now.cube.shape[0] < 5:
                raise DualSRError(f"{now.cube.shape[0]} bands (a wrong array picked; see the sensor-data issues)")
            before = read_scene(path, normalise=Normalisation("dtype")) if now.meta.dtype[0] in "ui" else now
            _, gain_before = gain(upscaler, torch.from_numpy(before.cube), args.scale)
            _, gain_now = gain(upscaler, torch.from_numpy(now.cube), args.scale)
            rule = f"{now.meta.dtype} ({now.meta.normalisation} {now.meta.scale_factor:g})"
            print(f"| {path.parent.name}/{path.stem} | {rule} | {gain_before:+.2f} dB | {gain_now:+.2f} dB |")
        except (DualSRError, ValueError) as exc:
            print(f"| {path.parent.name}/{path.stem} | – | not read: {exc} | |")
    upscaler.close()


if __name__ == "__main__":
    main()
