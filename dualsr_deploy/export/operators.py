"""Static TensorRT check: every operator of a graph must be in the ONNX-TensorRT parser's support matrix.

This is what a machine without TensorRT can check of a TensorRT build (DESIGN.md). The matrix is the markdown
table of onnx/onnx-tensorrt's ``operators.md`` (rows ``| Op | Y/N | types | restrictions |``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import onnx

_ROW = re.compile(r"^\|\s*([A-Za-z][A-Za-z0-9]*)\s*\|\s*([YN])\s*\|")


def read_operator_table(path: str | os.PathLike[str]) -> dict[str, bool]:
    """``{operator: supported}`` from an ``operators.md`` support matrix."""
    table = {}
    for line in Path(path).read_text().splitlines():
        match = _ROW.match(line)
        if match:
            table[match.group(1)] = match.group(2) == "Y"
    if not table:
        raise ValueError(f"{path}: no operator rows found; expected onnx-tensorrt's operators.md")
    return table


def graph_operators(model: onnx.ModelProto) -> set[str]:
    """Operator types of the default ONNX domain used anywhere in ``model`` (subgraphs included)."""
    found: set[str] = set()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}")
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    return found


def unsupported_operators(model: onnx.ModelProto, table: Mapping[str, bool]) -> list[str]:
    """Operators of ``model`` that the table marks unsupported or does not list, sorted."""
    return sorted(op for op in graph_operators(model) if not table.get(op, False))
