"""Archives of scenes: a folder (recursive), a glob, a list file, or one multi-scene HDF5 file.

Opening an archive probes every entry's header (shape, dtype) so sizes are known before any pixel is read;
iterating reads one scene at a time and reports a broken entry instead of stopping at it.
"""

from __future__ import annotations

import errno
import glob
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dualsr_deploy.data.confine import Confinement, not_regular
from dualsr_deploy.data.formats import KEYED_FORMATS, SCENE_SUFFIXES, TABLE, detect_format, open_scene
from dualsr_deploy.data.formats.cave import band_files
from dualsr_deploy.data.formats.envi import AUXILIARY
from dualsr_deploy.data.formats.hdf5 import HDF5
from dualsr_deploy.data.formats.prisma import PRISMA
from dualsr_deploy.data.formats.reader import SceneReader
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.remote_ranges import is_vsi
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.errors import DataError, DualSRError

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})


@dataclass(frozen=True)
class ArchiveEntry:
    """One scene of an archive. ``error`` is set when it could not even be probed; then ``shape`` is None."""

    name: str
    path: Path
    key: str | None = None
    format: str | None = None
    shape: tuple[int, int, int] | None = None
    dtype: str | None = None
    error: str | None = None
    wavelengths: tuple[float, ...] | None = None  # band centres in nm, when the file gives them
    origin: str | None = None  # where the scene lives when ``path`` is a local copy of it (a staged object's URL)
    # a scene read by range from a remote object (``path`` a GDAL virtual path): its relative key, size and ETag, what
    # its fingerprint is made of (its bytes are never all read at once)
    remote: tuple[str, int | None, str | None] | None = None

    @property
    def source(self) -> str:
        """What outputs and records name as the scene's source: its origin, else its path."""
        return self.origin or str(self.path)

    @property
    def nbytes(self) -> int:
        """Size of the cube as float32 (0 when unknown)."""
        if self.shape is None:
            return 0
        c, h, w = self.shape
        return 4 * c * h * w


@dataclass(frozen=True)
class SkippedFile:
    """A file under the archive's folder that is not read as a scene, and why."""

    path: Path
    reason: str


_SIDECARS = (".npy.json", ".aux.xml", ".tfw", ".prj", ".ovr", ".msk", ".sha256", ".md5")


def skip_reason(path: Path) -> str | None:
    """Why a file found in an archive folder is not a scene (None: it is read as one)."""
    name = path.name
    lower = name.lower()
    if name.startswith("."):
        return "hidden file"
    if any(lower.endswith(suffix) for suffix in _SIDECARS):
        return "sidecar of another file (metadata, georeferencing or checksum)"
    if lower.endswith("metadata.xml"):
        image = path.with_name(name[: -len("METADATA.XML")] + "SPECTRAL_IMAGE.TIF")
        if image.is_file():
            return f"metadata of the EnMAP product {image.name} (read with it)"
        return "product metadata (XML)"
    if "_MASK_" in name and path.with_name(name.replace("_MASK_", "_RFL_")).is_file():
        return f"mask granule of {name.replace('_MASK_', '_RFL_')} (read with it under --product-masks)"
    if re.search(r"(^|[-_])QL_", name):
        return "quicklook or quality layer of a product, not a spectral scene"
    for row in TABLE:
        why = row.companion(path, SCENE_SUFFIXES) if row.companion is not None else None
        if why is not None:
            return why
    if path.suffix.lower() not in SCENE_SUFFIXES:
        return f"unknown format ({path.suffix or 'no suffix'})"
    if AUXILIARY.search(path.stem) and path.suffix.lower() not in (".mat", ".npy", ".npz"):
        return "auxiliary product (geometry, location or mask), not a spectral scene"
    return None


@dataclass(frozen=True)
class ArchiveScene:
    """What iterating an archive yields: the scene, or the error that stopped this one entry."""

    entry: ArchiveEntry
    scene: Scene | None = None
    error: str | None = None


