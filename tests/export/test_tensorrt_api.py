"""The TensorRT stand-in (``fake_tensorrt.py``) against TensorRT itself, without a GPU: every TensorRT class,
method, attribute and enum member the project calls must be named by the compiled Python bindings of TensorRT 10
and of TensorRT 11 (``tensorrt-cu12-bindings`` / ``tensorrt-cu13-bindings`` wheels: their libraries cannot be
installed here, but their ``tensorrt.so`` names its whole API). ``.ci/run`` downloads the wheels into
``.ci-cache/tensorrt-bindings`` (or set ``DUALSR_TRT_WHEELS``); without them this test skips.

A compiled module's string table stores each name NUL-terminated, and the linker may store a name as the tail of a
longer one (``num_errors`` inside ``get_num_errors``), so a name is found when ``name\\0`` occurs in the file."""

from __future__ import annotations

import ast
import os
import zipfile
from pathlib import Path

import pytest

from tests.export.fake_tensorrt import make_fake_tensorrt

REPO = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("DUALSR_TRT_WHEELS", REPO / ".ci-cache" / "tensorrt-bindings"))
SOURCES = [REPO / "dualsr_deploy" / "export" / "tensorrt.py", REPO / "dualsr_deploy" / "backends" / "trt_backend.py"]
# what trt_backend calls on the objects TensorRT hands back (the stand-in only deserialises): receiver → its names
BACKEND_RECEIVERS = ("_context", "_engine", "runtime")


def bindings(major: str) -> bytes | None:
    """The ``tensorrt.so`` of the TensorRT ``major`` bindings wheel, if downloaded."""
    for wheel in sorted(WHEELS.glob("tensorrt_cu*_bindings-*.whl")):
        if wheel.name.split("-")[1].startswith(f"{major}."):
            with zipfile.ZipFile(wheel) as archive:
                return archive.read("tensorrt_bindings/tensorrt.so")
    return None


def accessed() -> set[str]:
    """Every attribute name the project's TensorRT code reads (``trt.Builder``, ``config.set_flag`` …)."""
    names: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


def backend_calls() -> set[str]:
    """Methods trt_backend calls on the engine, its execution context and the runtime."""
    names = set()
    for node in ast.walk(ast.parse(SOURCES[1].read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute | ast.Name):
            receiver = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
            if receiver in BACKEND_RECEIVERS:
                names.add(node.attr)
    return names


def overrides() -> set[str]:
    """Methods the project defines for TensorRT to call (its ``IProgressMonitor`` subclass)."""
    names = set()
    for node in ast.walk(ast.parse(SOURCES[0].read_text())):
        if isinstance(node, ast.ClassDef) and any("IProgressMonitor" in ast.unparse(b) for b in node.bases):
            names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")}
    return names


def used_api(version: str) -> set[str]:
    """The TensorRT names the project uses with the ``version`` stand-in: the module's classes it reaches as
    ``trt.X``, the members of every stand-in class (methods, enum members, attributes set in ``__init__``) that the
    project's code reads, and what the backend calls on the objects TensorRT returns."""
    fake = make_fake_tensorrt(version)
    reads = accessed()
    names: set[str] = set()
    for name, value in vars(fake).items():
        if not isinstance(value, type):
            continue
        if name in reads:
            names.add(name)
        members = set(vars(value)) | set(getattr(value, "__members__", {}))
        init = vars(value).get("__init__")
        if init is not None and hasattr(init, "__code__"):
            members |= set(init.__code__.co_names)
        names |= {m for m in members if not m.startswith("_") and m in reads}
    return names | backend_calls() | overrides()


@pytest.mark.parametrize(("major", "version"), [("10", "10.13.3"), ("11", "11.4.0")])
def test_every_tensorrt_name_the_project_calls_is_in_the_real_bindings(major: str, version: str) -> None:
    compiled = bindings(major)
    if compiled is None:
        pytest.skip(f"no TensorRT {major} bindings wheel in {WHEELS} (.ci/run downloads it)")
    used = used_api(version)
    assert {"Builder", "OnnxParser", "Runtime", "set_memory_pool_limit", "execute_async_v3", "phase_start"} <= used
    missing = sorted(name for name in used if name.encode() + b"\0" not in compiled)
    assert missing == [], f"TensorRT {major} does not name {missing}: the stand-in has drifted from TensorRT"


def test_fp16_is_a_builder_flag_in_tensorrt_10_and_gone_in_11() -> None:
    """What the stand-in's two branches assume (``BuilderFlag.FP16`` only in 10; 11 builds strongly typed)."""
    ten, eleven = bindings("10"), bindings("11")
    if ten is None or eleven is None:
        pytest.skip(f"the TensorRT 10 and 11 bindings wheels are not in {WHEELS}")
    assert b"FP16\0" in ten
    assert b"FP16\0" not in eleven
    assert b"STRONGLY_TYPED\0" in ten
    assert b"STRONGLY_TYPED\0" in eleven
