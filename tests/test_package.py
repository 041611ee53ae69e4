"""The public names that checks outside the test suite rely on (DESIGN.md, "Layout")."""

from __future__ import annotations

import inspect

import dualsr_deploy


def test_public_names_exist_with_their_signatures() -> None:
    assert list(inspect.signature(dualsr_deploy.load_coarsr).parameters)[:4] == [
        "path",
        "neighbours",
        "device",
        "scale",
    ]
    assert list(inspect.signature(dualsr_deploy.imresize).parameters) == ["x", "scale", "size", "antialias"]
    assert list(inspect.signature(dualsr_deploy.backproject).parameters) == ["im_h", "im_l", "factor", "iterations"]
    assert list(inspect.signature(dualsr_deploy.metrics.evaluate).parameters) == ["sr", "hr", "scale"]
