"""The reader contract: shape and dtype known from the header, pixels read lazily by window, then normalised."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from dualsr_deploy.data.confine import Confinement
from dualsr_deploy.data.metadata import band_indices, check_band_metadata, number
from dualsr_deploy.data.normalise import Normalisation, band_floor
from dualsr_deploy.data.scene import GeoReference, Scene, SceneMeta, Window
from dualsr_deploy.data.validity import Masking, find_validity, invalid_values
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
    return chw_copy(np.transpose(data, [layout.index(axis) for axis in "chw"]))


def chw_copy(view: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a ``(C, h, w)`` view (itself where it is one already). A bands-last product's (bands
    the fastest axis in memory: BIP, EMIT's NetCDF) is copied a row at a time, each row's transpose staying in cache:
    2× faster than one strided copy (128 × 1280 × 285 float32: 0.09 against 0.18 s), where for other layouts it
    would be slower."""
    if view.flags.c_contiguous:
        return view
    if abs(view.strides[0]) > min(abs(view.strides[1]), abs(view.strides[2])):
        return np.ascontiguousarray(view)
    out = np.empty(view.shape, view.dtype)
    for row in range(view.shape[1]):
        out[:, row] = view[:, row]
    return out


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


CLIPPED_NOTE = "{count} values above 1 after dividing by {factor} were clipped"
INVALID_NOTE = "{count} pixels are no-data or not finite in some good band"


