"""What ``--precision auto`` may pick: the change of PSNR and SAM against fp32, per scene, for each reduced
precision of each CPU backend (the rule: under 0.01 dB and 0.01° on every scene, else fp32 stays).

    python benchmarks/precision_fidelity.py                       # 13 CAVE scenes (../shared) + 2 demo scenes
    python benchmarks/precision_fidelity.py --backend torch --scenes 3 --out fidelity/

×4, dual stage, shipped weights, the paper's LR protocol (MATLAB bicubic of the HR scene). Writes
``fidelity.md`` and ``fidelity.json`` under ``--out`` and prints the table: per backend × precision, the largest
|ΔPSNR| and |ΔSAM| over the scenes, and the verdict.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.evaluation.core import EvalOptions, evaluate_archive
from dualsr_deploy.infer.options import BackendSpec

SHARED_CAVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cave"
LIMITS = {"psnr": 0.01, "sam": 0.01}  # dB, degrees


def _deltas(hr: str, backend: str, precision: str, engines: Path, limit: int | None) -> dict[str, dict[str, float]]:
    """Per scene, (reduced − fp32) of the dual-stage PSNR and SAM for ``backend``."""
    specs = tuple(
        BackendSpec.for_run(backend, scale=4, stage="dual", device="cpu", precision=p, artefacts_dir=engines)
        for p in ("fp32", precision)
    )
    report = evaluate_archive(hr, EvalOptions(scale=4, backends=specs, stage="dual", figures=False, limit=limit))
    fp32, reduced = (f"fine [{spec.label}]" for spec in specs)
    return {
        scene.name: {
            "psnr": scene.scores[reduced]["psnr"] - scene.scores[fp32]["psnr"],
            "sam": scene.scores[reduced]["sam"] - scene.scores[fp32]["sam"],
            "psnr_fp32": scene.scores[fp32]["psnr"],
            "sam_fp32": scene.scores[fp32]["sam"],
        }
        for scene in report.scenes
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cave", type=Path, default=SHARED_CAVE)
    parser.add_argument("--scenes", type=int, default=None, help="only the first N CAVE scenes")
    parser.add_argument("--backend", action="append", help="torch and/or openvino (default: both)")
    parser.add_argument("--out", type=Path, default=Path("fidelity"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    backends = args.backend or ["torch", "openvino"]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        demo = Path(scratch) / "demo"
        for seed in range(2):  # the demo's scenes, as `dualsr demo` makes them
            write_scene(demo / f"example_{seed}.h5", synthesize(seed, size=256, bands=31))
        engines = Path(scratch) / "engines"
        for backend in backends:
            key = f"{backend} bf16"
            results[key] = {}
            if args.cave.is_dir():
                results[key] |= _deltas(str(args.cave), backend, "bf16", engines, args.scenes)
            results[key] |= _deltas(str(demo), backend, "bf16", engines, None)
            print(f"{key}: {len(results[key])} scenes", flush=True)
    lines = [
        "| backend, precision | scenes | max abs ΔPSNR (dB) | max abs ΔSAM (°) | mean ΔPSNR | mean ΔSAM | "
        "within 0.01 dB / 0.01° |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, scenes in results.items():
        dp = [v["psnr"] for v in scenes.values()]
        ds = [v["sam"] for v in scenes.values()]
        ok = max(map(abs, dp)) < LIMITS["psnr"] and max(map(abs, ds)) < LIMITS["sam"]
        lines.append(
            f"| {key} vs fp32 | {len(scenes)} | {max(map(abs, dp)):.5f} | {max(map(abs, ds)):.5f} | "
            f"{sum(dp) / len(dp):+.5f} | {sum(ds) / len(ds):+.5f} | {'yes' if ok else 'no: auto keeps fp32'} |"
        )
    lines += ["", "| scene | " + " | ".join(f"{k}: ΔPSNR / ΔSAM" for k in results) + " |"]
    lines.append("|---|" + "---|" * len(results))
    for name in next(iter(results.values())):
        cells = [f"{r[name]['psnr']:+.5f} / {r[name]['sam']:+.5f}" for r in results.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (args.out / "fidelity.md").write_text(text)
    (args.out / "fidelity.json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
