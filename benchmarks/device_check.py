"""Everything a GPU can show about this project, in one run: ``bash benchmarks/device_check.sh`` (see there).

Steps (each timed and recorded; one that fails is recorded as failed and the others still run):

1. ``environment``: torch, CUDA device, ONNX Runtime providers, OpenVINO, TensorRT.
2. ``gpu_tests``: ``pytest -m gpu``.
3. ``parity``: the torch backend in fp32 / bf16 / fp16 against CPU float64 (``export.verify.reference_sr``), for
   the shipped ×4 weights and a paper-size model, both neighbour rules, with the stated tolerances.
4. ``onnxruntime``: the exported graph on ONNX Runtime's CUDA provider when it has one (else a "not available"
   line), fp32 and fp16, against the same reference.
5. ``bench``: ``dualsr bench`` on a CAVE-size scene at ×4 and ×8 over tiles and batches, fp32 / bf16 / fp16, with the
   eager per-band loop and the matmul ceiling of each precision in the same run.
6. ``infer``: ``dualsr infer`` (×4, dual) on three CAVE scenes on the device, each precision against the CPU's fp32
   output of the same scenes.
7. ``train``: a short mixed-precision training run of the default recipe; its loss curve and samples/s.

The data (three CAVE LR scenes and three HR crops for the training store, ~20 MB) come from ``device_data/``
(ignored by git; made here by ``--prepare`` from ``../shared/data/cave``). Without it, random scenes stand in
(the plumbing is the same; the infer comparison then says so). Nothing needs colour-science, TensorRT or network.

``--cpu-smoke`` runs every step on the CPU at toy sizes, to know the plumbing works before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "device_data"
SHARED_CAVE = REPO.parent / "shared" / "data" / "cave"
CAVE_SCENES = ("face", "fake_and_real_beers", "feathers")  # held out by the shipped weights


def prepare(data: Path = DATA, cave: Path = SHARED_CAVE, scenes: tuple[str, ...] = CAVE_SCENES) -> Path:
    """``device_data/``: ×4 LR of three CAVE scenes (infer) and 256² HR crops of them (training store)."""
    from dualsr_deploy.data import open_archive, write_scene
    from dualsr_deploy.data.scene import Scene
    from dualsr_deploy.ops.imresize import imresize

    archive = open_archive(cave)
    entries = {entry.name: entry for entry in archive.readable}
    names = [name for name in scenes if name in entries] or sorted(entries)[:3]
    for index, name in enumerate(names[:3]):
        with archive.open(entries[name]) as reader:
            scene = reader.load()
        hr = torch.from_numpy(scene.cube).double()
        lr = imresize(hr, 0.25).clamp(0, 1).float().numpy()
        write_scene(data / "lr" / f"{name}.h5", Scene(name, lr, scene.meta))
        top = 128 + 64 * index
        crop = scene.cube[:, top : top + 256, 128:384].astype(np.float32)
        write_scene(data / "hr" / f"{name}.h5", Scene(name, crop, scene.meta))
    return data


def _random_data(root: Path, smoke: bool) -> Path:
    """Stand-in scenes when ``device_data/`` is absent: smooth random cubes (no colour-science needed)."""
    from dualsr_deploy.data import write_scene
    from dualsr_deploy.data.scene import Scene, SceneMeta

    generator = np.random.default_rng(0)
    lr_side, hr_side = (16, 64) if smoke else (128, 256)
    for index in range(3):
        for kind, side in (("lr", lr_side), ("hr", hr_side)):
            base = generator.random((31, side // 8 + 1, side // 8 + 1))
            cube = np.kron(base, np.ones((8, 8)))[:, :side, :side]
            cube = (0.2 + 0.6 * cube).astype(np.float32)
            write_scene(
                root / kind / f"random_{index}.h5",
                Scene(f"random_{index}", cube, SceneMeta(source="random", format="h5")),
            )
    return root


class Check:
    """The summary being written: one entry per step, with status, seconds, facts and lines for the Markdown."""

    def __init__(self, out: Path, smoke: bool, device: str) -> None:
        self.out, self.smoke, self.device = out, smoke, device
        self.steps: dict[str, dict[str, Any]] = {}
        self.started = time.perf_counter()

    def run(self, name: str, step: Callable[[], tuple[dict[str, Any], list[str]]]) -> None:
        began = time.perf_counter()
        print(f"[device_check] {name} …", flush=True)
        try:
            facts, lines = step()
            status = facts.pop("status", "ok")
        except Exception as exc:  # one failed step is recorded; the others still run
            facts, lines, status = (
                {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()},
                [],
                "failed",
            )
            lines = [f"**failed**: `{type(exc).__name__}: {exc}`"]
        seconds = round(time.perf_counter() - began, 1)
        self.steps[name] = {"status": status, "seconds": seconds, **facts, "lines": lines}
        print(f"[device_check] {name}: {status} ({seconds} s)", flush=True)
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        summary = {
            "mode": "cpu-smoke" if self.smoke else "device",
            "device": self.device,
            "seconds": round(time.perf_counter() - self.started, 1),
            "ok": all(step["status"] in ("ok", "not available") for step in self.steps.values()),
            "steps": {name: {k: v for k, v in step.items() if k != "lines"} for name, step in self.steps.items()},
        }
        (self.out / "device_check.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        text = [
            f"# device_check ({summary['mode']}, {self.device}): {summary['seconds']} s, "
            f"{'all steps ok' if summary['ok'] else 'SOME STEPS FAILED'}",
            "",
        ]
        for name, step in self.steps.items():
            text += [f"## {name}: {step['status']} ({step['seconds']} s)", "", *step["lines"], ""]
        (self.out / "device_check.md").write_text("\n".join(text))


def environment(device: str) -> tuple[dict[str, Any], list[str]]:
    from dualsr_deploy.runtimes import cpu_native_bf16, onnxruntime_providers, openvino_devices, tensorrt_version

    ort_version, providers = onnxruntime_providers()
    ov_version, ov_devices = openvino_devices()
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_native_bf16": cpu_native_bf16(),
        "cpu_count": os.cpu_count(),
        "onnxruntime": ort_version,
        "onnxruntime_providers": providers,
        "openvino": ov_version,
        "openvino_devices": ov_devices,
        "tensorrt": tensorrt_version(),
    }
    lines = [f"- {key}: {value}" for key, value in facts.items()]
    return facts, lines


def gpu_tests(smoke: bool) -> tuple[dict[str, Any], list[str]]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    tail = [line for line in done.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
    status = "ok" if done.returncode in (0, 5) else "failed"  # 5: none collected/selected
    return {"status": status, "returncode": done.returncode, "result": tail[0]}, [f"`pytest -m gpu`: {tail[0]}"]


def _models(smoke: bool) -> list[tuple[str, Any]]:
    from dualsr_deploy.archs.coarsr import CoarSR, CoarSRConfig
    from dualsr_deploy.checkpoint import read_checkpoint
    from dualsr_deploy.weights import shipped_weights

    shipped, _info = read_checkpoint(shipped_weights(4))
    torch.manual_seed(0)
    paper = CoarSR(CoarSRConfig(4, 16 if smoke else 64, 1 if smoke else 2)).eval()
    return [("shipped ×4", shipped), ("paper-size ×4" if not smoke else "small ×4", paper)]


def _inputs(smoke: bool) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    side = 12 if smoke else 40
    return [torch.rand(2, 31, side, side, generator=generator)]


def parity(device: str, smoke: bool) -> tuple[dict[str, Any], list[str]]:
    from dualsr_deploy.archs.fold import fold_coarsr
    from dualsr_deploy.backends import create
    from dualsr_deploy.export.verify import verify_backends
    from dualsr_deploy.runtimes import cpu_native_bf16

    precisions = (
        ["fp32", "bf16", "fp16"] if device.startswith("cuda") else ["fp32"] + (["bf16"] if cpu_native_bf16() else [])
    )
    rows, lines = (
        [],
        ["| model | rule | backend | max abs | mean abs | tolerance | result |", "|---|---|---|---|---|---|---|"],
    )
    for label, model in _models(smoke):
        for rule in ("paper", "reference"):
            core = fold_coarsr(model, rule)
            backends = [create("torch", core=core, device=device, precision=p) for p in precisions]
            for backend in backends:
                backend.open()
            for row in verify_backends(core, backends, _inputs(smoke)):
                rows.append(
                    {
                        "model": label,
                        "rule": rule,
                        "backend": row.backend,
                        "max_abs": row.max_abs,
                        "mean_abs": row.mean_abs,
                        "passed": row.passed,
                    }
                )
                lines.append(
                    f"| {label} | {rule} | {row.backend} | {row.max_abs:.2e} | {row.mean_abs:.2e} | "
                    f"{row.tolerance.max_abs:.0e} / {row.tolerance.mean_abs:.0e} | "
                    f"{'pass' if row.passed else 'FAIL'} |"
                )
            for backend in backends:
                backend.close()
    status = "ok" if all(r["passed"] for r in rows) else "failed"
    return {"status": status, "rows": rows}, lines


def onnxruntime_check(device: str, smoke: bool, work: Path) -> tuple[dict[str, Any], list[str]]:
    from dualsr_deploy.archs.fold import fold_coarsr
    from dualsr_deploy.backends.onnx_backend import OnnxBackend
    from dualsr_deploy.export.onnx import Precision, torch2onnx
    from dualsr_deploy.export.verify import verify_backends
    from dualsr_deploy.runtimes import onnxruntime_providers

    version, providers = onnxruntime_providers()
    provider = "cuda" if device.startswith("cuda") else "cpu"
    wanted = "CUDAExecutionProvider" if provider == "cuda" else "CPUExecutionProvider"
    if version is None or wanted not in providers:
        line = f"ONNX Runtime {version or '(not installed)'}: {wanted} not available (providers: {providers})"
        return {"status": "not available", "providers": providers}, [line]
    label, model = _models(smoke)[0]
    core = fold_coarsr(model, "paper")
    precisions: tuple[Precision, ...] = ("fp32", "fp16") if provider == "cuda" else ("fp32",)
    backends = [
        OnnxBackend(torch2onnx(core, work / f"g_{p}.onnx", bands=31, precision=p), provider=provider)
        for p in precisions
    ]
    for backend in backends:
        backend.open()
    rows = verify_backends(core, backends, _inputs(smoke))
    lines = [
        f"- {label}, {r.backend}: max {r.max_abs:.2e}, mean {r.mean_abs:.2e} ({'pass' if r.passed else 'FAIL'})"
        for r in rows
    ]
    status = "ok" if all(r.passed for r in rows) else "failed"
    return {"status": status, "rows": [vars(r) | {"tolerance": vars(r.tolerance)} for r in rows]}, lines


def bench(device: str, smoke: bool, work: Path) -> tuple[dict[str, Any], list[str]]:
    from dualsr_deploy.bench import BenchOptions, run_bench
    from dualsr_deploy.runtimes import onnxruntime_providers

    if smoke:
        plans = [
            BenchOptions(
                scales=(4,),
                size=64,
                tiles=(16,),
                batch=4,
                backends=("torch",),
                device=device,
                precisions=("fp32",),
                repeats=1,
            )
        ]
    else:
        precisions = ("fp32", "bf16", "fp16")
        backends = ("torch", "onnx") if "CUDAExecutionProvider" in onnxruntime_providers()[1] else ("torch",)
        plans = [
            BenchOptions(
                scales=(4, 8),
                size=512,
                tiles=(64, 128),
                batch=b,
                backends=backends,
                device=device,
                precisions=precisions,
                repeats=3,
                model="paper",
                baseline=b == 8,
            )
            for b in (8, 32)
        ]
    lines = [
        "| backend | prec | × | tile | batch | median s | GFLOP/s | of ceiling | vs eager |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    reports = []
    for options in plans:
        report = run_bench(options, work_dir=work / f"bench_b{options.batch}")
        reports.append(report.to_dict())
        for row in report.rows:
            data = row.to_dict()
            lines.append(
                f"| {row.backend} | {row.precision} | {row.scale} | {row.tile or 'scene'} | {options.batch} | "
                f"{row.median:.4f} | {row.gflops:.0f} | {data['fraction_of_ceiling']:.0%} | "
                f"{data['speedup_vs_baseline'] or 0:.1f}× |"
            )
        lines += [f"- skipped: {s}" for s in report.skipped]
        lines.append(f"- ceilings (GFLOP/s): {report.machine['matmul_ceiling_gflops']}")
        if report.recommendation:
            lines.append(f"- recommended: {report.recommendation}")
    return {"reports": reports}, lines


def infer(device: str, smoke: bool, data: Path, work: Path) -> tuple[dict[str, Any], list[str]]:
    from dualsr_deploy.data import read_scene
    from dualsr_deploy.infer import BackendSpec, InferOptions, run_archive
    from dualsr_deploy.metrics import psnr

    lr = data / "lr"
    runs: dict[str, dict[str, Any]] = {}
    configs = [("cpu", "fp32")]
    if device.startswith("cuda"):
        configs += [(device, "fp32"), (device, "bf16"), (device, "fp16")]
    else:
        from dualsr_deploy.runtimes import cpu_native_bf16

        configs += [("cpu", "bf16")] if cpu_native_bf16() else []
    for where, precision in configs:
        out = work / f"infer_{where.replace(':', '')}_{precision}"
        spec = BackendSpec(backend="torch", device=where, precision=precision)
        began = time.perf_counter()
        report = run_archive(lr, out, InferOptions(scale=4, stage="dual", backend=spec, units="normalised"))
        runs[f"{where} {precision}"] = {
            "out": out,
            "seconds": round(time.perf_counter() - began, 2),
            "exit_code": report.exit_code,
        }
    reference = runs["cpu fp32"]["out"]
    lines = [
        "| run | seconds | exit | scene | max abs vs CPU fp32 | PSNR vs CPU fp32 (dB) |",
        "|---|---|---|---|---|---|",
    ]
    facts: dict[str, Any] = {"data": "device_data (CAVE)" if (data / "lr").is_dir() and data == DATA else str(data)}
    failed = False
    for name, run in runs.items():
        failed |= run["exit_code"] != 0
        for output in sorted(Path(run["out"]).glob("*.h5")):
            got = read_scene(output).cube.astype(np.float64)
            want = read_scene(Path(reference) / output.name).cube.astype(np.float64)
            diff = float(np.abs(got - want).max())
            agreement = float(psnr(torch.from_numpy(got), torch.from_numpy(want))) if diff > 0 else float("inf")
            run.setdefault("scenes", {})[output.stem] = {"max_abs": diff, "psnr": agreement}
            lines.append(
                f"| {name} | {run['seconds']} | {run['exit_code']} | {output.stem} | {diff:.2e} | {agreement:.1f} |"
            )
        run["out"] = str(run["out"])
    facts["runs"] = runs
    return {"status": "failed" if failed else "ok", **facts}, lines


def train(device: str, smoke: bool, data: Path, work: Path) -> tuple[dict[str, Any], list[str]]:
    from dualsr_deploy.data import open_archive
    from dualsr_deploy.data.patches import PatchRecipe, prepare_patches
    from dualsr_deploy.train import TrainConfig
    from dualsr_deploy.train import train as run_training

    store = work / "store.h5"
    archive = open_archive(data / "hr")
    names = sorted(entry.name for entry in archive.readable)
    lr_patch = 8 if smoke else 16
    prepare_patches(archive, store, PatchRecipe(scale=4, lr_patch=lr_patch, validation=(names[-1],)))
    config = TrainConfig(
        scale=4,
        n_feats=8 if smoke else 64,
        n_blocks=1 if smoke else 2,
        batch_size=8 if smoke else 64,
        epochs=1000,
        precision="fp32" if smoke else "auto",  # auto: bf16 on CUDA; bf16 at toy sizes on a CPU is slow
        max_steps=4 if smoke else 300,
        time_limit_s=60 if smoke else 150,
        log_every_steps=1 if smoke else 10,
        validate_every_steps=2 if smoke else 100,
    )
    began = time.perf_counter()
    result = run_training(store, work / "train", config, device=device, tensorboard=False)
    seconds = time.perf_counter() - began
    log = [json.loads(line) for line in (work / "train" / "log.jsonl").read_text().splitlines()]
    losses = [(e["step"], round(e["loss"], 5)) for e in log if e["kind"] == "train"]
    validations = [(e["step"], round(e["psnr"], 3)) for e in log if e["kind"] == "validation"]
    samples = result.steps * config.batch_size
    facts = {
        "steps": result.steps,
        "stop": result.stop_reason,
        "seconds": round(seconds, 1),
        "samples_per_s": round(samples / seconds, 2),
        "loss_curve": losses,
        "validation_psnr": validations,
        "precision": config.precision,
        "config": json.loads(config.to_json()),
    }
    lines = [
        f"- {result.steps} steps ({result.stop_reason}) in {seconds:.0f} s: {samples / seconds:.1f} samples/s "
        f"(batch {config.batch_size}, n_feats {config.n_feats}, n_blocks {config.n_blocks}, "
        f"precision {config.precision})",
        f"- loss: {losses[:1]} … {losses[-1:]}",
        f"- validation PSNR (step, dB): {validations}",
    ]
    return facts, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="every step on the CPU at toy sizes")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "device_check_out")))
    parser.add_argument("--prepare", action="store_true", help="make device_data/ from ../shared/data/cave and stop")
    parser.add_argument("--skip", action="append", default=[], help="a step to leave out (repeatable)")
    args = parser.parse_args()
    if args.prepare:
        print(f"wrote {prepare()}")
        return 0
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("device_check: torch sees no CUDA device; run with --cpu-smoke on a machine without one", file=sys.stderr)
        return 2
    check = Check(args.out, args.cpu_smoke, torch.cuda.get_device_name(0) if device == "cuda" else "cpu")
    with tempfile.TemporaryDirectory(prefix="device_check_") as scratch:
        work = Path(scratch)
        data = DATA if (DATA / "lr").is_dir() and not args.cpu_smoke else _random_data(work / "data", args.cpu_smoke)
        steps: dict[str, Callable[[], tuple[dict[str, Any], list[str]]]] = {
            "environment": lambda: environment(device),
            "gpu_tests": lambda: gpu_tests(args.cpu_smoke),
            "parity": lambda: parity(device, args.cpu_smoke),
            "onnxruntime": lambda: onnxruntime_check(device, args.cpu_smoke, work),
            "bench": lambda: bench(device, args.cpu_smoke, work),
            "infer": lambda: infer(device, args.cpu_smoke, data, work),
            "train": lambda: train(device, args.cpu_smoke, data, work),
        }
        for name, step in steps.items():
            if name not in args.skip:
                check.run(name, step)
    check.write()
    print((args.out / "device_check.md").read_text())
    return 0 if all(s["status"] in ("ok", "not available") for s in check.steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