def whole_notes(windows: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The notes of a scene read in windows that cover it once: the counted notes (:data:`CLIPPED_NOTE`,
    :data:`INVALID_NOTE`) summed over the windows, the others once; in the order they first appear."""
    totals: dict[str, int] = {}
    order: list[str] = []
    for notes in windows:
        for note in notes:
            count, _, rest = note.partition(" ")
            counted = count.isdigit() and (rest == INVALID_NOTE.partition(" ")[2] or rest.startswith("values above 1"))
            key = rest if counted else note
            if key not in totals:
                order.append(key)
                totals[key] = 0
            if counted:
                totals[key] += int(count)
    return tuple(f"{totals[key]} {key}" if totals.get(key) else key for key in order)


class SceneReader(ABC):
    """An open scene file: facts from its header up front, pixels on request.

    Subclasses set ``format`` and implement :attr:`shape`, :attr:`dtype` and :meth:`_read`.
    """

    format: ClassVar[str]
    full_range: ClassVar[bool] = False  # integers use their dtype's whole range (CAVE's PNGs)
    from_file: ClassVar[bool] = True  # False: values held in memory (an xarray block), no file to check

    def __init__(
        self,
        path: Path,
        name: str,
        *,
        key: str | None = None,
        layout: str = "chw",
        confine: Confinement | None = None,
    ) -> None:
        self.path = path
        # Where this scene's files may lie, and every file it opened (what --resume fingerprints).
        self.confine = confine or Confinement.around(path)
        self.files: list[Path] = []
        if self.from_file:
            self.claim(path, "scene file" if not path.is_dir() else "scene folder")
        self.name = name
        self.key = key
        self.layout = layout
        self.notes: list[str] = []
        self.wavelengths: tuple[float, ...] | None = None
        self.georef: GeoReference | None = None
        self.attrs: dict[str, str] = {}
        # What the file declares: no-data value, bad bands (0-based), the factor to divide by for its units, fwhm.
        self.nodata: float | None = None
        self.declared_bad: set[int] = set()
        self.declared_scale: float | None = None
        self.band_gains: tuple[float, ...] | None = None  # physical = gain · stored + offset, per band
        self.band_offsets: tuple[float, ...] | None = None
        self.band_names: tuple[str, ...] | None = None
        self.output_nodata: float | None = None  # what an output writes at no-data when the file declares no value
        self.fwhm: tuple[float, ...] | None = None
        # Scene statistics (bad bands, max, percentile) come from one whole read (or one pass over strips); later
        # windows reuse them.
        # (rule, factor, bad bands, band clip floors) per normalisation and masking
        self._resolved: dict[
            tuple[Normalisation, Masking], tuple[str, float, tuple[int, ...], tuple[float, ...] | None]
        ] = {}

    def validate(self) -> None:
        """Check what the file declared about its bands against the cube: per-band lists (wavelengths, FWHM, band
        names, gains, offsets) as long as it has bands and finite, bad bands inside it, a scale factor > 0
        (:func:`~dualsr_deploy.data.metadata.check_band_metadata`); a :class:`DataError` names the file."""
        check_band_metadata(
            self.source,
            self.shape[0],
            wavelengths=self.wavelengths,
            fwhm=self.fwhm,
            band_names=self.band_names,
            gains=self.band_gains,
            offsets=self.band_offsets,
            bad=self.declared_bad,
            scale=self.declared_scale,
        )

    def claim(self, path: Path, what: str = "file") -> Path:
        """``path``, checked by the archive's rule (:mod:`dualsr_deploy.data.confine`) and recorded as one of this
        scene's files; a :class:`DataError` names a file that may not be read."""
        if path.is_dir() and path == self.path:
            if path not in self.files:
                self.files.append(path)
            return path
        self.confine.check(path, what)
        if path not in self.files:
            self.files.append(path)
        return path

    def claim_if_present(self, path: Path, what: str = "file") -> Path | None:
        """``path`` claimed when something is there (a sidecar that may be absent); None when nothing is."""
        if not os.path.lexists(path):
            return None
        return self.claim(path, what)

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

    def physical(self, raw: np.ndarray) -> np.ndarray:
        """Stored values → physical ones through the per-band gain and offset (unchanged without them)."""
        if self.band_gains is None and self.band_offsets is None:
            return raw
        count = raw.shape[0]
        gains = np.asarray(self.band_gains or (1.0,) * count, dtype=np.float64)[:, None, None]
        offsets = np.asarray(self.band_offsets or (0.0,) * count, dtype=np.float64)[:, None, None]
        return raw.astype(np.float64) * gains + offsets

    @property
    def physical_dtype(self) -> np.dtype:
        return np.dtype(np.float64) if self.band_gains is not None or self.band_offsets is not None else self.dtype

    def pixel_invalid(self, raw: np.ndarray, masking: Masking, window: Window | None) -> np.ndarray | None:
        """``(h, w)`` bool: pixels of ``window`` a format marks no-data as a whole (PRISMA: an all-zero spectrum;
        EMIT: its MASK file's flags, when ``masking.product_masks``); None: none."""
        return None

    def invalid(self, raw: np.ndarray, masking: Masking, window: Window | None = None) -> np.ndarray:
        """``(C, h, w)`` bool: the invalid values of ``raw`` (``window`` of the scene): non-finite, no-data values,
        the format's own rule."""
        invalid = invalid_values(raw, self.nodata_values(masking))
        whole = self.pixel_invalid(raw, masking, window)
        if whole is not None:
            invalid |= whole[None]
        return invalid

    def nodata_values(self, masking: Masking) -> tuple[float, ...]:
        return ((self.nodata,) if self.nodata is not None else ()) + masking.nodata

    def _bad_named(self, masking: Masking) -> set[int]:
        """Bad bands the file declares and ``--bad-bands`` names."""
        bad = set(self.declared_bad)
        if masking.bad_bands is not None:
            bad |= masking.bad_bands.resolve(self.shape[0], self.wavelengths, self.source)
        return bad

    def _statistics(
        self, raw: np.ndarray, normalise: Normalisation, masking: Masking, invalid: np.ndarray | None = None
    ) -> tuple[str, float, tuple[int, ...], tuple[float, ...] | None]:
        """The normalisation rule and factor, the bad bands and the bands' clip floors, from the whole scene ``raw``
        (``invalid``: its invalid values, when already known); the factor comes from the valid pixels of the good
        bands only."""
        invalid = self.invalid(raw, masking) if invalid is None else invalid
        validity = find_validity(raw, invalid, self._bad_named(masking), self.source)
        rule, factor = normalise.resolve(
            self.physical_dtype,
            lambda: self.physical(raw)[validity.good][:, validity.valid],
            self.source,
            declared=self.declared_scale,
            full_range=self.full_range,
        )
        minima = np.zeros(raw.shape[0])
        if validity.valid.any():
            minima[validity.good] = self.physical(raw)[validity.good][:, validity.valid].min(axis=1)
        return rule, factor, validity.bad_bands, band_floor(minima, factor)

    def load(
        self, normalise: Normalisation | None = None, window: Window | None = None, masking: Masking | None = None
    ) -> Scene:
        """The scene (or a window of it) as float32 in [0, 1] with its validity and metadata: invalid pixels are
        0 in the cube and False in ``valid``; bad bands' raw values are kept in ``passthrough``."""
        normalise = normalise or Normalisation()
        masking = masking or Masking()
        raw = self.read_raw(window)
        invalid = self.invalid(raw, masking, window)
        key = (normalise, masking)
        if key not in self._resolved:  # from the whole scene, whose invalid values a whole read has already
            if window is None:
                self._resolved[key] = self._statistics(raw, normalise, masking, invalid)
            else:
                self._resolved[key] = self._statistics(self.read_raw(), normalise, masking)
        rule, factor, bad, floor = self._resolved[key]
        good = [i for i in range(raw.shape[0]) if i not in set(bad)]
        pixel_ok = ~invalid[good].any(axis=0)
        blank = None if pixel_ok.all() else np.logical_not(pixel_ok)
        cube, clipped = Normalisation.apply(self.physical(raw), factor, self.source, blank=blank, blank_bands=bad)
        notes = list(self.notes)
        if clipped:
            notes.append(CLIPPED_NOTE.format(count=clipped, factor=f"{factor:g}"))
        invalid_count = int(pixel_ok.size - np.count_nonzero(pixel_ok))
        if invalid_count:
            notes.append(INVALID_NOTE.format(count=invalid_count))
        if bad:
            notes.append(f"bad bands (0-based): {_ranges(bad)}")
        meta = SceneMeta(
            source=str(self.path),
            format=self.format,
            key=self.key,
            layout=self.layout,
            dtype=str(self.dtype.newbyteorder("=")),  # the values, not their byte order (each file keeps its own)
            normalisation=rule,
            scale_factor=factor,
            wavelengths=self.wavelengths,
            fwhm=self.fwhm,
            nodata=self.nodata
            if self.nodata is not None
            else (masking.nodata[0] if masking.nodata else self.output_nodata),
            band_gains=self.band_gains,
            band_offsets=self.band_offsets,
            band_names=self.band_names,
            bad_bands=bad,
            band_floor=floor,
            georef=self.georef if window is None else _window_georef(self.georef, window),
            attrs=dict(self.attrs),
            notes=tuple(notes),
        )
        valid = None if pixel_ok.all() else np.asarray(pixel_ok)
        passthrough = np.ascontiguousarray(raw[list(bad)]) if bad else None
        return Scene(self.name, cube, meta, valid=valid, passthrough=passthrough)

    def resolve_in_strips(self, normalise: Normalisation, rows: int = 64, masking: Masking | None = None) -> None:
        """Settle the scene statistics from a pass over row strips instead of one whole read, for scenes too large
        to load: the bad bands (bands with no valid value), and ``normalise``'s factor where it needs only the
        range of the valid values (``max``, ``auto``). Percentiles need every value at once and are left to the
        whole read."""
        masking = masking or Masking()
        key = (normalise, masking)
        uses_range = normalise.rule == "max" or (normalise.rule == "auto" and normalise.float_rule != "percentile")
        if key in self._resolved or not uses_range:
            return
        bands, height, width = self.shape
        named = self._bad_named(masking)
        # One pass. A band with no valid value in a strip is either bad (no valid value anywhere) or makes every pixel
        # of that strip invalid: each strip's range is taken over the bands valid in it somewhere, and kept only if
        # the bands without a valid value in it are the scene's own (the two-pass result, with half the reads).
        empty_everywhere = np.ones(bands, dtype=bool)
        strips: list[tuple[np.ndarray, float, float, np.ndarray]] = []
        for top in range(0, height, rows):
            strip = Window(top, 0, min(rows, height - top), width)
            raw = self.read_raw(strip)
            invalid = self.invalid(raw, masking, strip)
            empty = np.asarray(invalid.reshape(bands, -1).all(axis=1), dtype=bool)
            empty_everywhere &= empty
            good = [i for i in range(bands) if i not in named and not empty[i]]
            pixel_ok = ~invalid[good].any(axis=0) if good else np.zeros(invalid.shape[1:], dtype=bool)
            if pixel_ok.any():  # each band's range over the valid pixels (every pixel: no copy), kept for the good
                physical = self.physical(raw)
                values = physical.reshape(bands, -1) if pixel_ok.all() else physical[:, pixel_ok]
                low_per_band, high_per_band = values.min(axis=1)[good], values.max(axis=1)[good]
                minima = np.full(bands, np.inf)
                minima[good] = low_per_band
                strips.append((empty, float(low_per_band.min()), float(high_per_band.max()), minima))
        bad = named | {int(i) for i in np.flatnonzero(empty_everywhere)}
        good = [i for i in range(bands) if i not in bad]
        if not good:
            raise DataError(f"{self.source}: no band holds a valid value (all are bad or no-data)")
        unnamed = np.ones(bands, dtype=bool)
        unnamed[list(named)] = False
        low, high = np.inf, -np.inf
        minima = np.full(bands, np.inf)
        for empty, strip_low, strip_high, strip_minima in strips:
            if np.array_equal(empty & unnamed, empty_everywhere & unnamed):  # else no pixel of it is valid
                low, high = min(low, strip_low), max(high, strip_high)
                minima = np.minimum(minima, strip_minima)
        if low > high:
            raise DataError(f"{self.source}: no pixel is valid in every good band (no-data everywhere)")
        extremes = np.array([low, high])
        rule, factor = normalise.resolve(
            self.physical_dtype, lambda: extremes, self.source, declared=self.declared_scale, full_range=self.full_range
        )
        minima[~np.isfinite(minima)] = 0.0
        self._resolved[key] = (rule, factor, tuple(sorted(bad)), band_floor(minima, factor))

    def close(self) -> None:  # noqa: B027 - deliberately empty: readers without an open handle have nothing to do
        """Release the file; subclasses holding a handle close it."""

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _ranges(indices: Sequence[int]) -> str:
    """``0-4,103-110``: sorted indices as ranges."""
    parts: list[str] = []
    for index in sorted(indices):
        if parts and index == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{index}"
        else:
            parts.append(str(index))
    return ",".join(parts)


def _window_georef(georef: GeoReference | None, window: Window) -> GeoReference | None:
    if georef is None:
        return None
    a, b, c, d, e, f = georef.transform
    return GeoReference(
        (a, b, c + a * window.left + b * window.top, d, e, f + d * window.left + e * window.top), georef.crs
    )


def numeric_3d(shape: Sequence[int], dtype: np.dtype) -> bool:
    return len(shape) == 3 and dtype.kind in "uif"


def check_dimension_scales(handle: Any, path: Path) -> None:
    """Refuse a netCDF-4/HDF5 file whose dimension scales disagree with the variables attached to them (netCDF
    libraries and xarray cannot open it, and its coordinates would be written back wrong)."""
    import h5py

    problems: list[str] = []

    def visit(name: str, item: Any) -> None:
        if not isinstance(item, h5py.Dataset) or "DIMENSION_LIST" not in item.attrs:
            return
        for axis, dim in enumerate(item.dims):
            for scale in dim.values():
                if scale.ndim == 1 and scale.shape[0] != item.shape[axis]:
                    problems.append(
                        f"{name} is {item.shape[axis]} long along axis {axis}, its dimension "
                        f"{scale.name.rsplit('/', 1)[-1]} {scale.shape[0]}"
                    )

    try:
        handle.visititems(visit)
    except (KeyError, RuntimeError, OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable dimension scales ({error})") from None
    if problems:
        raise DataError(f"{path}: dimension scales disagree with their variables: {'; '.join(problems[:3])}")


def restore_written_meta(reader: SceneReader, text: str | bytes | None) -> None:
    """Take back what this package's writers stored (wavelengths, georeferencing, attributes, provenance). The
    text is a claim like any other: unreadable JSON is noted and ignored, values of the wrong kind are a
    :class:`DataError` naming the file (checked with the rest by :meth:`SceneReader.validate`)."""
    if text is None:
        return
    try:
        if isinstance(text, bytes):
            text = text.decode()
        meta = SceneMeta.from_json(text)
        scale_factor = number(meta.scale_factor, "its dualsr metadata's scale_factor", reader.source)
        nodata = (
            None
            if meta.nodata is None
            else number(meta.nodata, "its dualsr metadata's nodata", reader.source, finite=False)
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        reader.notes.append("ignored unreadable dualsr metadata")
        return
    reader.wavelengths = reader.wavelengths or meta.wavelengths
    reader.fwhm = reader.fwhm or meta.fwhm
    reader.band_names = reader.band_names or meta.band_names
    reader.georef = reader.georef or meta.georef
    if reader.nodata is None and nodata is not None:
        reader.nodata = nodata
    reader.declared_bad |= band_indices(
        meta.bad_bands, reader.shape[0], "its dualsr metadata's bad_bands", reader.source
    )
    if meta.attrs.get("dualsr_units") == "source":  # written back in stored units: the same gains and offsets
        reader.band_gains = reader.band_gains or meta.band_gains
        reader.band_offsets = reader.band_offsets or meta.band_offsets
    if meta.attrs.get("dualsr_units") == "source" and reader.declared_scale is None and scale_factor != 1.0:
        reader.declared_scale = scale_factor  # written back in the source's units: the same factor
    reader.attrs.update(meta.attrs)
    reader.attrs.setdefault("origin_source", str(meta.source))
    reader.attrs.setdefault("origin_dtype", str(meta.dtype))
    reader.attrs.setdefault("origin_scale_factor", repr(scale_factor))
