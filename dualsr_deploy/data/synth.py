"""Synthetic CAVE-like scenes: measured reflectance spectra laid over the structure of real photographs.

A sample photograph (scikit-image ships them) is segmented into regions (SLIC superpixels). Each region gets a
measured reflectance spectrum from colour-science's libraries (ColorChecker charts, CIE and NIST CQS test
samples) whose colour under D65 is among the closest to the region's mean colour; every pixel scales its region's
spectrum by the photograph's shading (its luminance over the spectrum's). Rendering the cube back to sRGB
(:func:`render_srgb`) therefore gives the photograph's luminance exactly and the regions' colours approximately.
Everything is deterministic per seed.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from dualsr_deploy.data.scene import Scene, SceneMeta
from dualsr_deploy.errors import InputError

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
SPECTRAL_RANGE = (400.0, 700.0)


def _colour() -> object:
    with warnings.catch_warnings():  # colour warns at import that matplotlib is absent; plotting is not used
        warnings.simplefilter("ignore")
        import colour
    return colour


@lru_cache(maxsize=1)
def _library() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Every measured reflectance: (wavelengths, values), duplicates dropped."""
    _colour()
    from colour.characterisation import SDS_COLOURCHECKERS
    from colour.quality import SDS_TCS, SDS_VS

    spectra: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    for collection in (SDS_COLOURCHECKERS, SDS_TCS, SDS_VS):
        for chart in collection.values():
            for sd in chart.values():
                domain, values = np.asarray(sd.domain, float), np.asarray(sd.values, float)
                spectra.setdefault(
                    np.round(np.interp(np.arange(400, 701, 10), domain, values), 4).tobytes(), (domain, values)
                )
    return tuple(spectra.values())


def reflectances(wavelengths: np.ndarray) -> np.ndarray:
    """``(N, C)`` measured reflectances in [0, 1] sampled at ``wavelengths`` (nm)."""
    return np.clip(np.stack([np.interp(wavelengths, d, v) for d, v in _library()]), 0.0, 1.0)


@lru_cache(maxsize=8)
def _xyz_weights(wavelengths: tuple[float, ...]) -> np.ndarray:
    """``(C, 3)``: XYZ of a reflectance under D65 with the CIE 1931 2° observer, normalised so white has Y = 1."""
    colour = _colour()
    cmfs = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]  # type: ignore[attr-defined]
    d65 = colour.SDS_ILLUMINANTS["D65"]  # type: ignore[attr-defined]
    grid = np.arange(360.0, 831.0, 1.0)
    cmf = np.stack([np.interp(grid, np.asarray(cmfs.domain), np.asarray(cmfs.values)[:, k]) for k in range(3)], 1)
    light = np.interp(grid, np.asarray(d65.domain), np.asarray(d65.values))
    bands = np.asarray(wavelengths)
    # Each band stands for the interval half-way to its neighbours (linear interpolation of the spectrum).
    hat = np.stack([np.interp(grid, bands, np.eye(len(bands))[i], left=0, right=0) for i in range(len(bands))])
    weights = hat @ (cmf * light[:, None])
    return weights / (hat.sum(0) @ (cmf[:, 1] * light))


