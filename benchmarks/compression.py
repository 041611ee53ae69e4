"""Writing a super-resolved cube as compressed HDF5: seconds, MB/s and size per gzip level (with byte shuffling),
and whether h5py, xarray (h5netcdf) and netCDF4 open the result without a plugin.

    python benchmarks/compression.py                       # a ×2 EMIT-like output slice, 570 × 2560 × 128 lines
    python benchmarks/compression.py --lines 256 --levels 1,4,6

The cube is the MATLAB-bicubic ×2 of reflectance mixed from the real EMIT spectra (as ``benchmarks/granule.py``
makes it), float32, chunked (1 band × 256 × 256) as the package's HDF5 writer chunks it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUALSR_SHARED", ROOT.parent / "shared"))
EMIT_SPECTRA = SHARED / "data" / "products" / "emit_l2a_envi" / "emit20250324t221005_jpl_unmix_ex.hdr"
CROSSTRACK = 1280  # an EMIT granule's width


def cube(lines: int) -> np.ndarray:
    import torch

    from dualsr_deploy.data import read_scene
    from dualsr_deploy.ops.imresize import imresize

    source = read_scene(EMIT_SPECTRA)
    spectra = source.raw().reshape(source.cube.shape[0], -1).T.astype(np.float32)
    yy, xx = np.mgrid[0:lines, 0:CROSSTRACK].astype(np.float32)
    weight = 0.5 + 0.5 * np.sin(0.01 * xx) * np.cos(0.013 * yy)
    lr = weight[..., None] * spectra[3] + (1 - weight[..., None]) * spectra[57]  # (lines, 1280, 285)
    return imresize(torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))), 2).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=64, help="LR lines of the EMIT-like slice (×2 written)")
    parser.add_argument("--levels", default="1,4", help="gzip levels")
    args = parser.parse_args()
    import h5py

    data = cube(args.lines)
    _c, h, w = data.shape
    print("| gzip level | shuffle | seconds | MB/s | size (% of raw) | opens in h5py / xarray / netCDF4 |")
    print("|---:|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as folder:
        for level in (int(v) for v in args.levels.split(",")):
            path = Path(folder) / f"gzip{level}.h5"
            start = time.perf_counter()
            with h5py.File(path, "w") as handle:
                handle.create_dataset(
                    "cube",
                    data=data,
                    chunks=(1, min(h, 256), min(w, 256)),
                    compression="gzip",
                    compression_opts=level,
                    shuffle=True,
                )
            seconds = time.perf_counter() - start
            opened = []
            with h5py.File(path, "r") as handle:
                opened.append("yes" if np.array_equal(handle["cube"][0], data[0]) else "no")
            try:
                import xarray as xr

                with xr.open_dataset(path, engine="h5netcdf", phony_dims="sort") as ds:
                    opened.append("yes" if np.array_equal(ds["cube"].values[0], data[0]) else "no")
            except ImportError:
                opened.append("-")
            try:
                import netCDF4

                with netCDF4.Dataset(path) as ds:
                    opened.append("yes" if np.array_equal(ds["cube"][0], data[0]) else "no")
            except ImportError:
                opened.append("-")
            size = os.path.getsize(path)
            print(
                f"| {level} | yes | {seconds:.1f} | {data.nbytes / seconds / 1e6:.0f} | "
                f"{size / 2**20:.0f} MiB ({100 * size / data.nbytes:.0f} %) | {' / '.join(opened)} |"
            )


if __name__ == "__main__":
    main()
