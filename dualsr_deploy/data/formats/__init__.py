"""Every file format in one table: detection, opening and writing are loops over :data:`TABLE`.

Each format's module owns its detection (``sniff``), its reader, its strip writer and its row (:class:`Format`):
CAVE folders, MATLAB v5/v7.3, EMIT and AVIRIS-3 NetCDF, PRISMA, HDF5, NumPy, GeoTIFF/COG/TIFF, ENVI and Zarr (write
only). A file is recognised by content first, name second: the first row, in the table's order, whose ``sniff``
claims it. Writing goes through the same table by the target's suffix, and every output is written by strips, a
whole scene being one strip.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dualsr_deploy.data.confine import Confinement, not_regular
from dualsr_deploy.data.formats.cave import CAVE
from dualsr_deploy.data.formats.envi import ENVI
from dualsr_deploy.data.formats.geotiff import COG, GEOTIFF, TIFF
from dualsr_deploy.data.formats.hdf5 import HDF5
from dualsr_deploy.data.formats.matlab import MAT_V4, MAT_V5, MAT_V73
from dualsr_deploy.data.formats.netcdf import AVIRIS3, EMIT
from dualsr_deploy.data.formats.npy import NPY, NPZ
from dualsr_deploy.data.formats.prisma import PRISMA
from dualsr_deploy.data.formats.reader import SceneReader
from dualsr_deploy.data.formats.row import Format, Probe, Units, WriteOptions
from dualsr_deploy.data.formats.strips import StripWriter
from dualsr_deploy.data.formats.zarr import ZARR
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.remote_ranges import is_vsi, open_binary
from dualsr_deploy.data.scene import Scene, SceneMeta, Window
from dualsr_deploy.errors import DataError

# In detection order: folders, then headered MATLAB, the HDF5 products before plain HDF5, the magic numbers, ENVI
# (by header or name), and last MATLAB v4 (no header: known by its name alone).
TABLE: tuple[Format, ...] = (
    CAVE,
    MAT_V73,
    MAT_V5,
    EMIT,
    PRISMA,
    AVIRIS3,
    HDF5,
    NPY,
    NPZ,
    GEOTIFF,
    TIFF,
    ENVI,
    MAT_V4,
    COG,
    ZARR,
)
READ_FORMATS = tuple(dict.fromkeys(row.name for row in TABLE if row.reader is not None))
KEYED_FORMATS = frozenset(row.name for row in TABLE if row.keyed)  # formats that take key= and layout=
SCENE_SUFFIXES = frozenset(suffix for row in TABLE for suffix in row.scene_suffixes)
WRITE_SUFFIXES = tuple(suffix for row in TABLE for suffix in row.writes)
OPTIONS = {row.option: row.writes[0] for row in TABLE if row.option is not None}  # --format name → suffix


def reading(name: str) -> Format:
    """The row that reads format ``name`` (one of :data:`READ_FORMATS`)."""
    for row in TABLE:
        if row.name == name and row.reader is not None:
            return row
    raise DataError(f"unknown format {name!r}; known: {', '.join(READ_FORMATS)}")


def writing(path: Path) -> Format:
    """The row that writes ``path``, by its suffix (the longest that matches: ``.cog.tif`` before ``.tif``)."""
    name = path.name.lower()
    matches = [(len(suffix), row) for row in TABLE for suffix in row.writes if name.endswith(suffix)]
    if not matches:
        shown = path.suffix or "files without a suffix"
        raise DataError(f"{path}: cannot write {shown}; use one of {', '.join(WRITE_SUFFIXES)}")
    return max(matches, key=lambda match: match[0])[1]


def output_suffix(input_format: str | None, option: str | None = None) -> str:
    """The suffix a scene of ``input_format`` is written in: ``option``'s (a ``--format`` name) when given, else its
    format's own (CAVE folders and PRISMA become HDF5)."""
    if option is not None:
        if option not in OPTIONS:
            raise DataError(f"unknown format {option!r}; choose one of {', '.join(OPTIONS)}")
        return OPTIONS[option]
    for row in TABLE:
        if row.name == input_format and row.output is not None:
            return row.output
    return HDF5.writes[0]


def detect_format(path: Path) -> str:
    """One of :data:`READ_FORMATS`, from the file's first bytes (and its name where bytes cannot tell). A GDAL
    virtual path (a remote GeoTIFF read by range) is a GeoTIFF, which GDAL then checks as it opens it."""
    if is_vsi(path) and path.suffix.lower() in (".tif", ".tiff"):
        return "geotiff"  # GDAL checks it as it opens it
    if not is_vsi(path) and not path.is_dir():
        why = not_regular(path)  # a FIFO would block the read below forever; a device never ends
        if why == "no such file":
            raise DataError(f"{path}: no such file or folder")
        if why is not None:
            raise DataError(f"{path}: not a scene file: {why}")
    probe = _probe(path)
    try:
        for row in TABLE:
            if row.sniff is not None and row.sniff(probe):
                return row.name
    finally:
        probe.close()
    raise DataError(
        f"{path}: not a recognised scene file (supported: {', '.join(READ_FORMATS)}; CAVE scenes are folders)"
    )


