"""Neuron cards: the vocabulary projection against a hand computation through the final norm and
the unembedding, the top examples against the activations of the dialogues they name, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from emoneuron.causal.experiments.cards import (
    format_card,
    neuron_card,
    vocab_projection,
    write_cards,
)
from emoneuron.cli import main
from emoneuron.data.render import render_dialogue
from emoneuron.data.schema import Record, write_records
from emoneuron.data.synth import synthesize
from emoneuron.errors import UserError
from emoneuron.io import write_json
from emoneuron.models.config import DEFAULT_SITE
from emoneuron.models.loading import LoadedModel, load
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record
from emoneuron.selection.identify import IdentifyConfig, identify

MakeTiny = Callable[[str], LoadedModel]


def _hand_logits(loaded: LoadedModel, layer: int, index: int) -> torch.Tensor:
    model = loaded.model
    if loaded.adapter.family == "gpt2":  # Conv1D down projection, LayerNorm without its bias
        v = model.transformer.h[layer].mlp.c_proj.weight[index]
        norm = model.transformer.ln_f
        normed = norm.weight * (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + norm.eps)
    else:  # Llama: RMSNorm
        v = model.model.layers[layer].mlp.down_proj.weight[:, index]
        norm = model.model.norm
        normed = norm.weight * v / torch.sqrt(v.square().mean() + norm.variance_epsilon)
    return (model.lm_head.weight @ normed)[:len(loaded.tokenizer)]


@pytest.mark.parametrize("family", ("llama", "gpt2"))
def test_vocab_projection_equals_hand_computation(make_tiny: MakeTiny, family: str) -> None:
    loaded = make_tiny(family)
    with torch.no_grad():
        logits = _hand_logits(loaded, 1, 5)
    promoted, suppressed = vocab_projection(loaded, 1, 5, k=5)
    expected_up = logits.topk(5).indices.tolist()
    expected_down = (-logits).topk(5).indices.tolist()
    assert [e.token for e in promoted] == [loaded.tokenizer.decode([i]) for i in expected_up]
    assert [e.token for e in suppressed] == [loaded.tokenizer.decode([i]) for i in expected_down]
    assert [e.logit for e in promoted] == pytest.approx(logits[expected_up].tolist(), abs=1e-3)
    assert promoted[0].logit > 0 > suppressed[0].logit


def _site_values(loaded: LoadedModel, item: Record, layer: int) -> tuple[list[int], torch.Tensor]:
    """Token ids and the down projection's input (T, W) at ``layer``, by a test-side hook."""
    ids = loaded.tokenizer(render_dialogue(item).text)["input_ids"]
    captured: list[torch.Tensor] = []
    module = loaded.model.model.layers[layer].mlp.down_proj
    handle = module.register_forward_pre_hook(lambda _m, args: captured.append(args[0][0]))
    try:
        with torch.no_grad():
            loaded.model(input_ids=torch.tensor([ids]))
    finally:
        handle.remove()
    return ids, captured[0]


def test_top_examples_name_the_dialogues_and_tokens_that_activate_most(
        make_tiny: MakeTiny, records: list[Record]) -> None:
    loaded = make_tiny("llama")
    # _site_values reads the down projection's input: record there.
    recording = record(loaded, records,
                       RecordConfig(site=DEFAULT_SITE, token_policy="all", top_k=3),
                       progress=False)
    layer, index = 1, 7
    card = neuron_card(loaded, layer, index, recording, records)
    assert len(card.examples) == 3
    values = [example.value for example in card.examples]
    assert values == sorted(values, reverse=True)
    assert len({example.dialogue for example in card.examples}) == 3
    best_per_dialogue = {}
    for item in records:
        ids, activation = _site_values(loaded, item, layer)
        best_per_dialogue[item.id] = float(activation[:, index].max())
        for example in card.examples:
            if example.dialogue == item.id:
                assert example.position is not None
                assert example.value == pytest.approx(float(activation[example.position, index]),
                                                      abs=1e-4)
                assert example.token == loaded.tokenizer.decode([ids[example.position]])
                assert example.emotion == item.emotion
                assert f"[[{example.token}]]" in (example.context or "")
    top3 = sorted(best_per_dialogue.values(), reverse=True)[:3]
    assert values == pytest.approx(top3, abs=1e-4)
    text = format_card(card)
    assert "promotes" in text and card.examples[0].dialogue in text


