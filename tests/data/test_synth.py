"""Synthetic scenes: deterministic, CAVE-like, any band count, and they look like the photograph they came from."""

from __future__ import annotations

import numpy as np
import pytest

from dualsr_deploy.data.synth import PHOTOS, render_srgb, synthesize, synthesize_with_photo
from dualsr_deploy.errors import InputError


def test_deterministic_per_seed() -> None:
    a, b, c = synthesize(3, size=48), synthesize(3, size=48), synthesize(4, size=48)
    np.testing.assert_array_equal(a.cube, b.cube)
    assert not np.array_equal(a.cube, c.cube)


def test_cave_like() -> None:
    scene = synthesize(0, size=64)
    assert scene.shape == (31, 64, 64)
    assert scene.cube.dtype == np.float32
    assert scene.cube.min() >= 0
    assert scene.cube.max() <= 1
    assert scene.meta.wavelengths is not None
    assert scene.meta.wavelengths[0] == 400
    assert scene.meta.wavelengths[-1] == 700
    # Real reflectances are smooth: neighbouring bands nearly equal, unlike noise.
    assert np.abs(np.diff(scene.cube, axis=0)).mean() < 0.1 * scene.cube.mean()


@pytest.mark.parametrize("bands", [5, 64, 128])
def test_any_band_count(bands: int) -> None:
    assert synthesize(1, size=32, bands=bands).shape == (bands, 32, 32)


@pytest.mark.parametrize("seed", range(len(PHOTOS)))
def test_rendering_resembles_the_photograph(seed: int) -> None:
    """Luminance follows the photograph (shading is taken from it) and colours come close.

    Measured on these seeds at 96 px: luminance correlation 0.996–0.9998, mean |sRGB difference| 0.025–0.040.
    The bars (0.98, 0.08) leave room across platforms; shuffling the bands of seed 0 gives 0.12 (next test).
    """
    scene, photo = synthesize_with_photo(seed, size=96)
    assert scene.meta.wavelengths is not None
    rgb = render_srgb(scene.cube, scene.meta.wavelengths)
    luma = np.array([0.2126, 0.7152, 0.0722])
    assert np.corrcoef((rgb @ luma).ravel(), (photo @ luma).ravel())[0, 1] > 0.98
    assert np.abs(rgb - photo).mean() < 0.08


def test_shuffled_bands_do_not_resemble() -> None:
    scene, photo = synthesize_with_photo(0, size=96)
    assert scene.meta.wavelengths is not None
    shuffled = scene.cube[np.random.default_rng(0).permutation(31)]
    assert np.abs(render_srgb(shuffled, scene.meta.wavelengths) - photo).mean() > 0.08


def test_bad_requests() -> None:
    with pytest.raises(InputError, match="at least 5 bands"):
        synthesize(0, bands=4)
    with pytest.raises(InputError, match="unknown photograph"):
        synthesize(0, photo="moon")
