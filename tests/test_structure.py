"""The house rules that keep the package easy to follow (issue "The house"), checked on the source itself:
every module imports on its own, no import cycle at module level, no source file over 500 lines, backends built in
one place, every error type in ``errors.py``, optional imports through one helper."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import dualsr_deploy

PACKAGE = Path(dualsr_deploy.__file__).parent
MAX_LINES = 500
OPTIONAL = ("onnxruntime", "tensorrt", "rasterio", "spectral", "ray", "matplotlib", "onnxslim", "tensorboard", "isal")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_imports_on_its_own() -> None:
    """Each module in a fresh interpreter (the package's modules forgotten between imports, so each one is imported
    first, as ``python -c 'import dualsr_deploy.cli.data'`` would): a circular import fails here."""
    names = [name for name in sources() if name != "dualsr_deploy.__main__"]  # __main__ runs the CLI
    script = f"""
import importlib, json, sys, traceback
failures = {{}}
for name in {names!r}:
    for loaded in [m for m in sys.modules if m == "dualsr_deploy" or m.startswith("dualsr_deploy.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600)
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(f"{name}:\n{text}" for name, text in failures.items())


def module_level_imports(path: Path, name: str) -> set[str]:
    """The package modules ``name`` imports when it is imported: module-level ``import``/``from`` statements,
    including those under ``if``/``try`` but not under ``if TYPE_CHECKING`` or inside functions and classes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.If | ast.Try):
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(node, part, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)

    visit(tree.body)
    return found


def test_no_import_cycle_among_the_packages_modules() -> None:
    """Module-level imports form no cycle (an ancestor package's ``__init__``, which Python runs first anyway, is
    not counted as an edge)."""
    modules = sources()
    graph = {
        name: {
            target
            for target in module_level_imports(path, name)
            if target in modules and target != name and not name.startswith(target + ".")
        }
        for name, path in modules.items()
    }
    cycles = strongly_connected(graph)
    assert not cycles, f"import cycles: {cycles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_the_cycle_check_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_source_file_over_500_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_backends_are_built_in_the_backends_package_alone() -> None:
    """No ``…Backend(`` construction outside ``dualsr_deploy/backends/``: everything else calls ``backends.create``."""
    construction = re.compile(r"\b[A-Z]\w*Backend\(")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "backends"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if construction.search(line) and not line.lstrip().startswith("class "):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_error_type_lives_in_errors_py() -> None:
    """Exception classes are defined in ``errors.py`` alone, and all derive from ``DualSRError``."""
    from dualsr_deploy import errors

    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                re.search(r"(Error|Exception)$", ast.unparse(base)) for base in node.bases
            ):
                elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert elsewhere == []
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, tuple):  # SCENE_ERRORS, RUN_ERRORS: groups of exception types
            assert all(issubclass(kind, Exception) for kind in value), name
        else:
            assert issubclass(value, errors.DualSRError), name


def test_optional_packages_are_imported_through_one_helper() -> None:
    """``import onnxruntime`` and the like appear only inside functions that already checked through
    :mod:`dualsr_deploy.optional` or its callers; no module guards them with its own ``except ImportError``."""
    guards = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "optional.py" and "except ImportError" in path.read_text()
    ]
    assert guards == []
    module_level = []
    for name, path in sources().items():
        for target in module_level_imports(path, name):
            if target.split(".")[0] in OPTIONAL:
                module_level.append(f"{name} imports {target} at module level")
    assert module_level == []


ARCHITECTURE = PACKAGE.parent / "docs" / "explanation" / "architecture.md"


def documented_layers() -> list[list[str]]:
    """The layers of ``docs/explanation/architecture.md`` (its "Layers" block), top first: each a list of top-level
    module or package names (``infer``, ``artefacts``, ``__init__``)."""
    text = ARCHITECTURE.read_text()
    block = text[text.index("## Layers") :].split("```\n")[1]
    layers = []
    for line in block.splitlines():
        if not line.strip() or line[0].isspace():  # a description's continuation
            continue
        names = re.split(r"\s{2,}", line.strip())[0]
        layers.append([name.strip().removesuffix("/").removesuffix(".py") for name in names.split(",")])
    return layers


def all_imports(path: Path, name: str) -> list[tuple[str, int]]:
    """Every package module ``name`` imports, anywhere in the file (module level, functions, ``TYPE_CHECKING``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            found.append((base, node.lineno))
    return [(target, line) for target, line in found if target.startswith("dualsr_deploy.")]


def top_level(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def climbing_imports(layers: list[list[str]]) -> list[str]:
    """``module:line imports target`` for each import from a layer above the importer's own."""
    rank = {name: index for index, names in enumerate(layers) for name in names}
    climbs = []
    for name, path in sources().items():
        mine = rank[top_level(name)]
        for target, line in all_imports(path, name):
            theirs = rank.get(top_level(target))
            if theirs is not None and theirs < mine:
                climbs.append(f"{name}:{line} imports {target}")
    return climbs


def test_every_module_has_a_documented_layer() -> None:
    placed = {name for names in documented_layers() for name in names}
    unplaced = sorted({top_level(name) for name in sources()} - placed)
    assert unplaced == [], f"add these to the Layers block of {ARCHITECTURE.name}: {unplaced}"
    assert len(documented_layers()) >= 6


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    """docs/explanation/architecture.md's layer order holds for every import, lazy ones included."""
    assert climbing_imports(documented_layers()) == []


def test_the_layer_check_finds_a_climb() -> None:
    """With ``infer`` placed below ``backends`` (which it imports), the check reports the imports."""
    layers = [[name for name in names if name != "infer"] for names in documented_layers()]
    layers.append(["infer"])
    climbs = climbing_imports([names for names in layers if names])
    assert any(" imports dualsr_deploy.backends" in line for line in climbs)


# Where a backend's name is the point, not a capability: the bench's reference row is torch fp32 by definition.
NAMED_ON_PURPOSE = {"bench/advice.py"}


def test_decisions_outside_backends_ask_capabilities_not_names() -> None:
    """No comparison of a backend's name with a literal (``spec.backend == "trt"``) outside ``backends/``:
    :func:`dualsr_deploy.backends.backend_kind` and :class:`~dualsr_deploy.backends.Capabilities` say what a
    backend is."""
    from dualsr_deploy.backends import BACKENDS

    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        if path.is_relative_to(PACKAGE / "backends") or where in NAMED_ON_PURPOSE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            names = [s for s in sides if isinstance(s, ast.Constant) and s.value in BACKENDS]
            names += [
                e
                for s in sides
                if isinstance(s, ast.Tuple | ast.List | ast.Set)
                for e in s.elts
                if isinstance(e, ast.Constant) and e.value in BACKENDS
            ]
            if names and any("backend" in ast.unparse(s) or ast.unparse(s) == "name" for s in sides):
                offenders.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []
