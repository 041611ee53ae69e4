"""Export recipes: the committed ones are valid, bad ones are refused with the file named."""

from __future__ import annotations

from pathlib import Path

import pytest

from dualsr_deploy.errors import RecipeError
from dualsr_deploy.export.recipes import load_recipe
from tests.conftest import REPO

COMMITTED = sorted((REPO / "export").glob("*.toml"))


def test_there_are_committed_recipes() -> None:
    assert COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_recipe_is_valid(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.tensorrt.min_tile <= recipe.tensorrt.max_tile


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nscale = 5\n', "scale 5 is not supported"),
        ('name = "x"\nscale = 4\nbands = 4\n', "bands must be ≥ 5"),
        ('name = "x"\nscale = 4\nprecisions = ["int8"]\n', "precisions"),
        ('name = "x"\nscale = 4\ncolour = 1\n', "unknown keys colour"),
        ("scale = 4\n", "missing required key 'name'"),
        ('name = "x"\nscale = 4\n[tensorrt]\nmin_tile = [1, 64, 64]\nmax_tile = [1, 32, 32]\n', "min ≤ opt ≤ max"),
        ('name = "x"\nscale = 4\n[tensorrt]\nmin_tile = [1, 64]\n', "three integers"),
        ('name = "../x"\nscale = 4\n', "plain folder name"),
        ("name = \n", "not valid TOML"),
    ],
)
def test_bad_recipes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message) as caught:
        load_recipe(path)
    assert "bad.toml" in str(caught.value)
