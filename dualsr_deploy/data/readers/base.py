"""The reader contract: shape and dtype known from the header, pixels read lazily by window, then normalised."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from dualsr_deploy.data.normalise import Normalisation, check_finite
from dualsr_deploy.data.scene import GeoReference, Scene, SceneMeta, Window
from dualsr_deploy.errors import DataError, DualSRError

LAYOUTS = ("chw", "hwc", "cwh", "whc", "hcw", "wch")


def check_layout(layout: str, source: object) -> str:
    if layout not in LAYOUTS:
        raise DataError(f"{source}: layout must be one of {', '.join(LAYOUTS)} (axis order c=band, h=row, w=column)")
    return layout


def chw_shape(shape: Sequence[int], layout: str) -> tuple[int, int, int]:
    c, h, w = (int(shape[layout.index(axis)]) for axis in "chw")
    return c, h, w


def read_window(array: Any, layout: str, window: Window | None) -> np.ndarray:
    """Index an array-like (h5py dataset, memmap, ndarray) laid out as ``layout`` and return ``(C, h, w)``.

    Only the window is read from lazily indexable arrays.
    """
    index: list[slice] = []
    for axis in layout:
        if axis == "c" or window is None:
            index.append(slice(None))
        else:
            index.append(window.rows if axis == "h" else window.cols)
    data = np.asarray(array[tuple(index)])
    return np.ascontiguousarray(np.transpose(data, [layout.index(axis) for axis in "chw"]))


@contextmanager
def reading(source: object) -> Iterator[None]:
    """Turn whatever a third-party reader raises on a damaged file into a :class:`DataError` naming the file."""
    try:
        yield
    except DualSRError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise DataError(f"{source}: cannot read it ({type(exc).__name__}: {exc}); is the file complete?") from exc


class SceneReader(ABC):
    """An open scene file: facts from its header up front, pixels on request.

    Subclasses set ``format`` and implement :attr:`shape`, :attr:`dtype` and :meth:`_read`.
    """

    format: ClassVar[str]

    def __init__(self, path: Path, name: str, *, key: str | None = None, layout: str = "chw") -> None:
        self.path = path
        self.name = name
        self.key = key
        self.layout = layout
        self.notes: list[str] = []
        self.wavelengths: tuple[float, ...] | None = None
        self.georef: GeoReference | None = None
        self.attrs: dict[str, str] = {}
        # Rules that need scene statistics (max, percentile) read the whole scene once; later windows reuse it.
        self._resolved: dict[Normalisation, tuple[str, float]] = {}

    @property
    def source(self) -> str:
        return f"{self.path}" if self.key is None else f"{self.path} [{self.key}]"

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""

    @property
    @abstractmethod
    def dtype(self) -> np.dtype:
        """The dtype of the stored values."""

    @abstractmethod
    def _read(self, window: Window | None) -> np.ndarray:
        """Raw values ``(C, h, w)`` in the file's dtype."""

    def read_raw(self, window: Window | None = None) -> np.ndarray:
        """The stored values of ``window`` (all when ``None``) as ``(C, h, w)`` in the file's dtype."""
        c, h, w = self.shape
        if window is not None:
            try:
                window.check(h, w)
            except ValueError as exc:
                raise DataError(f"{self.source}: {exc}") from None
        with reading(self.source):
            data = self._read(window)
        expected = (c, h, w) if window is None else (c, window.height, window.width)
        if data.shape != expected:
            raise DataError(f"{self.source}: read {data.shape}, the header promised {expected}; is the file complete?")
        return data

    def load(self, normalise: Normalisation | None = None, window: Window | None = None) -> Scene:
        """The scene (or a window of it) as float32 in [0, 1], with its metadata."""
        normalise = normalise or Normalisation()
        raw = self.read_raw(window)
        if normalise not in self._resolved:
            whole = (lambda: raw) if window is None else (lambda: self.read_raw())
            self._resolved[normalise] = normalise.resolve(self.dtype, whole, self.source)
        rule, factor = self._resolved[normalise]
        cube, clipped = Normalisation.apply(raw, factor, self.source)
        notes = list(self.notes)
        if clipped:
            notes.append(f"{clipped} values outside [0, 1] after dividing by {factor:g} were clipped")
        meta = SceneMeta(
            source=str(self.path),
            format=self.format,
            key=self.key,
            layout=self.layout,
            dtype=str(self.dtype),
            normalisation=rule,
            scale_factor=factor,
            wavelengths=self.wavelengths,
            georef=self.georef if window is None else _window_georef(self.georef, window),
            attrs=dict(self.attrs),
            notes=tuple(notes),
        )
        return Scene(self.name, cube, meta)

    def resolve_in_strips(self, normalise: Normalisation, rows: int = 64) -> None:
        """Settle ``normalise``'s factor from a pass over row strips instead of one whole read, for scenes too
        large to load: the ``max`` rule and ``auto`` on float data need only the scene's range. (Percentiles need
        every value at once and are left to the whole read.)"""
        if normalise in self._resolved:
            return
        uses_range = normalise.rule == "max" or (
            normalise.rule == "auto" and self.dtype.kind == "f" and normalise.float_rule != "percentile"
        )
        if not uses_range:
            return
        _, height, width = self.shape
        low, high = np.inf, -np.inf
        for top in range(0, height, rows):
            raw = check_finite(self.read_raw(Window(top, 0, min(rows, height - top), width)), self.source)
            low, high = min(low, float(raw.min())), max(high, float(raw.max()))
        extremes = np.array([low, high])
        self._resolved[normalise] = normalise.resolve(self.dtype, lambda: extremes, self.source)

    def close(self) -> None:  # noqa: B027 - deliberately empty: readers without an open handle have nothing to do
        """Release the file; subclasses holding a handle close it."""

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _window_georef(georef: GeoReference | None, window: Window) -> GeoReference | None:
    if georef is None:
        return None
    a, b, c, d, e, f = georef.transform
    return GeoReference(
        (a, b, c + a * window.left + b * window.top, d, e, f + d * window.left + e * window.top), georef.crs
    )


def numeric_3d(shape: Sequence[int], dtype: np.dtype) -> bool:
    return len(shape) == 3 and dtype.kind in "uif"


def restore_written_meta(reader: SceneReader, text: str | bytes | None) -> None:
    """Take back what this package's writers stored (wavelengths, georeferencing, attributes, provenance)."""
    if text is None:
        return
    if isinstance(text, bytes):
        text = text.decode()
    try:
        meta = SceneMeta.from_json(text)
    except (ValueError, TypeError, KeyError):
        reader.notes.append("ignored unreadable dualsr metadata")
        return
    reader.wavelengths = reader.wavelengths or meta.wavelengths
    reader.georef = reader.georef or meta.georef
    reader.attrs.update(meta.attrs)
    reader.attrs.setdefault("origin_source", meta.source)
    reader.attrs.setdefault("origin_dtype", meta.dtype)
    reader.attrs.setdefault("origin_scale_factor", repr(meta.scale_factor))
