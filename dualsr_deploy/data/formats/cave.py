"""The CAVE database layout: one PNG per band, ``<scene>_ms/[<scene>_ms/]<scene>_ms_NN.png``.

Bands are 16-bit grayscale (divide by 65535), except the ``watercolors`` scene, stored as 8-bit RGBA with
R = G = B. The ``<scene>_RGB.bmp`` beside them is an sRGB rendering, not a band, and is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.formats.reader import SceneReader, reading
from dualsr_deploy.data.formats.row import Format
from dualsr_deploy.data.scene import Window
from dualsr_deploy.errors import DataError

_BAND = re.compile(r"^(?P<stem>.+)_(?P<index>\d{2,})\.png$", re.IGNORECASE)
_MODES: dict[str, np.dtype] = {
    "I;16": np.dtype(np.uint16),
    "I;16B": np.dtype(np.uint16),
    "I": np.dtype(np.uint16),
    "L": np.dtype(np.uint8),
}


def band_files(folder: Path) -> list[Path] | None:
    """The band PNGs of a CAVE scene folder (directly inside or one level down), in band order; None if none."""
    for candidate in (folder, folder / folder.name):
        if not candidate.is_dir():
            continue
        bands = sorted(
            (int(match["index"]), path)
            for path in candidate.iterdir()
            if (match := _BAND.match(path.name)) and (path.is_file() or path.is_symlink())
        )
        if bands:
            indices = [index for index, _ in bands]
            if indices != list(range(1, len(bands) + 1)):
                missing = sorted(set(range(1, max(indices) + 1)) - set(indices))
                raise DataError(f"{folder}: CAVE band files are not numbered 1..{len(bands)} (missing {missing})")
            return [path for _, path in bands]
    return None


class CaveReader(SceneReader):
    format = "cave"
    full_range = True  # 16-bit PNGs over the whole range: divide by 65535, as the paper does

    def __init__(self, folder: Path, *, confine: Confinement | None = None) -> None:
        files = band_files(folder)
        if files is None:
            raise DataError(f"{folder}: no CAVE band files (<scene>_ms_NN.png) in it or in {folder.name}/")
        name = folder.name[:-3] if folder.name.endswith("_ms") else folder.name
        super().__init__(folder, name, confine=confine or Confinement.of(folder.parent, [folder]))
        self.bands = [self.claim(path, "band image") for path in files]
        from PIL import Image

        with reading(files[0]), Image.open(files[0]) as first:  # a PNG declaring 20000² pixels: PIL refuses it
            self._size = first.size
            self._mode = first.mode
        self._dtype: np.dtype
        if self._mode in ("RGBA", "RGB"):
            self._dtype = np.dtype(np.uint8)
            self.notes.append(f"bands stored as 8-bit {self._mode} with R = G = B; read the R channel")
        elif self._mode in _MODES:
            self._dtype = _MODES[self._mode]
        else:
            raise DataError(f"{files[0]}: unexpected PNG mode {self._mode!r} for a CAVE band")
        if len(files) == 31:
            self.wavelengths = tuple(float(400 + 10 * i) for i in range(31))

    @property
    def shape(self) -> tuple[int, int, int]:
        width, height = self._size
        return len(self.bands), height, width

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, window: Window | None) -> np.ndarray:
        from PIL import Image

        _, height, width = self.shape
        box = (0, 0, width, height) if window is None else (window.left, window.top, *_end(window))
        planes = []
        for path in self.bands:
            with Image.open(path) as image:
                if image.size != self._size or image.mode != self._mode:
                    raise DataError(f"{path}: {image.mode} {image.size}, other bands are {self._mode} {self._size}")
                plane = np.asarray(image.crop(box) if window is not None else image)
            if plane.ndim == 3:
                if not (np.array_equal(plane[..., 0], plane[..., 1]) and np.array_equal(plane[..., 0], plane[..., 2])):
                    raise DataError(f"{path}: colour band image with R ≠ G ≠ B; a CAVE band must be gray")
                plane = plane[..., 0]
            planes.append(plane.astype(self._dtype, copy=False))
        return np.stack(planes)


def _end(window: Window) -> tuple[int, int]:
    return window.left + window.width, window.top + window.height


CAVE = Format(
    "cave",
    "CAVE scene folder (a 16-bit PNG per band)",
    sniff=lambda probe: probe.is_dir,
    reader=CaveReader,
    output=".h5",
)
