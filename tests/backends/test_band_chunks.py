"""Band-chunk graphs: the network cut along the bands, the scan's state carried from call to call by the runtime
(what a run makes for ONNX Runtime and OpenVINO on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dualsr_deploy.archs.fold import fold_coarsr
from dualsr_deploy.artefacts import chunk_bands, graph_metadata
from dualsr_deploy.backends import create
from dualsr_deploy.backends.kinds import CHUNK_BANDS, backend_kind
from dualsr_deploy.checkpoint import write_checkpoint
from dualsr_deploy.errors import ExportError
from dualsr_deploy.export.build import export_variant
from dualsr_deploy.export.onnx import torch2onnx
from dualsr_deploy.export.recipes import default_recipe
from dualsr_deploy.infer.options import BackendSpec
from dualsr_deploy.infer.pool import BackendPool
from dualsr_deploy.optional import find
from tests.helpers import random_coarsr

HAVE_OPENVINO = find("openvino") is not None


@pytest.mark.parametrize("rule", ["paper", "reference"])
@pytest.mark.parametrize("bands", [5, 13, 16])
def test_a_chunked_graph_gives_the_whole_cube_result(rule: str, bands: int, tmp_path: Path) -> None:
    """Chunks of 4 bands: one padded call (5 bands), a padded last call (13), chunks that divide the bands (16)."""
    core = fold_coarsr(random_coarsr(2, n_feats=8, seed=3), rule).eval()  # type: ignore[arg-type]
    graph = torch2onnx(core, tmp_path / "chunk.onnx", bands=bands, band_chunk=4)
    meta = graph_metadata(graph)
    assert (meta["form"], meta["chunk_bands"], meta["state_channels"]) == ("band-chunk", "4", "8")
    lr = torch.rand(2, bands, 11, 9, generator=torch.Generator().manual_seed(bands))
    with torch.no_grad():
        expected = core.double()(lr.double())
    runtimes = ["onnx", *(["openvino"] if HAVE_OPENVINO else [])]
    for name in runtimes:
        artefact = graph
        if name == "openvino":
            from dualsr_deploy.export.openvino import onnx2ir

            artefact = onnx2ir(graph)
        backend = create(name, artefact=artefact)
        with backend:
            got = backend.residual(lr)
        assert got.shape == expected.shape
        assert float((got.double() - expected).abs().max()) < 2e-5, name


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
def test_openvino_compiles_for_each_shape_it_is_called_with(tmp_path: Path) -> None:
    """OpenVINO runs each call through the IR compiled for that call's shapes (faster than free shapes); windows of
    other shapes, one after another and back again, each give the torch result."""
    from dualsr_deploy.export.openvino import onnx2ir

    core = fold_coarsr(random_coarsr(2, n_feats=8, seed=5), "paper").eval()
    for form, chunk in (("chunk", 4), ("whole", None)):
        graph = torch2onnx(core, tmp_path / f"{form}.onnx", bands=9, band_chunk=chunk)
        backend = create("openvino", artefact=onnx2ir(graph))
        with backend:
            for batch, h, w in ((1, 12, 10), (2, 7, 13), (1, 12, 10)):
                lr = torch.rand(batch, 9, h, w, generator=torch.Generator().manual_seed(h * w))
                with torch.no_grad():
                    expected = core.double()(lr.double())
                got = backend.residual(lr)
                assert got.shape == expected.shape
                error = float((got.double() - expected).abs().max()) / float(expected.abs().max())
                assert error < 1e-5, (form, batch, h, w)  # fp32 rounding of values up to ~20 (random weights)


def test_the_first_band_takes_no_state_and_later_chunks_carry_it(tmp_path: Path) -> None:
    """Band 0 of the cube ignores whatever state comes in; a later chunk's result depends on the state it gets."""
    core = fold_coarsr(random_coarsr(2, n_feats=8, seed=4), "paper").eval()
    planes = torch.rand(1, 3, 5, 6, 6, generator=torch.Generator().manual_seed(0))
    state_a, state_b = torch.zeros(1, 8, 6, 6), torch.rand(1, 8, 6, 6)
    with torch.no_grad():
        first_a, _ = core.chunk(planes, state_a, torch.ones(1))
        first_b, _ = core.chunk(planes, state_b, torch.ones(1))
        later_a, _ = core.chunk(planes, state_a, torch.zeros(1))
        later_b, _ = core.chunk(planes, state_b, torch.zeros(1))
        alone, _ = core.chunk(planes, None)
    assert torch.equal(first_a, first_b)
    assert torch.equal(first_a, alone)
    assert not torch.allclose(later_a, later_b)


