"""The one type every stage sees: a named cube ``(C, H, W)`` float32 in [0, 1] with where it came from."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dualsr_deploy.data.validity import representable
from dualsr_deploy.errors import DataError

CONVERT_BLOCK = 1 << 22  # values converted in float64 at a time by Scene.raw (32 MiB): no cube-sized temporary


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels: rows ``top .. top+height``, columns ``left .. left+width`` (0-based, end exclusive)."""

    top: int
    left: int
    height: int
    width: int

    def check(self, height: int, width: int) -> None:
        if self.top < 0 or self.left < 0 or self.height < 1 or self.width < 1:
            raise ValueError(f"window {self} must have top, left >= 0 and a positive size")
        if self.top + self.height > height or self.left + self.width > width:
            raise ValueError(f"window {self} reaches outside the {height}×{width} scene")

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.width)


@dataclass(frozen=True)
class GeoReference:
    """Where the pixels lie on the ground: an affine pixel→map transform and its coordinate reference system.

    ``transform`` is ``(a, b, c, d, e, f)`` as in rasterio/affine: ``x = a·col + b·row + c``,
    ``y = d·col + e·row + f``. ``crs`` is WKT (or any string GDAL accepts), ``None`` when unknown.
    """

    transform: tuple[float, float, float, float, float, float]
    crs: str | None = None

    def scaled(self, factor: float) -> GeoReference:
        """The reference of the same area sampled ``factor`` times more finely (pixels 1/factor the size)."""
        a, b, c, d, e, f = self.transform
        return GeoReference((a / factor, b / factor, c, d / factor, e / factor, f), self.crs)


