"""Each site's names in other tools: TransformerLens hook names (checked against its MLP
components' hooks and against the table in docs/models.md) and nnsight module paths (checked on
a tiny model of every family in the adapter table: the path resolves and its input or output is
the tensor the recorder records there); and ``emoneuron neurons export``."""

from __future__ import annotations

import doctest
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlp_reference import hooked_forward

from emoneuron import __version__
from emoneuron.cli import main
from emoneuron.data.render import render_dialogue
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.models.adapters import ADAPTERS, SITES, Adapter, adapter_named
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record
from emoneuron.selection.identify import IdentifyConfig, Neuron, NeuronSets

MakeTiny = Callable[[str], LoadedModel]
FAMILIES = [adapter.family for adapter in ADAPTERS]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"

# TransformerLens's MLP components (transformer_lens/components/mlps/): MLP hooks
# x @ W_in + b_in (hook_pre) and act(pre) (hook_post); GatedMLP hooks x @ W_gate (hook_pre),
# x @ W_in (hook_pre_linear) and act(pre) * pre_linear (hook_post), nothing for act(pre) alone.
TRANSFORMERLENS = {
    True: {"mlp.down_proj.input": "hook_post", "mlp.activation": None,
           "mlp.pre_activation": "hook_pre"},
    False: {"mlp.down_proj.input": "hook_post", "mlp.activation": "hook_post",
            "mlp.pre_activation": "hook_pre"},
}


def _transformerlens(adapter: Adapter, site: str) -> str | None:
    try:
        return adapter.hook_template(site, "transformerlens")
    except UserError:
        return None


@pytest.mark.parametrize("family", FAMILIES)
def test_transformerlens_names_are_its_mlp_hooks(family: str) -> None:
    adapter = adapter_named(family)
    assert set(adapter.sites) == set(SITES)
    for site, hook in TRANSFORMERLENS[adapter.gated].items():
        expected = None if hook is None else f"blocks.{{layer}}.mlp.{hook}"
        assert _transformerlens(adapter, site) == expected, site
    assert adapter.hook_names("mlp.pre_activation", "transformerlens", 3) == [
        f"blocks.{layer}.mlp.hook_pre" for layer in range(3)]


def test_a_gated_activation_is_refused_naming_both_neighbouring_hooks() -> None:
    with pytest.raises(UserError) as error:
        adapter_named("qwen2").hook_template("mlp.activation", "transformerlens")
    assert str(error.value) == (
        "site 'mlp.activation' (act(gate) alone) has no TransformerLens hook in the qwen2 "
        "family's gated MLP (hook_pre is the gate before it, hook_post act(gate) * up); use "
        "nnsight's module paths, or read it from hook_pre as docs/models.md shows")


def _documented() -> dict[tuple[str, str], tuple[str | None, str]]:
    """docs/models.md's table: (family, site) -> (TransformerLens hook, nnsight path)."""
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in FAMILIES and cells[1] in SITES:
            hook = cells[2] if cells[2].startswith("blocks.") else None
            rows[(cells[0], cells[1])] = (hook, cells[3])
    return rows


def test_the_documented_table_is_the_adapters() -> None:
    computed = {(adapter.family, site): (_transformerlens(adapter, site),
                                         adapter.hook_template(site, "nnsight"))
                for adapter in ADAPTERS for site in SITES}
    assert _documented() == computed


def _captured(loaded: LoadedModel, names: list[str], item: Record) -> list[torch.Tensor]:
    """Per layer, the (T, width) tensor at each nnsight name (module path, then .input or
    .output) in a forward pass over one dialogue, hooked by plain torch."""
    values: dict[int, torch.Tensor] = {}
    handles = []
    for layer, name in enumerate(names):
        path, tensor = name.rsplit(".", 1)
        module = loaded.model.get_submodule(path)

        def keep(value: torch.Tensor, layer: int = layer) -> None:
            values[layer] = value[0].detach().clone()
        handles.append(module.register_forward_pre_hook(lambda _m, args, keep=keep: keep(args[0]))
                       if tensor == "input" else
                       module.register_forward_hook(lambda _m, _a, out, keep=keep: keep(out)))
    ids = loaded.tokenizer(render_dialogue(item).text)["input_ids"]
    hooked_forward(loaded, ids, handles)
    return [values[layer] for layer in range(len(names))]


