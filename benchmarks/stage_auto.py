"""What ``--stage auto`` takes where no ×s/2 model exists: coarse or backproject, on the held-out scenes of both
shipped families (the CAVE scenes the cave weights held out; the two airborne crops the airborne weights held
out), at ×2 with bicubic degradation, scored by ``dualsr eval``'s code.

    python benchmarks/stage_auto.py            # needs ../shared/data (CAVE and remote crops)

Prints one row per family and scene (PSNR dB / SAM °) and each family's mean gain of backproject over coarse.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from dualsr_deploy.evaluation import EvalOptions, evaluate_archive
from dualsr_deploy.infer import BackendSpec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = {
    "cave": [SHARED / "cave" / f"{name}_ms" for name in ("face", "fake_and_real_beers", "feathers")],
    "airborne": [SHARED / "remote" / f"{name}.mat" for name in ("san_diego_crop", "pavia_centre_crop")],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2)
    args = parser.parse_args()
    print(f"| family | scene | bicubic | coarse | backproject | ×{args.scale} |")
    print("|---|---|---|---|---|---|")
    for family, scenes in HELD_OUT.items():
        with tempfile.TemporaryDirectory() as folder:
            for scene in scenes:  # copied (links out of the archive folder are not followed)
                (shutil.copytree if scene.is_dir() else shutil.copy)(scene, Path(folder) / scene.name)
            spec = BackendSpec.for_run("torch", scale=args.scale, stage="backproject", weights=family)
            options = EvalOptions(scale=args.scale, backends=(spec,), stage="backproject", figures=False)
            report = evaluate_archive(folder, options)
        for result in report.scenes:
            cells = [f"{result.scores[m]['psnr']:.3f} / {result.scores[m]['sam']:.3f}" for m in report.methods]
            print(f"| {family} | {result.name} | {' | '.join(cells)} | |")
        means = {m: report.mean(m) for m in report.methods}
        gain = means["backproject"]["psnr"] - means["coarse"]["psnr"]
        sam = means["backproject"]["sam"] - means["coarse"]["sam"]
        cells = [f"{means[m]['psnr']:.3f} / {means[m]['sam']:.3f}" for m in report.methods]
        print(f"| {family} | **mean** | {' | '.join(cells)} | backproject − coarse: {gain:+.3f} dB, {sam:+.3f}° |")


if __name__ == "__main__":
    main()