class Archive:
    """Scenes known by their headers; read one at a time with :meth:`scenes` or :meth:`open`."""

    def __init__(
        self,
        root: Path,
        entries: list[ArchiveEntry],
        *,
        layout: str | None = None,
        skipped: list[SkippedFile] | None = None,
    ) -> None:
        self.root = root
        self.entries = entries
        self.layout = layout
        self.skipped = skipped or []  # files under a folder archive that are not scenes, with the reason
        self.others = 0  # scenes left to other shards (open_archive's select)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def readable(self) -> list[ArchiveEntry]:
        return [entry for entry in self.entries if entry.error is None]

    @property
    def failed(self) -> list[ArchiveEntry]:
        return [entry for entry in self.entries if entry.error is not None]

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self.entries)

    def open(self, entry: ArchiveEntry) -> SceneReader:
        if entry.error is not None:
            raise DataError(entry.error)
        return _open(entry.path, entry.key, self.layout, self.confinement(entry))

    def confinement(self, entry: ArchiveEntry) -> Confinement:
        """Where the files of ``entry`` may lie: the archive root; the entry's own path is the named input."""
        return Confinement.of(self.root, [entry.path])

    def scenes(self, normalise: Normalisation | None = None) -> Iterator[ArchiveScene]:
        """Each entry in order, loaded; an entry that fails yields its error and iteration goes on."""
        for entry in self.entries:
            if entry.error is not None:
                yield ArchiveScene(entry, error=entry.error)
                continue
            try:
                with self.open(entry) as reader:
                    scene = reader.load(normalise)
            except (DualSRError, OSError) as exc:
                yield ArchiveScene(entry, error=str(exc))
                continue
            except Exception as exc:  # whatever a hostile file makes a library raise is this entry's failure
                yield ArchiveScene(entry, error=f"{entry.path}: {type(exc).__name__}: {exc}")
                continue
            yield ArchiveScene(entry, scene=Scene(entry.name, scene.cube, scene.meta))


def open_archive(
    spec: str | os.PathLike[str],
    *,
    key: str | None = None,
    layout: str | None = None,
    root: str | os.PathLike[str] | None = None,
    recursive: bool = True,
    select: Callable[[str], bool] | None = None,
) -> Archive:
    """Find the scenes of ``spec`` and probe their headers.

    ``spec``: a folder (searched recursively; a CAVE scene folder is one scene), a glob pattern, a list file
    (``.txt``/``.lst``: one path a line, relative to the list's folder, ``#`` comments), a multi-scene HDF5 file
    (every 3-D dataset a scene) or a single scene file. Every scene must lie inside ``root`` (default: the folder,
    the list's folder, or the glob's fixed prefix); one outside it is reported as a failed entry. ``select``: keep only
    the scenes whose name it accepts (a shard's part), decided before any file is opened; the others are not
    entries, and :attr:`Archive.others` counts them.
    """
    text = os.fspath(spec)
    path = Path(text)
    if any(char in text for char in "*?[") and not path.exists():
        base = _glob_base(text)
        candidates = [Path(match) for match in sorted(glob.glob(text, recursive=True))]
        if not candidates:
            raise DataError(f"{text}: the pattern matches no files")
        base_root = Path(root) if root is not None else base
        return _probe(base_root, [(_name(p, base_root), p, key) for p in candidates], layout, select)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        base_root = Path(root) if root is not None else path
        if band_files(path) is not None:
            return _probe(base_root, [(_name(path, path.parent), path, None)], layout, select)
        found, failures, skipped = _walk(path, recursive, base_root)
        if not found and not failures:
            listed = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:5])
            raise DataError(
                f"{path}: no scene files in this folder (looked for {', '.join(sorted(SCENE_SUFFIXES))})"
                + (f"; skipped {len(skipped)} file(s): {listed}" if skipped else "")
            )
        archive = _probe(base_root, [(_name(p, path), p, key) for p in found], layout, select)
        kept = [entry for entry in failures if select is None or select(entry.name)]
        archive.others += len(failures) - len(kept)
        archive.entries.extend(kept)
        archive.skipped = skipped
        return archive
    if path.suffix.lower() in LIST_SUFFIXES:
        base_root = Path(root) if root is not None else path.parent
        return _probe(base_root, [(_name(p, path.parent), p, key) for p in _read_list(path)], layout, select)
    base_root = Path(root) if root is not None else path.parent
    if key is None and path.suffix.lower() in (*HDF5.scene_suffixes, *PRISMA.scene_suffixes) and _plain_hdf5(path):
        keys = _multi_scene_keys(path)
        if len(keys) > 1:
            entries = [(f"{path.stem}/{k}", path, k) for k in keys]
            return _probe(base_root, entries, layout, select)
    return _probe(base_root, [(path.stem, path, key)], layout, select)


