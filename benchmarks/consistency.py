"""How consistent bicubic, the coarse stage and the fine stage are with their input, without ground truth, on real
scenes: ``dualsr infer --scale 2`` with ``--stage coarse --reference bicubic`` and ``--stage backproject``, the
figures of each record, and those of the bicubic reference computed the same way.

    python benchmarks/consistency.py --work /tmp/consistency [--shared ../shared] [--out docs/results/consistency.md]

Prints a Markdown table (and writes it with ``--out``): per scene and operator (block mean, MATLAB bicubic), the
PSNR against the input's valid range and the mean spectral angle of each method brought back to the LR grid.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dualsr_deploy.data.formats import open_scene
from dualsr_deploy.infer.consistency import scene_consistency

REMOTE = ("pavia_centre_crop.mat", "muufl_crop.mat", "san_diego_crop.mat", "abu_airport_1.mat")


def infer(source: Path, out: Path, *extra: str) -> list[dict[str, object]]:
    if not (out / "manifest.jsonl").is_file():
        command = [sys.executable, "-m", "dualsr_deploy", "infer", str(source), "-o", str(out), "--scale", "2", *extra]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def bicubic_figures(record: dict[str, object], out: Path) -> dict[str, object] | None:
    """The bicubic reference's figures, computed as infer computes an output's (normalised by the input's factor)."""
    output = out / str(record["output"])
    reference = output.with_name(output.stem + "_bicubic" + output.suffix)
    with open_scene(str(record["input"])) as reader:
        lr = reader.load()
    with open_scene(reference) as reader:
        up = (reader.physical(reader.read_raw()) / lr.meta.scale_factor).astype(np.float32)
    return scene_consistency(lr.cube, lr.valid, lr.good, np.nan_to_num(up), 2, lr.meta.scale_factor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = args.shared / "data"
    sources = [data / "products"] + [data / "remote" / name for name in REMOTE if (data / "remote" / name).is_file()]
    rows = []
    for source in sources:
        tag = source.stem
        coarse = infer(source, args.work / tag / "coarse", "--stage", "coarse", "--reference", "bicubic")
        fine = {str(r["name"]): r for r in infer(source, args.work / tag / "fine", "--stage", "backproject")}
        for record in coarse:
            if record["status"] != "ok":
                continue
            name = str(record["name"])
            figures = {
                "bicubic": bicubic_figures(record, args.work / tag / "coarse"),
                "coarse": record["consistency"],
                "fine": fine[name]["consistency"],
            }
            for op in ("area", "bicubic"):
                cells = [f"{f[op]['psnr_db']:.2f} / {f[op]['sam_deg']:.3f}" for f in figures.values()]  # type: ignore[index]
                best = max(figures, key=lambda k: figures[k][op]["psnr_db"])  # type: ignore[index]
                rows.append(f"| {name if source.is_dir() else tag} | {op} | " + " | ".join(cells) + f" | {best} |")
    table = [
        "| scene | operator back to LR | bicubic (dB / °) | coarse (dB / °) | fine (dB / °) | most consistent |",
        "|---|---|---:|---:|---:|---|",
        *rows,
    ]
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
