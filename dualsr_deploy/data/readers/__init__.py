"""Open any supported scene file or folder: the format is recognised by content first, extension second."""

from __future__ import annotations

import os
from pathlib import Path

from dualsr_deploy.data.confine import Confinement, check_hdf5_self_contained, not_regular
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.readers.base import SceneReader
from dualsr_deploy.data.scene import Scene, Window
from dualsr_deploy.errors import DataError

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
SCENE_SUFFIXES = frozenset({".mat", ".h5", ".hdf5", ".he5", ".nc", ".npy", ".npz", ".tif", ".tiff", ".hdr"})
FORMATS = ("cave", "mat-v5", "mat-v7.3", "hdf5", "emit", "aviris3", "prisma", "npy", "npz", "tiff", "geotiff", "envi")
KEYED_FORMATS = frozenset({"mat-v5", "mat-v7.3", "hdf5", "npy", "npz"})  # formats that take key= and layout=


def detect_format(path: Path) -> str:
    """One of :data:`FORMATS`, from the file's first bytes (and its name where bytes cannot tell)."""
    if path.is_dir():
        return "cave"
    why = not_regular(path)  # a FIFO would block the read below forever; a device never ends
    if why == "no such file":
        raise DataError(f"{path}: no such file or folder")
    if why is not None:
        raise DataError(f"{path}: not a scene file: {why}")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            handle.seek(512)
            at_512 = handle.read(8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open it ({exc.strerror or exc})") from None
    suffix = path.suffix.lower()
    if not head:
        raise DataError(f"{path}: the file is empty")
    if head.startswith(b"MATLAB"):
        return "mat-v7.3" if at_512 == _HDF5_MAGIC else "mat-v5"
    if head == _HDF5_MAGIC or at_512 == _HDF5_MAGIC:
        if suffix == ".mat":
            return "mat-v7.3"
        product = _hdf5_product(path)
        if product not in (None, "hdf5"):
            return product
        if suffix in (".he5", ".nc") and product is None:
            kind = "HDF-EOS5" if suffix == ".he5" else "NetCDF4"
            raise DataError(f"{path}: cannot open it as {kind}/HDF5; is the file complete?")
        if suffix == ".nc":
            raise DataError(
                f"{path}: a NetCDF file without a known cube variable (EMIT: root reflectance or radiance beside a "
                "sensor_band_parameters group; AVIRIS-3: group reflectance with reflectance and wavelength)"
            )
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") and suffix == ".npz":
        return "npz"
    if head[:4] in _TIFF_MAGICS:
        from dualsr_deploy.data.readers.tiff import is_geotiff

        return "geotiff" if is_geotiff(path) else "tiff"
    if head.startswith(b"ENVI") or suffix == ".hdr" or path.with_suffix(".hdr").is_file():
        return "envi"
    if suffix == ".mat":  # MATLAB v4 files have no text header; scipy reads them
        return "mat-v5"
    supported = ", ".join(FORMATS)
    raise DataError(f"{path}: not a recognised scene file (supported: {supported}; CAVE scenes are folders)")


def _hdf5_product(path: Path) -> str | None:
    """Which sensor product an HDF5 file is (``emit``, ``prisma``, ``aviris3``), ``hdf5`` when none, None when it
    cannot be opened (reported by whoever opens it). One open for all three checks, after the file is found to read
    nothing but itself (no external links, external storage or virtual datasets: a :class:`DataError`)."""
    import h5py

    from dualsr_deploy.data.readers.aviris3 import is_aviris3
    from dualsr_deploy.data.readers.emit import is_emit
    from dualsr_deploy.data.readers.prisma import prisma_swath

    try:
        with h5py.File(path, "r") as handle:
            check_hdf5_self_contained(handle, path)
            if is_emit(handle):
                return "emit"
            if prisma_swath(handle) is not None:
                return "prisma"
            return "aviris3" if is_aviris3(handle) else "hdf5"
    except OSError:
        return None


def open_scene(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    layout: str | None = None,
    confine: Confinement | None = None,
) -> SceneReader:
    """Open a scene for lazy reading. ``key``: the array inside a MATLAB/HDF5/NPZ file (default: the largest 3-D
    one, reported in ``reader.notes``). ``layout``: axis order of that array (``hwc`` etc.; MATLAB's own order
    for ``.mat``); default: the format's convention (``hwc`` for MATLAB, ``chw`` for HDF5/NumPy). ``confine``:
    where the scene's other files (data files, sidecars, band images) may lie; default: the scene's own folder.
    What the file declares about its bands is checked before the reader is returned (:meth:`SceneReader.validate`).
    """
    path = Path(path)
    reader = _open(path, key, layout, confine or Confinement.around(path))
    try:
        reader.validate()
    except BaseException:
        reader.close()
        raise
    return reader


def _open(path: Path, key: str | None, layout: str | None, confine: Confinement) -> SceneReader:
    kind = detect_format(path)
    if kind not in KEYED_FORMATS and (key is not None or layout is not None):
        raise DataError(f"{path}: key and layout apply to MATLAB, HDF5 and NumPy files, not to {kind}")
    if kind == "cave":
        from dualsr_deploy.data.readers.cave import CaveReader

        return CaveReader(path, confine=confine)
    if kind == "mat-v5":
        from dualsr_deploy.data.readers.matlab import MatV5Reader

        return MatV5Reader(path, key=key, layout=layout, confine=confine)
    if kind in ("mat-v7.3", "hdf5"):
        from dualsr_deploy.data.readers.hdf5 import Hdf5Reader, MatV73Reader

        return (MatV73Reader if kind == "mat-v7.3" else Hdf5Reader)(path, key=key, layout=layout, confine=confine)
    if kind == "aviris3":
        from dualsr_deploy.data.readers.aviris3 import Aviris3Reader

        return Aviris3Reader(path, confine=confine)
    if kind == "prisma":
        from dualsr_deploy.data.readers.prisma import PrismaReader

        return PrismaReader(path, confine=confine)
    if kind == "emit":
        from dualsr_deploy.data.readers.emit import EmitReader

        return EmitReader(path, confine=confine)
    if kind in ("npy", "npz"):
        from dualsr_deploy.data.readers.numpy_files import NpyReader, NpzReader

        return (NpyReader if kind == "npy" else NpzReader)(path, key=key, layout=layout, confine=confine)
    if kind == "tiff":
        from dualsr_deploy.data.readers.tiff import TiffReader

        return TiffReader(path, confine=confine)
    if kind == "geotiff":
        from dualsr_deploy.data.readers.tiff import GeoTiffReader

        return GeoTiffReader(path, confine=confine)
    from dualsr_deploy.data.readers.envi import EnviReader

    return EnviReader(path, confine=confine)


def read_scene(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    layout: str | None = None,
    normalise: Normalisation | None = None,
    window: Window | None = None,
) -> Scene:
    """Read a scene (or a window of it) as float32 ``(C, H, W)`` in [0, 1]; see :func:`open_scene`."""
    with open_scene(path, key=key, layout=layout) as reader:
        return reader.load(normalise, window)


__all__ = ["FORMATS", "KEYED_FORMATS", "SCENE_SUFFIXES", "SceneReader", "detect_format", "open_scene", "read_scene"]