def open_paths(
    root: Path,
    named: Sequence[tuple[str, Path]],
    failed: Sequence[tuple[str, Path, str]] = (),
    layout: str | None = None,
    *,
    remote: bool = False,
) -> Archive:
    """An archive of scenes named by the caller (``named``: name, path), each probed as :func:`open_archive` probes
    and confined to ``root``; ``failed``: (name, path, why) for scenes that are already known to fail. ``remote``:
    the paths are GDAL virtual paths of objects the remote driver listed (read by range); nowhere else is one read."""
    archive = _probe(root, [(name, path, None) for name, path in named], layout, remote=remote)
    archive.entries.extend(ArchiveEntry(name, path, error=why) for name, path, why in failed)
    return archive


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if any(char in part for char in "*?["):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _name(path: Path, base: Path) -> str:
    try:  # lexically normalised: a list entry "../x" is not named "../x"
        relative = Path(os.path.normpath(os.path.abspath(path))).relative_to(os.path.normpath(os.path.abspath(base)))
    except ValueError:
        relative = Path(path.name)
    name = relative.as_posix()
    if path.is_dir():
        return name[:-3] if name.endswith("_ms") else name
    return name[: -len(path.suffix)] if path.suffix else name


def _walk(
    folder: Path, recursive: bool, root: Path | None = None
) -> tuple[list[Path], list[ArchiveEntry], list[SkippedFile]]:
    """The scene files and CAVE folders under ``folder``. Symbolic links are followed only where they stay inside
    ``root`` (default: ``folder``) and lead somewhere not walked yet: a link loop, a folder linked to itself or an
    ancestor, a link out of the root and a second link to one file are each one skipped line with the reason, so the
    walk ends on any tree and reads each scene once."""
    found: list[Path] = []
    failures: list[ArchiveEntry] = []
    skipped: list[SkippedFile] = []
    boundary = _real(root if root is not None else folder) or Path(os.path.abspath(folder))
    walked: set[Path] = set()
    seen_files: dict[Path, Path] = {}

    def unreadable(error: OSError) -> None:
        where = Path(error.filename) if error.filename else folder
        failures.append(ArchiveEntry(_name(where, folder), where, error=f"{where}: cannot list this folder ({error})"))

    def refused(path: Path, *, is_dir: bool) -> str | None:
        """Why a symbolic link (or a folder reached twice) is not followed, else None."""
        real = _real(path)
        if real is None:
            return "symbolic link loop (it leads back to itself)" if path.is_symlink() else "cannot resolve its path"
        if path.is_symlink() and not real.exists():
            return f"broken symbolic link (to {os.readlink(path)})"
        if path.is_symlink() and not real.is_relative_to(boundary):
            return f"symbolic link out of the archive root {boundary} (to {real}; pass --root to allow it)"
        if is_dir and real in walked:
            return f"symbolic link loop (leads to {real}, already walked)"
        if not is_dir and real in seen_files:
            return f"the same file as {seen_files[real]} (a symbolic link to it)"
        return None

    for current, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        here = Path(current)
        walked.add(_real(here) or here)
        skipped.extend(SkippedFile(here / d, "hidden folder") for d in sorted(dirs) if d.startswith("."))
        kept = []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            reason = refused(here / d, is_dir=True)
            if reason is None:
                kept.append(d)
                walked.add(_real(here / d) or here / d)
            else:
                skipped.append(SkippedFile(here / d, reason))
        dirs[:] = kept
        scene_dirs = [d for d in dirs if _is_cave(here / d, failures, folder)]
        found.extend(here / d for d in scene_dirs)
        if not recursive:
            skipped.extend(SkippedFile(here / d, "sub-folder (not searched)") for d in dirs if d not in scene_dirs)
        dirs[:] = [d for d in dirs if d not in scene_dirs] if recursive else []
        for name in sorted(files, key=lambda n: ((here / n).is_symlink(), n)):  # a file before links to it
            path = here / name
            reason = refused(path, is_dir=False) or _not_regular(path) or skip_reason(path)
            if reason is None:
                found.append(path)
                seen_files[_real(path) or path] = path
            else:
                skipped.append(SkippedFile(path, reason))
    return sorted(found), failures, sorted(skipped, key=lambda s: s.path)


def _not_regular(path: Path) -> str | None:
    """Why a file the walk found cannot be a scene file: a FIFO (whose read would wait forever), a device, a
    socket; None for a regular file."""
    why = not_regular(path)
    return None if why is None else f"not a regular file: {why}"


def _real(path: Path) -> Path | None:
    """``path`` with every symbolic link resolved, or None for a link loop."""
    try:
        return Path(os.path.realpath(path, strict=False)) if not _loops(path) else None
    except (OSError, RuntimeError, ValueError):
        return None


