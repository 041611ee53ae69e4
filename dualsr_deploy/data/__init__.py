"""Scenes in and out: readers, writers, archives, degradation, synthetic scenes and training patches.

Everything downstream (train, infer, eval) sees one :class:`~dualsr_deploy.data.scene.Scene`: a name, a cube
``(C, H, W)`` float32 in [0, 1] and :class:`~dualsr_deploy.data.scene.SceneMeta`.
"""

from dualsr_deploy.data.archive import Archive, ArchiveEntry, open_archive
from dualsr_deploy.data.formats import open_scene, open_strips, read_scene, write_scene
from dualsr_deploy.data.normalise import Normalisation
from dualsr_deploy.data.scene import GeoReference, Scene, SceneMeta, Window

__all__ = [
    "Archive",
    "ArchiveEntry",
    "GeoReference",
    "Normalisation",
    "Scene",
    "SceneMeta",
    "Window",
    "open_archive",
    "open_scene",
    "open_strips",
    "read_scene",
    "write_scene",
]
