"""One rule for every byte a reader takes: a file's claims about other files are checked, never followed blindly.

- **Files.** Every file a reader opens (the scene's own file, an ENVI data file, a band PNG, a sidecar, an EMIT mask
  granule, an EnMAP ``METADATA.XML``, a ``.hdr`` beside a GeoTIFF) is a regular file (not a FIFO, a device or a
  folder), and its real path (symbolic links resolved) lies inside the archive root. The scene's own file, as the
  archive named it, is exempt from the second half: the walker already refuses links out of the root, and a file
  a user names (argument, glob, list) is the user's choice.
- **HDF5/NetCDF.** A dataset with external raw storage or a virtual dataset reads other files, and an external link
  is another file: a file holding any of them is refused with the reason (:func:`check_hdf5_self_contained`).
- **TIFF.** tifffile reads only the file's own pages (no OME multi-file series); GDAL's files beside a GeoTIFF
  (``.aux.xml``, ``.ovr``, ``.msk``, world files) follow the same rule as any sidecar.

The walker (:mod:`dualsr_deploy.data.archive`) and the readers share :class:`Confinement`, so what a run lists as
refused is never read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualsr_deploy.data.remote_ranges import is_vsi
from dualsr_deploy.errors import DataError


def real_path(path: Path) -> Path:
    """``path`` absolute with every symbolic link resolved (a loop resolves as far as it goes)."""
    return Path(os.path.realpath(path))


def kind_of(mode: int) -> str:
    """A file type in words, for what is not a regular file."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: Path) -> str | None:
    """Why ``path`` (links followed) is not a regular file that can be read, or None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file" if not os.path.islink(path) else f"broken symbolic link (to {os.readlink(path)})"
    except OSError as exc:
        return f"cannot stat it ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else kind_of(mode)


@dataclass(frozen=True)
class Confinement:
    """The folder a scene's files must lie in (``root``, real path) and the files the archive named itself."""

    root: Path
    named: frozenset[Path] = frozenset()

    @classmethod
    def of(cls, root: Path, named: Iterable[Path] = ()) -> Confinement:
        return cls(real_path(root), frozenset(Path(os.path.abspath(p)) for p in named))

    @classmethod
    def around(cls, path: Path) -> Confinement:
        """For a scene opened on its own (``read_scene(path)``): its folder is the root, the path itself named."""
        path = Path(path)
        return cls.of(path if path.is_dir() else path.parent, [path])

    def problem(self, path: Path) -> str | None:
        """Why a reader may not open ``path``, or None. A remote object (a GDAL virtual path) may be read only when
        the archive named it."""
        if is_vsi(path):
            return None if Path(os.path.abspath(path)) in self.named else "a remote object the archive did not name"
        why = not_regular(path)
        if why is not None:
            return why
        if Path(os.path.abspath(path)) in self.named:
            return None
        real = real_path(path)
        if not real.is_relative_to(self.root):
            return f"leads out of the archive root {self.root} (to {real}); pass --root to allow it"
        return None

    def check(self, path: Path, what: str = "file") -> Path:
        """``path`` when a reader may open it; else a :class:`DataError` naming it, what it is and why."""
        why = self.problem(path)
        if why is not None:
            raise DataError(f"{path}: refused to read this {what}: {why}")
        return path

    def existing(self, path: Path, what: str = "file") -> Path | None:
        """``path`` when it exists (links followed or not) and may be opened; None when there is nothing there; a
        :class:`DataError` when something is there that may not be read (a link out of the root, a FIFO)."""
        if not os.path.lexists(path):
            return None
        return self.check(path, what)


def check_hdf5_self_contained(handle: Any, path: Path) -> None:
    """Refuse an open h5py file that reads bytes from anywhere but itself: an external link, a dataset with
    external raw storage, a virtual dataset. Links are looked at without being followed; soft links resolve inside
    the file, and what they point to is checked where it lives."""
    import h5py

    seen: set[Any] = set()

    def refuse(where: str, what: str) -> None:
        raise DataError(f"{path}: refused: {where} {what}; only self-contained HDF5/NetCDF files are read")

    def walk(group: Any, prefix: str) -> None:
        if group.id in seen:  # object ids compare by file and address: a group hard-linked twice is walked once
            return
        seen.add(group.id)
        for name in group:
            where = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                refuse(where, f"is an external link to {link.filename}:{link.path} (another file)")
            if isinstance(link, h5py.SoftLink):
                continue
            item = group.get(name)
            if isinstance(item, h5py.Dataset):
                if item.is_virtual:
                    sources = sorted({source.file_name for source in item.virtual_sources()})
                    refuse(where, f"is a virtual dataset mapping {', '.join(sources[:3])}")
                if item.external:
                    files = sorted({str(entry[0]) for entry in item.external})
                    refuse(where, f"stores its values in external files ({', '.join(files[:3])})")
            elif isinstance(item, h5py.Group):
                walk(item, where)

    try:
        walk(handle["/"], "")
    except DataError:
        raise
    except (KeyError, RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot list its contents ({exc}); is the file complete?") from None


# Files GDAL reads beside a raster when they exist (PAM metadata, overviews, masks, world files).
GDAL_SIDECARS = (".aux.xml", ".ovr", ".msk", ".tfw", ".tifw", ".tiffw", ".wld", ".rpb", ".imd")


def gdal_sidecars(image: Path) -> list[Path]:
    """The files GDAL may read beside ``image`` that are there: ``scene.tif.aux.xml`` and ``scene.aux.xml`` forms,
    lower and upper case (a few ``lstat`` calls, not a listing of the folder: archives hold thousands of files)."""
    found = []
    for base in dict.fromkeys((image.name, image.stem)):
        for suffix in GDAL_SIDECARS:
            for variant in dict.fromkeys((suffix, suffix.upper())):
                candidate = image.with_name(base + variant)
                if os.path.lexists(candidate) and candidate not in found:
                    found.append(candidate)
    return found


__all__ = [
    "GDAL_SIDECARS",
    "Confinement",
    "check_hdf5_self_contained",
    "gdal_sidecars",
    "not_regular",
    "real_path",
]