def test_unknown_neuron_is_a_user_error(make_tiny: MakeTiny) -> None:
    loaded = make_tiny("llama")
    with pytest.raises(UserError, match=r"\(0, 80\)"):
        vocab_projection(loaded, 0, loaded.width)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """What the card command reads from a run directory, without running the whole pipeline."""
    out = tmp_path_factory.mktemp("run")
    loaded = load(str(tiny_model_dir))
    items = synthesize(2, seed=1, max_turns=2)
    recording = record(loaded, items, RecordConfig(top_k=4), progress=False)
    recording.save(out / "stats.safetensors", {"model": str(tiny_model_dir)})
    write_records(out / "data" / "identify.jsonl", items)
    identify(recording, IdentifyConfig(assignment="argmax", share=0.05), str(tiny_model_dir)).save(
        out / "neurons.json")
    manifest = {"emoneuron_version": "0.1.0", "created": "2025-01-01T00:00:00+00:00",
                "config": {"model": str(tiny_model_dir)}, "versions": {}, "timings": {},
                "model": {"name": str(tiny_model_dir), "n_layers": loaded.n_layers,
                          "width": loaded.width, "n_neurons": loaded.n_layers * loaded.width,
                          "site": recording.site},
                "data": {"hash": "", "counts": {}},
                "evaluation": {"description": "", "n_shot": 0, "chance": 1 / 6}}
    write_json(out / "manifest.json", manifest)
    return out


@pytest.mark.parametrize(("args", "named"), [
    (["99", "0"], "neuron (99, 0) does not exist in "),
    (["0", "-1"], "neuron (0, -1) does not exist in "),
    (["1", "3", "--top", "0"], "--top 0: must be at least 1"),
])
def test_cli_neuron_checks_its_neuron_and_top_before_loading_the_model(
        args: list[str], named: str, run_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A neuron outside the run's model once loaded the model first; --top 0 or -1 once
    ended in torch's traceback after it."""
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr("emoneuron.models.loading.load", refuse)
    assert main(["neuron", str(run_dir), *args]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and named in error, error


def test_cli_neuron_prints_a_card_of_a_run(run_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["neuron", str(run_dir), "1", "3"]) == 0
    text = capsys.readouterr().out
    assert "neuron L1 #3" in text and "top activations:" in text and "[[" in text
    assert main(["neuron", str(run_dir), "1", "3", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert (card["layer"], card["index"], len(card["examples"])) == (1, 3, 4)


def test_cli_neuron_of_a_model_alone_projects_only(tiny_model_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["neuron", str(tiny_model_dir), "0", "2"]) == 0
    text = capsys.readouterr().out
    assert "promotes" in text and "top activations" not in text
    assert main(["neuron", str(tiny_model_dir), "9", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_write_cards_for_each_emotions_top_neurons(run_dir: Path, tmp_path: Path) -> None:
    from emoneuron.data.schema import read_records
    from emoneuron.recording.statistics import Recording
    from emoneuron.selection.identify import NeuronSets

    loaded = load(json.loads((run_dir / "manifest.json").read_text())["config"]["model"])
    sets = NeuronSets.load(run_dir / "neurons.json")
    index = write_cards(loaded, Recording.load(run_dir / "stats.safetensors"),
                        read_records(run_dir / "data" / "identify.jsonl"), sets,
                        tmp_path / "cards", per_emotion=2)
    assert json.loads((tmp_path / "cards" / "index.json").read_text()) == index
    for emotion, neurons in sets.emotions.items():
        listed = index["emotions"][emotion]
        assert [(c["layer"], c["index"]) for c in listed] == [
            (n.layer, n.index) for n in neurons[:2]]
        for entry in listed:
            card = json.loads((tmp_path / "cards" / entry["json"]).read_text())
            assert emotion in card["member_of"]
            fragment = (tmp_path / "cards" / entry["html"]).read_text()
            assert fragment.startswith('<section class="neuron-card"')