def test_runs_make_band_chunk_graphs_on_a_cpu_only() -> None:
    onnx, openvino, trt, torch_kind = (backend_kind(n) for n in ("onnx", "openvino", "trt", "torch"))
    assert onnx.band_chunk("cpu", "fp32") == openvino.band_chunk("cpu", "bf16") == CHUNK_BANDS
    assert openvino.band_chunk("cpu", "fp32") == CHUNK_BANDS
    assert onnx.band_chunk("cuda", "fp32") is None  # a GPU takes the whole cube (and TensorRT plans are made from it)
    assert onnx.band_chunk("cpu", "int8") is None  # dualsr export --int8 makes whole graphs
    assert onnx.band_chunk("cpu", "fp16") is None
    assert trt.band_chunk("cuda", "fp32") is None
    assert torch_kind.band_chunk("cpu", "fp32") is None
    assert BackendSpec(backend="onnx").whole_activations is False
    assert BackendSpec(backend="onnx", device="cuda").whole_activations is True


def test_a_run_exports_one_chunked_graph_of_its_weights_for_every_band_count(tmp_path: Path) -> None:
    """Segments of 11 and 13 bands (as a scene's bad bands leave them) run one 8-band chunk graph, exported and
    opened once, and each matches torch; a 5-band cube gets its own 5-band graph (no padding planes)."""
    weights = tmp_path / "x2.safetensors"
    write_checkpoint(random_coarsr(2, n_feats=8, seed=5), weights, neighbour_rule="paper")
    spec = BackendSpec(backend="onnx", artefacts_dir=tmp_path / "engines", weights=((2, weights),), precision="fp32")
    pool = BackendPool(spec)
    pool.prepare([(2, 11), (2, 13), (2, 5)])
    graphs = sorted(path.name for path in (tmp_path / "engines").rglob("*.onnx"))
    assert graphs == ["coarsr_x2_c5_fp32_chunk5.onnx", "coarsr_x2_c8_fp32_chunk8.onnx"]
    (graph,) = (tmp_path / "engines").glob("coarsr-x2-c8-*/coarsr_x2_c8_fp32_chunk8.onnx")
    manifest = json.loads(graph.with_name(graph.name + ".json").read_text())
    assert (manifest["form"], manifest["chunk_bands"]) == ("band-chunk", "8")
    assert pool.backend(2, 11) is pool.backend(2, 13)
    assert pool.backend(2, 5) is not pool.backend(2, 11)
    torch_spec = BackendSpec(backend="torch", weights=((2, weights),), precision="fp32")
    torch_pool = BackendPool(torch_spec)
    for bands in (11, 13, 5):
        lr = torch.rand(1, bands, 10, 10, generator=torch.Generator().manual_seed(bands))
        torch_pool.prepare([(2, bands)])
        expected = torch_pool.backend(2, bands).run(lr)
        got = pool.backend(2, bands).run(lr)
        assert float((got - expected).abs().max()) < 1e-5 * float(expected.abs().max())  # float32 rounding of ~20s


@pytest.mark.parametrize(
    "meta",
    [
        {"form": "band-chunk", "chunk_bands": "x", "state_channels": "8"},
        {"form": "band-chunk", "chunk_bands": "0", "state_channels": "8"},
        {"form": "band-chunk", "chunk_bands": "8"},
        {"form": "band-chunk", "chunk_bands": "8", "state_channels": "-1"},
        {"form": "rolled"},
    ],
)
def test_a_form_that_makes_no_sense_is_refused(meta: dict[str, str]) -> None:
    with pytest.raises(ExportError):
        chunk_bands(meta)


def test_band_chunk_graphs_are_fp32_and_make_no_tensorrt_plans(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="whole-cube"):
        export_variant(default_recipe(2, bands=8), out_dir=tmp_path, tensorrt="auto", band_chunk=8)
    with pytest.raises(ExportError, match="fp32"):
        export_variant(
            default_recipe(2, bands=8).with_overrides(precisions=("fp16",)),
            out_dir=tmp_path,
            tensorrt="off",
            band_chunk=8,
        )
    assert not list(tmp_path.rglob("*.onnx"))


