"""STAC in: an ItemCollection, a Catalog (or Collection) or one Item, as a JSON file or URL, read as an archive, as the
OGC application packages of NASA's and ESA's platforms stage a tool's inputs.

- Each Item is one scene, named by its ``id``. Its asset is chosen by role and media type: an asset with the
  ``data`` role (else any) whose media type or suffix is a format this package reads (NetCDF, HDF5, GeoTIFF/COG, ENVI,
  MATLAB, NumPy); the Item's other assets beside it whose names start with its stem (an ENVI header and data file, a
  product's sidecars) are read with it.
- Hrefs are claims: relative ones are resolved against the document that holds them; a remote document may name only
  remote objects (never a local path), a local one local files inside its folder (or ``--root``) or remote objects.
  Catalogs are followed through ``child`` and ``item`` links to a bounded depth, each document read once.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from dualsr_deploy.data.archive import Archive, name_problem, open_paths
from dualsr_deploy.data.remote import is_url
from dualsr_deploy.errors import DataError

MAX_DEPTH = 8
MAX_DOCUMENTS = 100_000
STAC_TYPES = frozenset({"FeatureCollection", "Feature", "Catalog", "Collection"})
_READABLE = (  # (media type fragment, suffixes), in order of preference
    ("netcdf", (".nc", ".nc4")),
    ("hdf5", (".h5", ".hdf5", ".he5")),
    ("tiff", (".tif", ".tiff")),
    ("envi", (".hdr",)),
    ("matlab", (".mat",)),
    ("npy", (".npy",)),
)


_NOT_SCENES = frozenset({"quality", "reference", "thumbnail", "overview", "visual"})  # roles of no spectral scene


@dataclass(frozen=True)
class StacScene:
    """One Item as a scene: ``name`` (its id), ``href`` (the chosen asset: a URL or an absolute path), ``companions``
    (the Item's other assets read with it), ``item`` (where the Item was read, for messages)."""

    name: str
    href: str
    companions: tuple[str, ...] = ()
    item: str = ""


@dataclass
class StacArchive:
    """What :func:`read_stac` found: ``scenes``, and ``failed`` (name, where, why) for Items that are no scene."""

    base: str
    scenes: list[StacScene] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def remote(self) -> bool:
        return any(is_url(scene.href) for scene in self.scenes)


def is_stac(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a STAC document (a ``.json`` file or URL holding an ItemCollection, Catalog, Collection
    or Item); a local file is looked into, a URL is taken by its suffix."""
    text = os.fspath(spec)
    if not urlsplit(text).path.lower().endswith(".json"):
        return False
    if is_url(text):
        return True
    path = Path(text)
    if not path.is_file():
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
        return json.loads(head).get("type") in STAC_TYPES
    except (OSError, ValueError, AttributeError):
        return False


def read_stac(spec: str, fetch: Callable[[str], bytes], root: Path | None = None) -> StacArchive:
    """The scenes of the STAC document ``spec``; ``fetch(url)`` reads a remote document's bytes. Local files must
    lie inside ``root`` (default: the document's folder)."""
    remote = is_url(spec)
    base = spec if remote else str(Path(spec).resolve())
    boundary = None if remote else (root.resolve() if root is not None else Path(base).parent)
    archive = StacArchive(base)
    seen: set[str] = set()
    names: set[str] = set()

    def load(where: str) -> dict[str, Any] | None:
        try:
            data = fetch(where) if is_url(where) else Path(where).read_bytes()
            document = json.loads(data)
        except (OSError, ValueError, DataError) as error:
            archive.failed.append((Path(urlsplit(where).path).stem, where, f"{where}: not a STAC document ({error})"))
            return None
        if not isinstance(document, dict) or document.get("type") not in STAC_TYPES:
            archive.failed.append((Path(urlsplit(where).path).stem, where, f"{where}: not a STAC document"))
            return None
        return document

    def visit(where: str, depth: int) -> None:
        if where in seen or len(seen) >= MAX_DOCUMENTS:
            return
        seen.add(where)
        document = load(where)
        if document is None:
            return
        kind = document["type"]
        if kind == "Feature":
            item(document, where)
        elif kind == "FeatureCollection":
            for feature in document.get("features") or []:
                if isinstance(feature, dict):
                    item(feature, where)
        elif depth < MAX_DEPTH:
            for link in document.get("links") or []:
                if (
                    isinstance(link, dict)
                    and link.get("rel") in ("item", "child")
                    and isinstance(link.get("href"), str)
                ):
                    target = resolve(link["href"], where)
                    if isinstance(target, str):
                        visit(target, depth + 1)
                    else:
                        archive.failed.append((Path(link["href"]).stem, link["href"], f"{where}: {target[1]}"))

    def resolve(href: str, where: str) -> str | tuple[None, str]:
        """The absolute URL or path of ``href`` met in the document at ``where``, or (None, why) when refused."""
        if is_url(href):
            return href
        if "://" in href or href.startswith("file:"):
            return None, f"{href}: a scheme this package does not read"
        if is_url(where):
            if href.startswith("/"):
                return None, f"{href}: a remote document names a local path"
            return urljoin(where, href)
        path = Path(href) if os.path.isabs(href) else Path(where).parent / href
        normal = Path(os.path.normpath(path))
        assert boundary is not None
        if not normal.is_relative_to(boundary):
            return None, f"{href}: outside the archive root {boundary} (pass --root to allow it)"
        return str(normal)

    def item(feature: dict[str, Any], where: str) -> None:
        ident = feature.get("id")
        name = ident if isinstance(ident, str) else ""
        problem = name_problem(name) if name else "an Item without an id"
        if problem is not None or name in names:
            why = problem or "a second Item with this id"
            archive.failed.append((name or "?", where, f"{where}: Item {name!r}: {why}"))
            return
        names.add(name)
        assets = feature.get("assets") if isinstance(feature.get("assets"), dict) else {}
        chosen = choose_asset(assets or {})
        if chosen is None:
            kinds = sorted({str(a.get("type")) for a in (assets or {}).values() if isinstance(a, dict)})
            archive.failed.append((name, where, f"{where}: Item {name!r}: no asset in a format this reads ({kinds})"))
            return
        key, href = chosen
        target = resolve(href, where)
        if not isinstance(target, str):
            archive.failed.append((name, where, f"{where}: Item {name!r}: {target[1]}"))
            return
        companions = []
        folder, stem = posixpath.split(target)[0], posixpath.basename(target).split(".", 1)[0]
        for other_key, asset in (assets or {}).items():
            if other_key == key or not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
                continue
            other = resolve(asset["href"], where)
            same_folder = isinstance(other, str) and posixpath.split(other)[0] == folder
            if same_folder and posixpath.basename(str(other)).split(".", 1)[0] == stem:
                companions.append(str(other))
        archive.scenes.append(StacScene(name, target, tuple(companions), where))

    visit(base, 0)
    return archive


def stac_archive(stac: StacArchive, root: Path | None, layout: str | None = None) -> Archive:
    """The local Items of ``stac`` as an :class:`~dualsr_deploy.data.archive.Archive` (scenes named by Item id,
    confined to ``root``, default the document's folder); its failed Items are failed entries."""
    named = [(scene.name, Path(scene.href)) for scene in stac.scenes]
    failed = [(name, Path(where), why) for name, where, why in stac.failed]
    return open_paths(root or Path(stac.base).parent, named, failed, layout)


def choose_asset(assets: dict[str, Any]) -> tuple[str, str] | None:
    """(key, href) of the asset a scene is read from: by role ``data`` first, then by media type or suffix in the
    order of :data:`_READABLE`; None when no asset is in a format this package reads."""
    usable = [
        (key, asset)
        for key, asset in sorted(assets.items(), key=lambda pair: pair[0] != "data")  # the asset called data first
        if isinstance(asset, dict)
        and isinstance(asset.get("href"), str)
        and not (isinstance(asset.get("roles"), list) and set(map(str, asset["roles"])) & _NOT_SCENES)
    ]
    for wanted_role in (True, False):
        for fragment, suffixes in _READABLE:
            for key, asset in usable:
                roles = asset.get("roles")
                if wanted_role and not (isinstance(roles, list) and "data" in roles):
                    continue
                media = str(asset.get("type") or "").lower()
                suffix = posixpath.splitext(urlsplit(asset["href"]).path)[1].lower()
                if fragment in media or suffix in suffixes:
                    return key, str(asset["href"])
    return None


__all__ = ["StacArchive", "StacScene", "choose_asset", "is_stac", "read_stac", "stac_archive"]