def _probe(path: Path) -> Probe:
    if not is_vsi(path) and path.is_dir():
        return Probe(path)
    try:
        with open_binary(path) if is_vsi(path) else path.open("rb") as handle:
            head = handle.read(8)
            handle.seek(512)
            at_512 = handle.read(8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open it ({exc.strerror or exc})") from None
    if not head:
        raise DataError(f"{path}: the file is empty")
    return Probe(path, head, at_512)


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
    row = reading(detect_format(path))
    if not row.keyed and (key is not None or layout is not None):
        raise DataError(f"{path}: key and layout apply to MATLAB, HDF5 and NumPy files, not to {row.name}")
    assert row.reader is not None
    chosen = {"key": key, "layout": layout} if row.keyed else {}
    reader = row.reader(path, confine=confine or Confinement.around(path), **chosen)
    try:
        reader.validate()
    except BaseException:
        reader.close()
        raise
    return reader


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


def check_units(units: str) -> Units:
    if units not in ("normalised", "source"):
        raise DataError(f"units must be 'normalised' or 'source', not {units!r}")
    return "normalised" if units == "normalised" else "source"


def declared_factor(meta: SceneMeta, units: str) -> float | None:
    """The factor to divide by that a file in the source's units declares (as its input did), else None."""
    if units == "source" and meta.normalisation.startswith("declared:"):
        return meta.scale_factor
    return None


def open_strips(
    path: str | os.PathLike[str],
    shape: tuple[int, int, int],
    meta: SceneMeta,
    attrs: Mapping[str, str],
    *,
    dtype: str | np.dtype = "float32",
    units: str = "normalised",
    factor: float | None = None,
    zarr_format: int | None = None,
    mat_version: str | None = None,
    whole: bool = False,
    rows: int | None = None,
) -> StripWriter:
    """A :class:`StripWriter` for ``path`` (its suffix chooses the format, as for :func:`write_scene`); ``dtype``:
    float32 (normalised units) or the source's (``units="source"``); ``factor``: the scale factor a file in the
    source's units declares, as :func:`declared_factor` gives it; ``zarr_format``, ``mat_version``: as for
    :func:`write_scene`; ``whole``: the cube comes in one write; ``rows``: the most rows one write carries (a
    compressed file's chunks are then no taller: every write covers whole chunks)."""
    target = Path(path)
    row = writing(target)
    assert row.strips is not None
    options = WriteOptions(check_units(units), factor, zarr_format, mat_version, whole, rows)
    meta = meta.replace(attrs={**meta.attrs, **attrs, "dualsr_units": units})
    kind = np.dtype(dtype).newbyteorder("=")  # native: each format stores its own byte order (ENVI: the source's)
    return row.strips(target, shape, kind, meta, options)


def write_scene(
    path: str | os.PathLike[str],
    scene: Scene,
    *,
    attrs: Mapping[str, str] | None = None,
    units: str = "normalised",
    mat_version: str | None = None,
    zarr_format: int | None = None,
) -> Path:
    """Write ``scene`` to ``path`` in the format its suffix names (one strip of :func:`open_strips`); return the
    path written.

    ``attrs``: extra string attributes (e.g. ``model``, ``scale``, ``stage``, ``backend``) stored with the cube.
    ``units``: ``normalised`` (float32 in [0, 1]) or ``source`` (the source's units and dtype).
    ``mat_version``: ``5`` or ``7.3`` for ``.mat``; default 7.3 only when the cube passes 2 GB.
    ``zarr_format``: 2 or 3 for ``.zarr``; default 3 where the installed zarr-python writes it.
    A name ending in ``.cog.tif`` is written as a Cloud-Optimized GeoTIFF.
    """
    target = Path(path)
    writing(target)  # an unknown suffix is refused before the cube is converted
    data = scene.normalised() if check_units(units) == "normalised" else scene.raw()
    meta = scene.meta
    shape = (data.shape[0], data.shape[1], data.shape[2])
    factor = declared_factor(meta, units)
    with open_strips(
        target,
        shape,
        meta,
        dict(attrs or {}),
        dtype=data.dtype,
        units=units,
        factor=factor,
        zarr_format=zarr_format,
        mat_version=mat_version,
        whole=True,
    ) as strips:
        strips.write(0, data)
        return strips.commit()


__all__ = [
    "KEYED_FORMATS",
    "OPTIONS",
    "READ_FORMATS",
    "SCENE_SUFFIXES",
    "TABLE",
    "WRITE_SUFFIXES",
    "Format",
    "SceneReader",
    "StripWriter",
    "declared_factor",
    "detect_format",
    "open_scene",
    "open_strips",
    "output_suffix",
    "read_scene",
    "reading",
    "write_scene",
    "writing",
]
