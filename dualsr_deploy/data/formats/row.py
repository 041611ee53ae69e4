"""One row of the format table: what a file format is called, how it is recognised, opened and written, and what a
run needs to know about its outputs (after xarray's ``BackendEntrypoint``: each format says whether it can open a
file; one loop picks).

A row may read (``sniff`` and ``open``), write (``writes`` and ``strips``), or both. Detection asks each reading row
in the table's order whether it claims the file, from a :class:`Probe` that has read the file's first bytes once
and opens an HDF5 file at most once for all the HDF5 products.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dualsr_deploy.data.remote_ranges import hdf5_source

if TYPE_CHECKING:
    from dualsr_deploy.data.formats.reader import SceneReader
    from dualsr_deploy.data.formats.strips import StripWriter
    from dualsr_deploy.data.scene import SceneMeta

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
Units = Literal["normalised", "source"]


@dataclass(frozen=True)
class WriteOptions:
    """How a cube is written, whatever the format: ``units`` (float32 in [0, 1], or the source's units and dtype);
    ``factor``: the scale factor a file in the source's units declares (its input's), else None; ``zarr_format``:
    2 or 3 for Zarr (default: 3 where the installed zarr-python writes it); ``mat_version``: ``5`` or ``7.3`` for
    MATLAB (default: 7.3 only when the cube passes 2 GB or is written in strips); ``whole``: the cube comes in one
    write (a whole scene), so formats that lay a file out better knowing it do so (GeoTIFF tiles, MATLAB v5);
    ``rows``: the most rows one write carries, where the caller knows it, so compressed formats chunk no taller
    (:func:`~dualsr_deploy.data.formats.chunk_writes.chunk_rows`) and each write covers whole chunks."""

    units: Units = "normalised"
    factor: float | None = None
    zarr_format: int | None = None
    mat_version: str | None = None
    whole: bool = False
    rows: int | None = None


class Probe:
    """What detection knows of a path: whether it is a folder, its first 8 bytes and the 8 at offset 512 (where an
    HDF5 file behind a MATLAB header starts), its suffix, and (opened on first use, once) the HDF5 file it is, after
    it was found to read nothing but itself (:func:`~dualsr_deploy.data.confine.check_hdf5_self_contained`)."""

    def __init__(self, path: Path, head: bytes = b"", at_512: bytes = b"") -> None:
        self.path, self.head, self.at_512 = path, head, at_512
        self.suffix = path.suffix.lower()
        self.is_dir = path.is_dir()
        self._hdf5: Any = None

    @property
    def is_hdf5(self) -> bool:
        return self.head == HDF5_MAGIC or self.at_512 == HDF5_MAGIC

    @functools.cached_property
    def hdf5(self) -> Any:
        """The open ``h5py.File`` (None: it cannot be opened as HDF5; whoever opens it reports why)."""
        import h5py

        from dualsr_deploy.data.confine import check_hdf5_self_contained

        if not self.is_hdf5:
            return None
        try:
            self._hdf5 = h5py.File(hdf5_source(self.path), "r")
        except OSError:
            return None
        check_hdf5_self_contained(self._hdf5, self.path)
        return self._hdf5

    def close(self) -> None:
        if self._hdf5 is not None:
            self._hdf5.close()
            self._hdf5 = None


StripOpener = Callable[["Path", "tuple[int, int, int]", np.dtype, "SceneMeta", WriteOptions], "StripWriter"]


def one_file(output: Path) -> list[Path]:
    return [output]


@dataclass(frozen=True)
class Format:
    """A row of the format table.

    Reading: ``name`` (what detection returns and the manifest records), ``sniff`` (whether a probed path is this
    format), ``reader`` (its :class:`SceneReader` class: ``reader(path, confine=…)``, and ``key=``/``layout=`` when
    ``keyed``), ``scene_suffixes`` (files of this format an archive
    folder holds), ``keyed`` (takes ``key=`` and ``layout=``), ``output`` (the suffix its scenes are written in when
    no ``--format`` is given), ``companion`` (why a file an archive folder holds is read with a scene of this format
    rather than as one, given the suffixes scenes have; None: it is not).

    Writing: ``option`` (its ``--format`` name), ``writes`` (suffixes, the first written for ``--format``),
    ``strips`` (a :class:`StripWriter`, whole scenes being one strip), ``files`` (every file an output of it may
    be: ENVI's header, data file and sidecar; claimed at plan time), ``content`` (the files that hold an existing
    output's data, as its fingerprint covers them), ``uncompressed`` (its size is the cube's, known before
    writing), ``folder`` (an output is a folder: a Zarr store), ``streamed_note`` (what changes when a scene is
    written in strips rather than whole, kept in its record), ``sources`` and ``needs`` (the input formats it can
    be written for, None: any; and why).
    """

    name: str
    describe: str
    sniff: Callable[[Probe], bool] | None = None
    reader: Callable[..., SceneReader] | None = None
    scene_suffixes: tuple[str, ...] = ()
    keyed: bool = False
    output: str | None = None
    option: str | None = None
    writes: tuple[str, ...] = ()
    strips: StripOpener | None = None
    files: Callable[[Path], list[Path]] = one_file
    content: Callable[[Path], list[Path]] = one_file
    uncompressed: bool = False
    folder: bool = False
    streamed_note: str | None = None
    sources: frozenset[str] | None = None
    companion: Callable[[Path, frozenset[str]], str | None] | None = None
    needs: str = ""  # why ``sources`` limits it, for the refusal


__all__ = ["HDF5_MAGIC", "Format", "Probe", "Units", "WriteOptions", "one_file"]
