"""Post-training INT8 against the quality rule (issue #45): can a Q/DQ graph of the shipped weights pass it at all?

For each held-out scene of a patch store (the model card's), the fp32 ONNX graph for its band count is quantised
with ONNX Runtime's ``quantize_static`` (QDQ, per-channel int8 weights, int8 activations) under several
configurations, calibrated on **the scene's own LR tiles** — an oracle calibration no run could have, so an upper
bound for static calibration: a configuration that fails here fails with any calibration set. Each graph runs in
ONNX Runtime and in OpenVINO (which reads Q/DQ ONNX as int8) on the whole LR scene; the SR (residual + MATLAB
bicubic skip, clipped to [0, 1]) is scored against HR and compared with fp32 in the same runtime. Speed is timed on a
``--tile``² LR tile of the scene's bands, best of ``--repeats``.

Configurations: ``minmax`` (every supported operator quantised), ``+tail`` / ``+head`` / ``+scan`` (those convs kept
fp32: the upsampling tail and its merge, the first conv on the input planes, the band scan's state merges),
``+convonly`` (only Conv quantised: additions, gathers and concatenations stay fp32).

    python benchmarks/int8_ptq.py --store air2_x2.h5 --weights dualsr_deploy/weights/airborne/coarsr_x2.safetensors
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

RULE_DB, RULE_DEG = 0.02, 0.02
RUNTIMES = ("onnxruntime", "openvino")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument(
        "--configs", default="minmax,minmax+tail,minmax+head+tail,minmax+convonly+head+tail", help="comma-separated"
    )
    parser.add_argument(
        "--activations", choices=("u8", "s8"), default="u8", help="u8 (with s8 weights: x86's VNNI form) or s8"
    )
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from dualsr_deploy.archs.fold import fold_coarsr
    from dualsr_deploy.checkpoint import read_checkpoint
    from dualsr_deploy.data.patches import PatchDataset
    from dualsr_deploy.export.onnx import torch2onnx
    from dualsr_deploy.ops.imresize import imresize
    from dualsr_deploy.train.validate import score_cube

    torch.set_num_threads(args.threads)
    model, info = read_checkpoint(args.weights)
    core = fold_coarsr(model, info.neighbour_rule)
    dataset = PatchDataset(args.store, augmentation=False)
    scenes = list(dataset.validation())
    dataset.close()

    class Tiles(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, tiles: np.ndarray) -> None:
            self.tiles, self.index = tiles, 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= len(self.tiles):
                return None
            self.index += 8
            return {"lr": self.tiles[self.index - 8 : self.index]}

    def ort_session(path: Path) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def ov_compiled(path: Path) -> Any:
        import openvino as ov  # type: ignore[import-untyped]

        config = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32"}
        return ov.Core().compile_model(str(path), "CPU", config)

    def run(runtime: str, path: Path, x: np.ndarray) -> np.ndarray:
        if runtime == "onnxruntime":
            return np.asarray(ort_session(path).run(None, {"lr": x})[0])
        return np.asarray(ov_compiled(path)({"lr": x})[0])

    def timed(runtime: str, path: Path, x: np.ndarray) -> float:
        if runtime == "onnxruntime":
            session = ort_session(path)

            def call() -> Any:
                return session.run(None, {"lr": x})
        else:
            compiled = ov_compiled(path)

            def call() -> Any:
                return compiled({"lr": x})

        call()
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - start)
        return best

    def scored(residual: np.ndarray, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        sr = (torch.from_numpy(residual[0]) + imresize(lr.double(), info.scale).float()).clamp(0, 1)
        return score_cube(sr, hr.float())

    rows = []
    with tempfile.TemporaryDirectory(prefix="dualsr-int8-") as work:
        folder = Path(work)
        for name, lr, hr in scenes:
            bands = lr.shape[0]
            graph = folder / f"fp32_c{bands}.onnx"
            torch2onnx(core, graph, bands=bands)
            nodes = [n for n in onnx.load(str(graph)).graph.node]
            x = lr[None].numpy()
            rng = np.random.default_rng(0)
            timing = rng.random((1, bands, args.tile, args.tile), dtype=np.float32) * float(lr.max())
            step = 16
            tiles = np.stack(
                [
                    lr.numpy()[:, i : i + step, j : j + step]
                    for i in range(0, lr.shape[1] - step + 1, step)
                    for j in range(0, lr.shape[2] - step + 1, step)
                ]
            )
            base = {rt: (scored(run(rt, graph, x), lr, hr), timed(rt, graph, timing)) for rt in RUNTIMES}
            for config in args.configs.split(","):
                parts = set(config.split("+")[1:])
                keep = []
                if "tail" in parts:
                    keep += [n.name for n in nodes if "/tail/" in n.name or "merge_out" in n.name]
                if "head" in parts:
                    keep += [n.name for n in nodes if "/head/" in n.name]
                if "scan" in parts:
                    keep += [n.name for n in nodes if "merge_state" in n.name]
                quantised = folder / f"{config}_c{bands}.onnx"
                quantize_static(
                    str(graph),
                    str(quantised),
                    Tiles(tiles.astype(np.float32)),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8 if args.activations == "u8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=keep,
                    op_types_to_quantize=["Conv"] if "convonly" in parts else None,
                )
                for runtime, (fp32, seconds_fp32) in base.items():
                    got = scored(run(runtime, quantised, x), lr, hr)
                    seconds = timed(runtime, quantised, timing)
                    d_psnr, d_sam = got["psnr"] - fp32["psnr"], got["sam"] - fp32["sam"]
                    passes = d_psnr >= -RULE_DB and d_sam <= RULE_DEG
                    rows.append(
                        f"| {name} | {bands} | {config} | {runtime} | {fp32['psnr']:.3f} | {d_psnr:+.4f} | "
                        f"{fp32['sam']:.3f} | {d_sam:+.4f} | {'yes' if passes else '**no**'} | "
                        f"{seconds_fp32 / seconds:.2f}× |"
                    )
                    print(rows[-1], flush=True)
    print()
    print(
        f"×{info.scale}, {args.weights.name}, {args.activations} activations, s8 weights per channel, tile "
        f"{args.tile}² for speed, {args.threads} threads"
    )
    print("| scene | bands | configuration | runtime | PSNR fp32 | ΔPSNR (dB) | SAM fp32 | ΔSAM (°) | passes | speed |")
    print("|---|---:|---|---|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
