"""Which objects of a remote listing make a scene (:func:`scene_groups`), and staging them (:func:`stage`): see
:mod:`dualsr_deploy.data.remote`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dualsr_deploy.data.remote import Remote, RemoteListing, RemoteObject
from dualsr_deploy.errors import RemoteError


@dataclass(frozen=True)
class SceneGroup:
    """One scene of a remote archive: its ``name`` (as a local run of the same tree names it), the ``scene``'s
    relative path (a file, or a CAVE folder), and every object staged to read it."""

    name: str
    scene: str
    objects: tuple[RemoteObject, ...]

    @property
    def nbytes(self) -> int:
        return sum(obj.size or 0 for obj in self.objects)

    @property
    def url(self) -> str:
        main = next((obj for obj in self.objects if obj.relative == self.scene), None)
        if main is not None:
            return main.url
        first = self.objects[0]
        return first.url[: len(first.url) - len(first.relative)] + self.scene


@dataclass
class RemoteScenes:
    """A listing sorted into scenes (:func:`scene_groups`): ``groups``; ``skipped``, (relative path, why) for
    objects read as no scene; ``failed``, (name, url, why) for objects that are nobody's scene and say why."""

    base: str = ""
    groups: list[SceneGroup] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    others: int = 0  # scenes left to other shards


_PARTNERS = (("_RFL_", "_MASK_"), ("SPECTRAL_IMAGE", "METADATA"))  # products read with a twin granule or file


def scene_groups(listing: RemoteListing, skeleton: Path) -> RemoteScenes:
    """Sort ``listing`` into scenes by the local walk's own rules, on a skeleton of empty files under ``skeleton``
    (a folder the caller owns and removes)."""
    from dualsr_deploy.data.archive import _name, _walk

    by_relative = {obj.relative: obj for obj in listing.objects}
    result = RemoteScenes(listing.base)
    for obj in listing.objects:
        path = skeleton / obj.relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError as error:  # a key that is a file here and a folder there
            result.failed.append((obj.relative, obj.url, f"{obj.url}: cannot be laid out locally ({error.strerror})"))
    found, failures, skipped = _walk(skeleton, True)
    result.skipped = [(s.path.relative_to(skeleton).as_posix(), s.reason) for s in skipped]
    for entry in failures:
        result.failed.append((entry.name, listing.base + entry.name, entry.error or "unreadable"))
    for path in found:
        relative = path.relative_to(skeleton).as_posix()
        name = _name(path, skeleton)
        if path.is_dir():  # a CAVE scene folder: all of it
            members = [obj for key, obj in by_relative.items() if key.startswith(relative + "/")]
        else:
            members = _with_companions(relative, by_relative)
        result.groups.append(SceneGroup(name, relative, tuple(sorted(members, key=lambda o: o.relative))))
    return result


def _with_companions(relative: str, objects: dict[str, RemoteObject]) -> list[RemoteObject]:
    """The scene object and what its readers may open beside it: objects of its folder named by its stem (an ENVI
    data file, GDAL's sidecars, a checksum) and a product's twin (EMIT's mask granule, EnMAP's metadata)."""
    folder, _, file_name = relative.rpartition("/")
    prefix = f"{folder}/" if folder else ""
    stem = file_name.split(".", 1)[0]
    twins = [file_name.replace(a, b, 1).split(".", 1)[0] for a, b in _PARTNERS if a in file_name]
    if "SPECTRAL_IMAGE" in file_name:
        twins.append(file_name[: file_name.index("SPECTRAL_IMAGE")] + "METADATA")
    members = []
    for key, obj in objects.items():
        if not key.startswith(prefix) or "/" in key[len(prefix) :]:
            continue
        own = key[len(prefix) :]
        if own == file_name or own.split(".", 1)[0] == stem or any(own.startswith(t) for t in twins):
            members.append(obj)
    return members


def stage(remote: Remote, group: SceneGroup, folder: Path) -> None:
    """Download every object of ``group`` under ``folder`` at its relative path."""
    for obj in group.objects:
        target = folder / obj.relative
        if not target.resolve().is_relative_to(folder.resolve()):  # key_problem refused these; never written
            raise RemoteError(f"{obj.url}: its key leaves the staging folder")
        remote.fetch(obj, target)


_ENVI_DATA = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".IMG", ".DAT", ".RAW", ".BSQ", ".BIL", ".BIP")


def companion_names(url: str) -> list[str]:
    """URLs of the files a reader may open beside ``url`` (see :meth:`Remote._companions`)."""
    folder, _, name = url.rpartition("/")
    names = [f"{name}.aux.xml"]
    if name.lower().endswith(".hdr"):
        title = name[:-4]
        names += [title + suffix for suffix in _ENVI_DATA]
    for a, b in _PARTNERS[:1]:
        if a in name:
            names.append(name.replace(a, b, 1))
    return [f"{folder}/{candidate}" for candidate in names if candidate != name]


__all__ = ["RemoteScenes", "SceneGroup", "companion_names", "scene_groups", "stage"]