def _loops(path: Path) -> bool:
    try:
        os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return False
    except OSError as error:  # ELOOP
        return error.errno == errno.ELOOP
    return False


def _is_cave(folder: Path, failures: list[ArchiveEntry], base: Path) -> bool:
    try:
        return band_files(folder) is not None
    except DataError as exc:
        failures.append(ArchiveEntry(_name(folder, base), folder, format="cave", error=str(exc)))
        return True
    except OSError:
        return False  # os.walk reports an unreadable folder itself


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the list file ({exc})") from None
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            entry = Path(line)
            paths.append(entry if entry.is_absolute() else path.parent / entry)
    if not paths:
        raise DataError(f"{path}: the list file names no scenes")
    return paths


def _plain_hdf5(path: Path) -> bool:
    """An HDF5 file that is no sensor product (EMIT, PRISMA): its 3-D datasets may each be a scene. Anything that
    is not a regular file (a FIFO would block HDF5's open forever) is left to the probe, which refuses it."""
    if not_regular(path) is not None:
        return False
    try:
        return detect_format(path) == "hdf5"
    except DualSRError:
        return True  # reported when the entry is probed


def _multi_scene_keys(path: Path) -> list[str]:
    import h5py

    from dualsr_deploy.data.formats.hdf5 import cube_datasets
    from dualsr_deploy.data.formats.reader import numeric_3d

    try:
        with h5py.File(path, "r") as handle:
            arrays = cube_datasets(handle)
    except OSError:
        return []  # reported when the entry is probed
    return [name for name, (shape, dtype) in arrays.items() if numeric_3d(shape, dtype)]


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies under ``root`` as written (``..`` resolved, symbolic links not followed: a link
    placed inside the archive is the user's choice, a list entry climbing out of it is not)."""
    lexical = Path(os.path.normpath(os.path.abspath(path)))
    return lexical.is_relative_to(Path(os.path.normpath(os.path.abspath(root))))


def name_problem(name: str) -> str | None:
    """Why a scene name cannot name outputs (``..``, ``.`` or empty parts, a control character), or None."""
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "its name has an empty, '.' or '..' part, which would name outputs outside their place"
    if any(ord(char) < 32 or char == "\x7f" for char in name):
        return "its name holds a control character"
    return None


def _probe(
    root: Path,
    candidates: Sequence[tuple[str, Path, str | None]],
    layout: str | None,
    select: Callable[[str], bool] | None = None,
    *,
    remote: bool = False,
) -> Archive:
    entries = []
    kept = [c for c in candidates if select is None or select(c[0])]
    for name, path, key in kept:
        if is_vsi(path) and not remote:  # a list entry or link naming /vsicurl/…: never a way out of the archive
            why = "a GDAL virtual path (a remote object); give its URL (s3://…, https://…) as the archive instead"
            entries.append(ArchiveEntry(name, path, key, error=f"{path}: {why}"))
            continue
        if not _inside(path, root):
            error = f"{path}: outside the archive root {root} (pass --root to allow it)"
            entries.append(ArchiveEntry(name, path, key, error=error))
            continue
        problem = name_problem(name)
        if problem is not None:
            entries.append(ArchiveEntry(name, path, key, error=f"{path}: scene {name!r}: {problem}"))
            continue
        try:
            with _open(path, key, layout, Confinement.of(root, [path])) as reader:
                entries.append(
                    ArchiveEntry(
                        name,
                        path,
                        reader.key,
                        reader.format,
                        reader.shape,
                        str(reader.dtype),
                        wavelengths=tuple(reader.wavelengths) if reader.wavelengths else None,
                    )
                )
        except (DualSRError, OSError) as exc:
            entries.append(ArchiveEntry(name, path, key, error=str(exc)))
        except MemoryError:
            entries.append(
                ArchiveEntry(name, path, key, error=f"{path}: its header asks for more memory than there is")
            )
        except Exception as exc:  # whatever a hostile file makes a library raise is this entry's failure
            entries.append(ArchiveEntry(name, path, key, error=f"{path}: {type(exc).__name__}: {exc}"))
    archive = Archive(root, entries, layout=layout)
    archive.others = len(candidates) - len(kept)
    return archive


def _open(path: Path, key: str | None, layout: str | None, confine: Confinement) -> SceneReader:
    """Open one entry; an archive-wide key or layout applies to the formats that have them (MATLAB, HDF5, NumPy)."""
    if detect_format(path) in KEYED_FORMATS:
        return open_scene(path, key=key, layout=layout, confine=confine)
    return open_scene(path, confine=confine)
