"""Outputs of one version of dualsr against another's: every output format, in memory and streamed, compared by the
values and attributes their users' tools read back (not by file bytes, which carry creation times and may change
layout, e.g. a GeoTIFF's blocks).

    python benchmarks/outputs_identical.py inputs /tmp/cmp/in                    # CAVE ×4 LR, products, NetCDFs
    python benchmarks/outputs_identical.py run /tmp/cmp/in /tmp/cmp/after        # dualsr infer, every format × mode
    PYTHONPATH=/path/to/other/checkout python benchmarks/outputs_identical.py run /tmp/cmp/in /tmp/cmp/before
    python benchmarks/outputs_identical.py compare /tmp/cmp/before /tmp/cmp/after

Inputs: the 13 CAVE scenes of ``../shared/data/cave`` degraded ×4 by the paper's protocol (``dualsr data degrade``;
LR 128², run ×4 with ``--stage dual``), and the product samples of ``../shared/data/products`` (EMIT L2A and AVIRIS-NG
ENVI, EnMAP GeoTIFF tiles; read in place) plus an EMIT and an AVIRIS-3 NetCDF built the way their producers build
them (``tests/interop/producers.py``, ``tests/data/test_aviris3.py``), run ×2. Each input set goes through
``dualsr infer`` once per output format, in memory and streamed (a ``--memory-budget`` under every scene's, so that
every scene streams: each record's ``mode`` says so), with
torch fp32. ``compare`` reads each file of one tree and its namesake in the other: HDF5/NetCDF/MATLAB v7.3 (h5py:
every dataset's values, dtype and attributes), MATLAB v5 (scipy), NumPy (+ its JSON sidecar), GeoTIFF/COG
(rasterio: every band, dtype, no-data, CRS, transform, dataset and band tags, descriptions), ENVI (Spectral's header
parse + the data file's bytes), Zarr (every array and attribute); other files by bytes; the manifest's records
field by field. Left out: ``dualsr_version``, the manifest's timings, and its ``output_bytes``/``output_sha256`` (the
digest of a file's bytes, which carry an HDF5 file's layout and a MATLAB header's creation time). Exit 1 when
anything differs, with each difference listed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALSR_SHARED", ROOT.parent / "shared"))
PRODUCTS = SHARED / "data" / "products"
FORMATS = {  # input set: (scale, stage, formats)
    "cave": (4, "dual", ["h5", "npy", "mat", "tif", "cog", "envi", "zarr"]),
    "products": (2, "auto", ["like", "h5", "npy", "mat", "tif", "cog", "envi", "zarr"]),
    "netcdf": (2, "auto", ["like", "h5", "tif", "envi", "zarr"]),
}
MODES = ("memory", "streamed")
STREAMED_BUDGET = {"cave": "256M", "products": "4M", "netcdf": "4M"}  # under each set's scenes, so all stream
VOLATILE = {"dualsr_version"}
ROOTS: tuple[str, ...] = ()  # the two trees compared: their names left out of what records say


def rooted(text: str) -> str:
    for root in ROOTS:
        text = text.replace(root, "<out>")
    return text


def make_inputs(where: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.data.test_aviris3 import make_ort
    from tests.interop.producers import write_emit_granule

    where.mkdir(parents=True, exist_ok=True)
    dualsr = [sys.executable, "-m", "dualsr_deploy"]
    subprocess.run(
        [*dualsr, "data", "degrade", str(SHARED / "data" / "cave"), str(where / "cave"), "--scale", "4"], check=True
    )
    products = where / "products.txt"
    scenes = sorted(PRODUCTS.glob("*_envi/*.hdr")) + sorted(PRODUCTS.glob("enmap_l2a_tiles/*.tif"))
    products.write_text("".join(f"{path}\n" for path in scenes))
    (where / "netcdf").mkdir(exist_ok=True)
    write_emit_granule(where / "netcdf" / "EMIT_L2A_RFL_001_20250101T000000_2500100_001.nc", rows=40, cols=36, bands=60)
    make_ort(where / "netcdf" / "AV320250101t000000_001_L2A_OE_main_RFL_ORT.nc")


def run(inputs: Path, out: Path) -> None:
    dualsr = [sys.executable, "-m", "dualsr_deploy", "infer"]
    for name, (scale, stage, formats) in FORMATS.items():
        source = inputs / ("products.txt" if name == "products" else name)
        for mode in MODES:
            extra = ["--memory-budget", STREAMED_BUDGET[name]] if mode == "streamed" else []
            for fmt in formats:
                target = out / name / mode / fmt
                if (target / "manifest.jsonl").is_file():
                    continue
                args = ["--scale", str(scale), "--stage", stage, "--precision", "fp32", "--backend", "torch"]
                args += [] if fmt == "like" else ["--format", fmt]
                root = ["--root", str(PRODUCTS)] if name == "products" else []
                done = subprocess.run(
                    [*dualsr, str(source), "-o", str(target), *args, *extra, *root], capture_output=True, text=True
                )
                print(f"{name}/{mode}/{fmt}: exit {done.returncode}", flush=True)
                if done.returncode:
                    print(done.stdout[-2000:], done.stderr[-2000:])


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    return bool(a == b)


def attrs_of(mapping: Any) -> dict[str, Any]:
    found = {}
    for key, value in dict(mapping).items():
        if key in VOLATILE:
            continue
        if key == "dualsr_scene" and isinstance(value, str | bytes):
            scene = json.loads(value)
            scene.get("attrs", {}).pop("dualsr_version", None)
            value = json.dumps(scene, sort_keys=True)
        found[key] = value
    return found


def named(value: Any, handle: Any) -> Any:
    """HDF5 object references (netCDF's ``DIMENSION_LIST``/``REFERENCE_LIST``) as the names they point at: their
    addresses differ between two files with the same structure."""
    import h5py

    if isinstance(value, h5py.Reference):
        return handle[value].name if value else None
    if isinstance(value, np.ndarray) and value.dtype.kind in "OV":
        if value.dtype.names:  # REFERENCE_LIST: (reference, index) records
            return [tuple(named(item[field], handle) for field in value.dtype.names) for item in value]
        return [named(item, handle) for item in value]
    if isinstance(value, np.void) and value.dtype.names:
        return tuple(named(value[field], handle) for field in value.dtype.names)
    return value


def read_hdf5(path: Path) -> dict[str, Any]:
    import h5py

    items: dict[str, Any] = {}
    with h5py.File(path, "r") as handle:
        items["/attrs"] = attrs_of(handle.attrs)

        def visit(name: str, node: Any) -> None:
            items[f"{name}/attrs"] = {key: named(value, handle) for key, value in attrs_of(node.attrs).items()}
            if isinstance(node, h5py.Dataset):
                items[name] = node[()]

        handle.visititems(visit)
    return items


def read_tiff(path: Path) -> dict[str, Any]:
    import rasterio

    with rasterio.open(path) as dataset:
        items: dict[str, Any] = {
            "data": dataset.read(),
            "nodata": dataset.nodata,
            "crs": str(dataset.crs),
            "transform": dataset.transform,
            "tags": attrs_of(dataset.tags()),
            "descriptions": dataset.descriptions,
            "units": dataset.units,
            "scales": dataset.scales,
            "offsets": dataset.offsets,
        }
        for band in range(1, dataset.count + 1):
            items[f"band{band}"] = dataset.tags(band)
        items["envi"] = dataset.tags(ns="ENVI")
    return items


def read_envi(path: Path) -> dict[str, Any]:
    from spectral.io.envi import read_envi_header

    header = read_envi_header(str(path))
    header.pop("description", None)  # spectral's own timestamp-free parse; the description carries our provenance
    with path.open() as handle:
        text = handle.read()
    items: dict[str, Any] = {"header": header, "provenance": [line for line in text.splitlines() if "dualsr" in line]}
    data = [p for p in path.parent.iterdir() if p.stem == path.stem and p.suffix not in (".hdr", ".json", ".xml")]
    for part in data:
        items[part.name] = part.read_bytes()
    return items


def read_zarr(path: Path) -> dict[str, Any]:
    import zarr

    items: dict[str, Any] = {}
    group = zarr.open_group(str(path), mode="r")
    items["/attrs"] = attrs_of(group.attrs)
    for name, array in group.arrays():
        items[name] = array[...]
        items[f"{name}/attrs"] = attrs_of(array.attrs)
    return items


def read_any(path: Path) -> dict[str, Any]:
    name = path.name.lower()
    if name == "manifest.jsonl":
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        # timings and the files' own byte digests (creation times, chunk order): the content is compared file by file
        volatile: tuple[str, ...] = ("seconds", "started", "finished", "host", "pid", "elapsed", "timings")
        volatile += ("threads", "dualsr_version", "output_bytes", "output_sha256")
        kept = [{k: v for k, v in line.items() if not any(word in k for word in volatile)} for line in lines]
        kept = [json.loads(rooted(json.dumps(line))) for line in kept]  # an error names its output folder
        return {"records": sorted(json.dumps(line, sort_keys=True) for line in kept)}
    if name.endswith((".h5", ".hdf5", ".nc")):
        return read_hdf5(path)
    if name.endswith(".mat"):
        with path.open("rb") as handle:
            handle.seek(512)
            if handle.read(8) == b"\x89HDF\r\n\x1a\n":
                return read_hdf5(path)
        import scipy.io

        loaded = scipy.io.loadmat(path)
        return {k: v for k, v in loaded.items() if not k.startswith("__")}
    if name.endswith(".npy"):
        return {"data": np.load(path, allow_pickle=False)}
    if name.endswith((".tif", ".tiff")):
        return read_tiff(path)
    if name.endswith(".hdr"):
        return read_envi(path)
    if name.endswith(".json"):
        return attrs_of(json.loads(path.read_text())) if path.read_text().startswith("{") else {"t": path.read_text()}
    return {"bytes": path.read_bytes()}


def units(tree: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(tree.rglob("*")):
        if any(part.endswith(".zarr") for part in path.relative_to(tree).parts[:-1]):
            continue
        if (path.name.endswith(".zarr") and path.is_dir()) or (
            path.is_file() and not path.name.endswith(".aux.xml") and ".dualsr.lock" not in path.name
        ):
            found[str(path.relative_to(tree))] = path
    return found


def compare(a: Path, b: Path) -> int:
    global ROOTS
    ROOTS = (str(a), str(b))
    left, right = units(a), units(b)
    problems = [f"only in {a}: {name}" for name in sorted(set(left) - set(right))]
    problems += [f"only in {b}: {name}" for name in sorted(set(right) - set(left))]
    shared = sorted(set(left) & set(right))
    data_files: set[str] = set()
    for name in shared:
        if name.endswith(".hdr"):
            stem = name[: -len(".hdr")]
            data_files.update(  # the data file as Spectral finds it (x, x.img, x.dat …); the .dualsr.json on its own
                other
                for other in shared
                if other != name and not other.endswith(".json") and Path(other).with_suffix("") == Path(stem)
            )
    for name in shared:
        if name in data_files:
            continue  # compared with its header
        one = read_zarr(left[name]) if name.endswith(".zarr") else read_any(left[name])
        two = read_zarr(right[name]) if name.endswith(".zarr") else read_any(right[name])
        for key in sorted(set(one) | set(two)):
            if key not in one or key not in two:
                problems.append(f"{name}: {key} only on one side")
            elif not same(one[key], two[key]):
                problems.append(f"{name}: {key} differs")
    print(
        f"{len(shared)} files compared ({len(data_files)} ENVI data files with their headers), "
        f"{len(problems)} differences"
    )
    for line in problems:
        print(" ", line)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("inputs").add_argument("where", type=Path)
    runs = sub.add_parser("run")
    runs.add_argument("inputs", type=Path)
    runs.add_argument("out", type=Path)
    both = sub.add_parser("compare")
    both.add_argument("a", type=Path)
    both.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "inputs":
        make_inputs(args.where)
        return 0
    if args.command == "run":
        run(args.inputs, args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