def test_dualsr_export_writes_the_band_chunk_graph_a_run_then_uses(tmp_path: Path) -> None:
    """``dualsr export --band-chunk 8`` writes the graph (and IR) that ``infer`` on a CPU looks for: the run exports
    nothing more. Its help names the chunk a run makes."""
    from typer.testing import CliRunner

    from dualsr_deploy.cli.main import app

    runner = CliRunner()
    assert f"({CHUNK_BANDS} bands)" in " ".join(runner.invoke(app, ["export", "--help"]).output.split())
    weights = tmp_path / "x2.safetensors"
    write_checkpoint(random_coarsr(2, n_feats=8, seed=6), weights, neighbour_rule="paper")
    engines = tmp_path / "engines"
    args = ["export", "--weights", str(weights), "--scale", "2", "--bands", "9", "--engines", str(engines)]
    done = runner.invoke(app, [*args, "--band-chunk", str(CHUNK_BANDS)])
    assert done.exit_code == 0, done.output
    assert "TensorRT plans: they are built from whole-cube graphs" in " ".join(done.output.split())
    (graph,) = engines.glob("*/*.onnx")
    assert graph.name == f"coarsr_x2_c{CHUNK_BANDS}_fp32_chunk{CHUNK_BANDS}.onnx"  # the graph of every count
    assert f"runs every band count from {CHUNK_BANDS} (9 included)" in " ".join(done.output.split())
    said: list[str] = []
    spec = BackendSpec(backend="onnx", artefacts_dir=engines, weights=((2, weights),), precision="fp32")
    BackendPool(spec, say=said.append).prepare([(2, 9), (2, 285)])
    assert said == []  # found, not exported again
    too_many = runner.invoke(app, [*args, "--band-chunk", "10"])
    assert too_many.exit_code == 2
    assert "more than the graph's 9 bands" in " ".join(too_many.output.split())
    for refused in (["--precision", "fp16"], ["--tensorrt", "require"], ["--int8"]):
        result = runner.invoke(app, [*args, "--band-chunk", "8", *refused])
        assert result.exit_code == 2, (refused, result.output)


def test_a_manifest_that_lies_about_the_chunk_is_refused_when_opened(tmp_path: Path) -> None:
    """The runtime pads and slices by the manifest's chunk: a graph whose inputs say otherwise is refused."""
    import onnx

    core = fold_coarsr(random_coarsr(2, n_feats=8, seed=7), "paper").eval()
    graph = torch2onnx(core, tmp_path / "chunk.onnx", bands=9, band_chunk=4)
    model = onnx.load(str(graph))
    for prop in model.metadata_props:
        if prop.key == "chunk_bands":
            prop.value = "3"
    onnx.save(model, str(graph))
    with pytest.raises(ExportError, match="its inputs take 4 bands"):
        create("onnx", artefact=graph).open()
    if HAVE_OPENVINO:
        from dualsr_deploy.export.openvino import onnx2ir

        xml = onnx2ir(torch2onnx(core, tmp_path / "ok.onnx", bands=9, band_chunk=4))
        manifest = xml.with_name(xml.name + ".json")
        facts = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**facts, "state_channels": "16"}))
        with pytest.raises(ExportError, match="a state of 8 maps"):
            create("openvino", artefact=xml).open()


def test_a_chunk_graph_is_verified_across_several_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 8-band graph every band count runs is checked against torch float64 on cubes of more than three chunks,
    so the scan's state carried between calls and the padded last call are verified too, not one call alone."""
    from dualsr_deploy.export import build

    weights = tmp_path / "x2.safetensors"
    write_checkpoint(random_coarsr(2, n_feats=8, seed=8), weights, neighbour_rule="paper")
    seen: list[int] = []
    original = build._verification_inputs

    def spy(recipe: object, *, plans_built: bool) -> list[torch.Tensor]:
        inputs = original(recipe, plans_built=plans_built)  # type: ignore[arg-type]
        seen.extend(int(x.shape[1]) for x in inputs)
        return inputs

    monkeypatch.setattr(build, "_verification_inputs", spy)
    monkeypatch.setattr(build, "cpu_native_bf16", lambda: False)  # random weights: bf16's error grows with the scan
    recipe = default_recipe(2, bands=8).with_overrides(checkpoint=weights, precisions=("fp32",))
    result = export_variant(recipe, out_dir=tmp_path / "engines", tensorrt="off", band_chunk=8, verify=True)
    assert seen
    assert min(seen) > 3 * 8
    assert min(seen) % 8
    onnx = [c for c in result.verification if c.backend.startswith("onnx")]
    assert onnx
    assert all(c.passed for c in onnx)