@pytest.mark.parametrize("family", FAMILIES)
def test_nnsight_paths_hold_the_recorded_tensor(family: str, make_tiny: MakeTiny,
                                                records: list[Record]) -> None:
    loaded = make_tiny(family)
    assert loaded.adapter.family == family
    item = records[2]  # three turns
    emotion = EMOTIONS.index(item.emotion)
    for site in SITES:
        names = loaded.adapter.hook_names(site, "nnsight", loaded.n_layers)
        captured = _captured(loaded, names, item)
        recording = record(loaded, [item], RecordConfig(token_policy="all", batch_size=1,
                                                        site=site), progress=False)
        stats = recording.stats()
        for layer, values in enumerate(captured):
            assert values.shape[-1] == loaded.width
            torch.testing.assert_close(stats.sum[emotion, layer], values.sum(0).double(),
                                       rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(stats.sum_sq[emotion, layer],
                                       values.double().square().sum(0), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(recording.top_values[layer, 0], values.max(0).values,
                                       rtol=1e-5, atol=1e-6)


def _sets(site: str) -> NeuronSets:
    emotions = {e: [] for e in EMOTIONS}
    emotions["anger"] = [Neuron(1, 5, 0.9), Neuron(0, 2, 0.5), Neuron(1, 3, 0.1)]
    emotions["fear"] = [Neuron(0, 7, 0.3)]
    return NeuronSets("tiny-llama", site, 2, 80, IdentifyConfig(), emotions)


def _fake_run(directory: Path, site: str) -> Path:
    """The two files `neurons export` reads: a manifest (every section a run's readers check;
    the model's family named) and sets."""
    directory.mkdir()
    model = {"name": "tiny-llama", "family": "llama", "n_layers": 2, "width": 80,
             "n_neurons": 160, "site": site}
    (directory / "manifest.json").write_text(json.dumps({
        "emoneuron_version": __version__, "created": "2026-12-07T00:00:00", "versions": {},
        "timings": {}, "config": {"model": "tiny-llama"}, "model": model,
        "data": {"hash": "0" * 64, "counts": {}},
        "evaluation": {"description": "", "n_shot": 1, "chance": 1 / 6}}))
    _sets(site).save(directory / "neurons.json")
    return directory


def test_neurons_export_keys_a_run_s_sets_by_hook_name(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run", "mlp.down_proj.input")
    assert main(["neurons", "export", str(run), "--format", "transformerlens",
                 "--out", str(tmp_path / "tl.json")]) == 0
    exported = json.loads((tmp_path / "tl.json").read_text())
    assert {key: exported[key] for key in ("format", "model", "family", "site")} == {
        "format": "transformerlens", "model": "tiny-llama", "family": "llama",
        "site": "mlp.down_proj.input"}
    assert exported["emotions"]["anger"] == {"blocks.0.mlp.hook_post": [2],
                                             "blocks.1.mlp.hook_post": [3, 5]}
    assert exported["emotions"]["fear"] == {"blocks.0.mlp.hook_post": [7]}
    assert exported["emotions"]["sadness"] == {}


def test_neurons_export_prints_nnsight_paths_and_refuses_a_missing_hook(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _fake_run(tmp_path / "run", "mlp.activation")
    assert main(["neurons", "export", str(run), "--format", "nnsight"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["emotions"]["anger"] == {"model.layers.0.mlp.act_fn.output": [2],
                                            "model.layers.1.mlp.act_fn.output": [3, 5]}
    assert main(["neurons", "export", str(run), "--format", "transformerlens"]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1
    assert re.match(r"error: site 'mlp.activation' .* has no TransformerLens hook", error)


def test_keyed_needs_one_name_per_layer() -> None:
    with pytest.raises(UserError, match="3 layer names for sets of a 2-layer model"):
        _sets("mlp.down_proj.input").keyed(["a", "b", "c"])


def test_the_documented_example_runs() -> None:
    """The ``>>>`` example of docs/models.md's TransformerLens / nnsight section."""
    text = DOCS.read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if ">>>" in b)
    test = doctest.DocTestParser().get_doctest(block, {}, "models.md", str(DOCS), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert test.examples and runner.summarize(verbose=False).failed == 0