@dataclass(frozen=True)
class SceneMeta:
    """Provenance of a scene, enough to write results back in the source's units and georeferencing.

    ``cube = raw / scale_factor`` where ``raw`` is the file's data as ``dtype``; ``normalisation`` names the
    rule that chose ``scale_factor`` (see :class:`~dualsr_deploy.data.normalise.Normalisation`).
    """

    source: str
    format: str
    key: str | None = None
    layout: str = "chw"
    dtype: str = "float32"
    normalisation: str = "none"
    scale_factor: float = 1.0
    wavelengths: tuple[float, ...] | None = None
    fwhm: tuple[float, ...] | None = None
    nodata: float | None = None  # the file's declared no-data value (written back on output)
    bad_bands: tuple[int, ...] = ()  # 0-based; not super-resolved (nearest-neighbour upsampled, flags kept)
    # per band, the lower clip bound in normalised units: min(0, the band's minimum over valid LR pixels); None when
    # every band's minimum is ≥ 0, so that --clip is [0, 1] as in the published code
    band_floor: tuple[float, ...] | None = None
    # per-band physical = gain · stored + offset (ENVI data gain/offset values, GeoTIFF band scales/offsets); the
    # cube is the physical value over scale_factor
    band_gains: tuple[float, ...] | None = None
    band_offsets: tuple[float, ...] | None = None
    band_names: tuple[str, ...] | None = None
    georef: GeoReference | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # where the source lives when ``source`` is a local copy of it (a staged object's URL): what provenance names,
    # while ``source`` stays the file writers copy the source's structure and tags from
    origin: str | None = None

    def replace(self, **changes: Any) -> SceneMeta:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Provenance as written into outputs: ``source`` is the origin where there is one (a local copy's path is
        no-one's business once the run ends)."""
        data = dataclasses.asdict(self)
        data["attrs"] = dict(self.attrs)
        origin = data.pop("origin")
        if origin:
            data["source"] = origin
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("wavelengths", "fwhm", "band_gains", "band_offsets", "band_floor"):
            if values.get(name) is not None:
                values[name] = tuple(float(w) for w in values[name])
        values["bad_bands"] = tuple(int(b) for b in values.get("bad_bands") or ())
        if values.get("band_names") is not None:
            values["band_names"] = tuple(str(n) for n in values["band_names"])
        if values.get("georef") is not None:
            geo = values["georef"]
            values["georef"] = GeoReference(tuple(float(t) for t in geo["transform"]), geo.get("crs"))  # type: ignore[arg-type]
        values["attrs"] = {str(k): str(v) for k, v in (values.get("attrs") or {}).items()}
        values["notes"] = tuple(values.get("notes") or ())
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> SceneMeta:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Scene:
    """A hyperspectral scene: ``cube`` is ``(C, H, W)`` float32, normally in [0, 1] (C-contiguous).

    ``valid``: ``(H, W)`` bool, the pixels valid in every good band (None: all); ``cube`` holds 0 at the others.
    ``passthrough``: the raw values of the bad bands (``meta.bad_bands``), ``(len(bad_bands), H, W)`` in the
    source's dtype, so that they can be written back exactly.
    """

    name: str
    cube: np.ndarray
    meta: SceneMeta
    valid: np.ndarray | None = None
    passthrough: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cube.ndim != 3:
            raise ValueError(f"scene {self.name!r}: cube must be (C, H, W), got shape {self.cube.shape}")
        if self.cube.dtype != np.float32:
            raise ValueError(f"scene {self.name!r}: cube must be float32, got {self.cube.dtype}")
        if self.valid is not None and self.valid.shape != self.cube.shape[1:]:
            raise ValueError(
                f"scene {self.name!r}: valid mask {self.valid.shape} is not the cube's {self.cube.shape[1:]}"
            )

    @property
    def good(self) -> np.ndarray:
        """``(C,)`` bool: the good bands."""
        good = np.ones(self.cube.shape[0], dtype=bool)
        good[list(self.meta.bad_bands)] = False
        return good

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.cube.shape
        return int(c), int(h), int(w)

    def raw(self) -> np.ndarray:
        """The cube in the source's units and dtype (integers rounded and clipped to their range), bad bands as
        their raw values (``passthrough``), invalid pixels as the no-data value (NaN for floats without one)."""
        dtype = np.dtype(self.meta.dtype)
        meta = self.meta
        if dtype.kind == "f" and meta.scale_factor == 1.0 and meta.band_gains is None and meta.band_offsets is None:
            # nothing to convert: float32 → float64 → a float dtype rounds once, as float32 → it does directly
            return self._flagged(self.cube.astype(dtype), dtype)
        out = np.empty(self.cube.shape, dtype)
        step = max(1, CONVERT_BLOCK // max(self.cube[0].size, 1))
        # float64 a few bands at a time, in one buffer: a fresh float64 block per step was mapped and faulted in by
        # the allocator each time (blocks this size are mmap'd), 1.0 s against 0.14 s for 285 × 128 × 2560 values
        buffer = np.empty((min(step, out.shape[0]), *out.shape[1:]), np.float64)
        for start in range(0, out.shape[0], step):
            values = self._stored_units(slice(start, start + step), buffer)
            if dtype.kind in "ui":
                info = np.iinfo(dtype)
                values = np.clip(np.rint(values, out=values), info.min, info.max, out=values)
            out[start : start + step] = values
        return self._flagged(out, dtype)

    def _stored_units(self, bands: np.ndarray | slice | None = None, buffer: np.ndarray | None = None) -> np.ndarray:
        """The cube (or ``bands`` of it) in the file's stored units, as float64: ×scale_factor, then the inverse
        of the per-band gain and offset; in ``buffer``'s leading bands where given (float64, large enough)."""
        index = slice(None) if bands is None else bands
        cube = self.cube[index]
        values = buffer[: cube.shape[0]] if buffer is not None else np.empty(cube.shape, np.float64)
        np.multiply(cube, np.float64(self.meta.scale_factor), out=values, dtype=np.float64)
        meta = self.meta
        if meta.band_gains is not None or meta.band_offsets is not None:
            count = self.cube.shape[0]
            gains = np.asarray(meta.band_gains or (1.0,) * count, dtype=np.float64)[index]
            offsets = np.asarray(meta.band_offsets or (0.0,) * count, dtype=np.float64)[index]
            values -= offsets[:, None, None]
            values /= gains[:, None, None]
        return values

    def normalised(self) -> np.ndarray:
        """The cube as float32 in normalised units, bad bands as their raw values over the scale factor, invalid
        pixels as the no-data value (NaN without one)."""
        return self._flagged(self.cube.copy(), np.dtype(np.float32), divide=True)

    def at_ceiling(self) -> np.ndarray:
        """``(C,)`` per band, the values of valid pixels that sit at the clip ceiling (1 in normalised units: the
        scene's normalisation factor in its own units); 0 for bad bands. A result clipped to [0, 1] is capped there
        wherever the network went brighter than the brightest input value."""
        top = self.cube >= 1.0  # a bool per value, not a copy of the good bands' values
        if self.valid is not None:
            top &= self.valid
        counts = np.count_nonzero(top.reshape(top.shape[0], -1), axis=1).astype(np.int64)
        counts[~self.good] = 0
        return counts

    def out_of_range(self) -> int:
        """How many values of good bands at valid pixels the source's integer dtype cannot hold (clipped by
        :meth:`raw`)."""
        dtype = np.dtype(self.meta.dtype)
        if dtype.kind not in "ui":
            return 0
        info = np.iinfo(dtype)
        values = np.rint(self._stored_units(self.good))
        outside = (values < info.min) | (values > info.max)
        if self.valid is not None:
            outside &= self.valid
        return int(np.count_nonzero(outside))

    def _flagged(self, values: np.ndarray, dtype: np.dtype, *, divide: bool = False) -> np.ndarray:
        if self.valid is not None and not self.valid.all():
            nodata = self.meta.nodata
            if dtype.kind in "ui" and (nodata is None or not representable(nodata, dtype)):
                raise DataError(
                    f"scene {self.name!r}: {int((~self.valid).sum())} invalid pixels and no no-data value its {dtype} "
                    f"output can hold (declared: {nodata}); give one with --nodata V (or write --units normalised)"
                )
            values[:, ~self.valid] = np.nan if nodata is None else nodata
        if self.passthrough is not None and self.meta.bad_bands:  # bad bands as they came, flags and fills too
            kept = self.passthrough.astype(np.float64) / self.meta.scale_factor if divide else self.passthrough
            values[list(self.meta.bad_bands)] = kept.astype(dtype)
        return values
