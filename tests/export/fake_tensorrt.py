"""A recording stand-in for the slice of TensorRT's Python API that ``dualsr_deploy.export.tensorrt`` uses.

It is NOT TensorRT: it checks our control flow (which flags, which profile, which cache, what the manifest says)
for the version-10 and version-11 branches, where no real TensorRT can run. Attribute names follow NVIDIA's
documented Python API; a name the code uses that is not here fails the tests (AttributeError), so the fake
also pins which API surface the builder relies on. Version 11 has no ``BuilderFlag.FP16`` (removed there).
"""

from __future__ import annotations

import enum
import types
from typing import Any


def make_fake_tensorrt(version: str, *, parse_ok: bool = True, build_ok: bool = True) -> types.ModuleType:
    calls: list[tuple[Any, ...]] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    trt.calls = calls  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 1

    if version.startswith("10."):

        class BuilderFlag(enum.IntEnum):
            FP16 = 0

    else:

        class BuilderFlag(enum.IntEnum):  # type: ignore[no-redef]
            REFIT = 1

    class MemoryPoolType(enum.IntEnum):
        WORKSPACE = 0

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+tuned"

    class Config:
        def __init__(self) -> None:
            self.progress_monitor: Any = None
            self.cache: TimingCache | None = None

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            calls.append(("workspace", int(pool), size))

        def set_flag(self, flag: BuilderFlag) -> None:
            calls.append(("flag", flag.name))

        def add_optimization_profile(self, profile: Profile) -> int:
            calls.append(("profile", profile.shapes))
            return 0

        def create_timing_cache(self, data: bytes) -> TimingCache:
            calls.append(("cache_in", bytes(data)))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            assert self.cache is not None
            return self.cache

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[Any, ...]] = {}

        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            calls.append(("network_flags", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", "", 2)
                monitor.step_complete("Building engine", 0)
                monitor.step_complete("Building engine", 1)
                monitor.phase_finish("Building engine")
            return b"PLAN" if build_ok else None

    class ParserError:
        def desc(self) -> str:
            return "unsupported node"

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.num_errors = 0 if parse_ok else 1

        def parse(self, data: bytes) -> bool:
            calls.append(("parse", len(data)))
            return parse_ok

        def get_error(self, index: int) -> ParserError:
            return ParserError()

    class Engine:  # what the runtime deserialises: enough for a backend to open
        def create_execution_context(self) -> object:
            calls.append(("context",))
            return object()

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            calls.append(("deserialize", len(data)))
            return Engine() if data.startswith(b"PLAN") else None

    for name, value in list(locals().items()):
        if isinstance(value, type):
            setattr(trt, name, value)
    return trt