def render_srgb(cube: np.ndarray, wavelengths: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` sRGB in [0, 1] of a reflectance cube ``(C, H, W)`` under D65 (CIE 1931 2°)."""
    xyz = np.tensordot(cube.astype(np.float64), _xyz_weights(tuple(float(w) for w in wavelengths)), axes=(0, 0))
    matrix = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    return _encode_srgb(np.clip(xyz @ matrix.T, 0.0, 1.0))


def _encode_srgb(linear: np.ndarray) -> np.ndarray:
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _decode_srgb(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, np.power((encoded + 0.055) / 1.055, 2.4))


def photograph(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a scikit-image sample photograph, resized to ``size``: ``(size, size, 3)`` sRGB."""
    import skimage.data
    import skimage.transform

    if name not in PHOTOS:
        raise InputError(f"unknown photograph {name!r}; choose one of {', '.join(PHOTOS)}")
    image = getattr(skimage.data, name)()[..., :3].astype(np.float64) / 255.0
    height, width = image.shape[:2]
    side = int(min(height, width) * rng.uniform(0.7, 1.0))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = image[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    resized = skimage.transform.resize(  # type: ignore[no-untyped-call]
        crop, (size, size), order=3, anti_aliasing=True, mode="reflect"
    )
    return np.clip(resized, 0.0, 1.0)


def synthesize(
    seed: int,
    *,
    size: int = 256,
    bands: int = 31,
    photo: str | None = None,
    segments: int | None = None,
) -> Scene:
    """A CAVE-like scene: ``bands`` bands evenly over 400–700 nm, ``size``×``size`` pixels, float32 in [0, 1]."""
    return synthesize_with_photo(seed, size=size, bands=bands, photo=photo, segments=segments)[0]


def synthesize_with_photo(
    seed: int,
    *,
    size: int = 256,
    bands: int = 31,
    photo: str | None = None,
    segments: int | None = None,
) -> tuple[Scene, np.ndarray]:
    """:func:`synthesize`, and the ``(size, size, 3)`` sRGB photograph crop the scene was made from."""
    import skimage.segmentation

    if bands < 5:
        raise InputError(f"synthetic scenes need at least 5 bands (CoarSR's minimum), got {bands}")
    if size < 16:
        raise InputError(f"synthetic scenes need at least 16×16 pixels, got {size}")
    rng = np.random.default_rng(seed)
    photo = photo or PHOTOS[seed % len(PHOTOS)]
    segments = segments or int(rng.integers(150, 400))
    image = photograph(photo, size, rng)
    wavelengths = np.linspace(*SPECTRAL_RANGE, bands)
    library = reflectances(wavelengths)
    weights = _xyz_weights(tuple(wavelengths))
    library_xyz = library @ weights  # (N, 3)

    labels = skimage.segmentation.slic(image, n_segments=segments, compactness=10, start_label=0, channel_axis=-1)
    linear = _decode_srgb(image)
    to_xyz = np.linalg.inv(np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]))
    pixel_xyz = linear @ to_xyz.T
    count = int(labels.max()) + 1
    sums = np.stack([np.bincount(labels.ravel(), pixel_xyz[..., k].ravel(), count) for k in range(3)], 1)
    region_xyz = sums / np.maximum(np.bincount(labels.ravel(), minlength=count), 1)[:, None]

    def chromaticity(xyz: np.ndarray) -> np.ndarray:
        return xyz[:, [0, 2]] / np.maximum(xyz[:, 1:2], 1e-6)

    distance = np.linalg.norm(chromaticity(region_xyz)[:, None] - chromaticity(library_xyz)[None], axis=-1)
    nearest = np.argsort(distance, axis=1)[:, :3]
    choice = nearest[np.arange(count), rng.integers(0, 3, count)]
    spectra = library[choice]  # (regions, C)
    shading = pixel_xyz[..., 1] / np.maximum(library_xyz[choice, 1][labels], 1e-6)
    cube = spectra[labels].transpose(2, 0, 1) * shading[None]
    clipped = int(np.count_nonzero(cube > 1.0))
    cube = np.clip(cube, 0.0, 1.0).astype(np.float32)
    meta = SceneMeta(
        source=f"synthetic:{photo}:seed={seed}",
        format="synthetic",
        wavelengths=tuple(float(w) for w in wavelengths),
        attrs={"photo": photo, "seed": str(seed), "segments": str(count), "spectra": "colour-science"},
        notes=(f"{clipped} values above 1 clipped",) if clipped else (),
    )
    return Scene(f"synth_{seed:04d}_{photo}", np.ascontiguousarray(cube), meta), image
