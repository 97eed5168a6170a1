"""Every intervention mode and token scope equals a hand-computed forward pass of a tiny model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from mlp_reference import assert_unhooked, logits, reference_logits

from emoneuron.causal.evaluation.intervene import Ablation, applied, with_means
from emoneuron.errors import UserError
from emoneuron.models.adapters import ACTIVATION_SITE, DEFAULT_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.config import IdentifyConfig
from emoneuron.selection.neurons import Neuron, NeuronSets

MEANS = (0.3, -0.7, 1.1)  # one per chosen neuron, in the order of _chosen


@pytest.fixture(scope="module")
def input_ids(tokenizer) -> torch.Tensor:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(2)
    return torch.randint(3, len(tokenizer), (2, 10), generator=generator)


def _chosen(loaded: LoadedModel) -> dict[int, list[int]]:
    return {0: [1, 5], loaded.n_layers - 1: [2]}


def _mean_ablation(loaded: LoadedModel, chosen: Ablation | None = None) -> Ablation:
    """A mode-mean ablation of ``chosen`` (default: _chosen at the default site) whose reference
    means are MEANS, through a real statistics object recorded at its site."""
    chosen = chosen or Ablation.of(_chosen(loaded))
    stats = ActivationStats.zeros(loaded.n_layers, loaded.width, chosen.site, "all")
    stats.tokens[:] = torch.tensor([1.0, 3.0, 0.0, 0.0, 0.0, 0.0])  # 4 tokens pooled
    for (layer, index), mean in zip([(0, 1), (0, 5), (loaded.n_layers - 1, 2)], MEANS,
                                    strict=True):
        stats.sum[0, layer, index] = mean * 4 - 1.0
        stats.sum[1, layer, index] = 1.0
    return with_means(chosen, stats)


def _expected(mode: str, strength: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The edit each mode makes to the chosen neurons' activations (batch, tokens, neurons)."""
    if mode == "zero":
        return torch.zeros_like
    if mode == "clamp":
        return lambda h: torch.full_like(h, strength)
    if mode == "mean":
        # _chosen gives layer 0 two neurons and the top layer one: split MEANS the same way.
        return lambda h: torch.tensor(MEANS[:2] if h.shape[-1] == 2 else MEANS[2:]).expand_as(h)
    return lambda h: h * strength


MODES = [("zero", 0.0), ("mean", 0.0), ("scale", 0.5), ("amplify", 3.0), ("clamp", 2.5)]


def _ablation(loaded: LoadedModel, mode: str, strength: float, tokens: str = "all") -> Ablation:
    if mode == "mean":
        return replace(_mean_ablation(loaded), tokens=tokens)
    return Ablation.of(_chosen(loaded), mode=mode, strength=strength, tokens=tokens)


@pytest.mark.parametrize(("mode", "strength"), MODES, ids=[m for m, _ in MODES])
def test_mode_equals_hand_computed_forward(tiny: LoadedModel, input_ids: torch.Tensor,
                                           monkeypatch: pytest.MonkeyPatch, mode: str,
                                           strength: float) -> None:
    clean = logits(tiny, input_ids)
    reference = reference_logits(tiny, monkeypatch, input_ids, _chosen(tiny),
                                 _expected(mode, strength))
    with applied(tiny, _ablation(tiny, mode, strength)):
        changed = logits(tiny, input_ids)
    torch.testing.assert_close(changed, reference, atol=1e-5, rtol=1e-5)
    assert (changed - clean).abs().max() > 1e-4, "no effect: the test cannot fail"
    assert_unhooked(tiny)


def _restricted(edit: Callable[[torch.Tensor], torch.Tensor],
                where: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda h: torch.where(where.unsqueeze(-1), edit(h), h)


@pytest.mark.parametrize(("mode", "strength"), MODES, ids=[m for m, _ in MODES])
@pytest.mark.parametrize("tokens", ["dialogue", "last"])
def test_token_scopes_change_only_their_positions(make_tiny, input_ids: torch.Tensor,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch, tokens: str,
                                                  mode: str, strength: float) -> None:
    tiny = make_tiny("llama")
    where = torch.zeros(input_ids.shape, dtype=torch.bool)
    if tokens == "last":
        where[:, -1] = True
    else:
        where[0, 2:6] = True
        where[1, 4:9] = True
    reference = reference_logits(tiny, monkeypatch, input_ids, _chosen(tiny),
                                 _restricted(_expected(mode, strength), where))
    with applied(tiny, _ablation(tiny, mode, strength, tokens)) as scope:
        if tokens == "dialogue":
            scope.mask = where  # as the classifier does for each pass
        changed = logits(tiny, input_ids)
    torch.testing.assert_close(changed, reference, atol=1e-5, rtol=1e-5)
    clean = logits(tiny, input_ids)
    first = int(where[0].nonzero()[0])
    # Causal model: positions before the first changed one are untouched, later ones move.
    torch.testing.assert_close(changed[:, :first], clean[:, :first], atol=0, rtol=0)
    assert (changed[0, first:] - clean[0, first:]).abs().max() > 1e-4
    assert_unhooked(tiny)


def test_dialogue_scope_without_positions_is_refused(make_tiny, input_ids: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    tiny = make_tiny("llama")
    with pytest.raises(UserError, match="dialogue"), \
            applied(tiny, Ablation.of(_chosen(tiny), tokens="dialogue")):
        logits(tiny, input_ids)
    assert_unhooked(tiny)


@pytest.mark.parametrize(("mode", "strength", "message"), [
    ("scale", 1.5, "amplify"), ("scale", -0.1, r"\[0, 1\)"), ("amplify", 0.5, "above 1"),
    ("amplify", 1.0, "above 1"), ("clamp", float("nan"), "finite"), ("erase", 0.0, "mode"),
])
def test_bad_mode_or_strength_is_a_user_error(mode: str, strength: float, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Ablation.of({0: [1]}, mode=mode, strength=strength)


def test_unknown_scope_and_site_raise(make_tiny) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="token scope"):
        Ablation.of({0: [1]}, tokens="prefix")
    loaded = make_tiny("llama")
    with pytest.raises(UserError, match=r"site 'attn\.o_proj\.input' is not available"), \
            applied(loaded, Ablation.of({0: [1]}, site="attn.o_proj.input")):
        pytest.fail("unknown site accepted")
    with pytest.raises(UserError, match="with_means"), \
            applied(loaded, Ablation.of({0: [1]}, mode="mean")):
        pytest.fail("mode mean without values accepted")
    assert_unhooked(loaded)


@pytest.mark.parametrize("ablation", [
    Ablation.of({3: [7, 1, 4], 0: [2], 5: []}),
    Ablation.of({1: [0]}, mode="scale", strength=0.25, tokens="last"),
    Ablation.of({1: [0]}, mode="amplify", strength=4.0, tokens="dialogue"),
    Ablation.of({2: [3]}, mode="clamp", strength=-1.5),
    replace(Ablation.of({4: [9, 2], 1: [5]}, mode="mean"), values=((0.5,), (-1.0, 2.0))),
    Ablation.of({}, mode="scale", strength=0.0),
], ids=["zero", "scale-last", "amplify-dialogue", "clamp", "mean", "empty"])
def test_ablation_json_round_trip(ablation: Ablation) -> None:
    payload = json.loads(json.dumps(ablation.to_json()))  # through real JSON text
    assert Ablation.from_json(payload) == ablation
    assert Ablation.from_json(payload).to_json() == ablation.to_json()


# -- sites -------------------------------------------------------------------------------------

def _at(ablation: Ablation, site: str) -> Ablation:
    return replace(ablation, site=site)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize(("mode", "strength"), [("zero", 0.0), ("scale", 0.5)])
def test_zero_and_scale_at_the_activation_equal_the_default_site(
        make_tiny, input_ids: torch.Tensor, family: str, mode: str, strength: float) -> None:  # type: ignore[no-untyped-def]
    # act(gate) * up is linear in act(gate): zeroing or scaling either factor is the same.
    tiny = make_tiny(family)
    ablation = _ablation(tiny, mode, strength)
    with applied(tiny, ablation):
        default = logits(tiny, input_ids)
    with applied(tiny, _at(ablation, ACTIVATION_SITE)):
        activation = logits(tiny, input_ids)
    torch.testing.assert_close(activation, default, atol=1e-5, rtol=1e-5)
    assert (default - logits(tiny, input_ids)).abs().max() > 1e-4, "no effect"
    assert_unhooked(tiny)


@pytest.mark.parametrize(("mode", "strength"), [("mean", 0.0), ("clamp", 2.5)])
def test_mean_and_clamp_at_the_gate_activation_set_act_gate_not_the_product(
        make_tiny, input_ids: torch.Tensor, monkeypatch: pytest.MonkeyPatch, mode: str,
        strength: float) -> None:  # type: ignore[no-untyped-def]
    tiny = make_tiny("llama")
    edit = _expected(mode, strength)
    with monkeypatch.context() as patch:
        for layer, indices in _chosen(tiny).items():
            mlp = tiny.adapter.layers(tiny.model)[layer].mlp
            index = torch.tensor(indices)

            def forward(x: torch.Tensor, mlp: torch.nn.Module = mlp,
                        index: torch.Tensor = index) -> torch.Tensor:
                act = mlp.act_fn(mlp.gate_proj(x)).clone()
                act[..., index] = edit(act[..., index])
                return mlp.down_proj(act * mlp.up_proj(x))

            patch.setattr(mlp, "forward", forward)
        reference = logits(tiny, input_ids)
    ablation = _ablation(tiny, mode, strength)
    with applied(tiny, _at(ablation, ACTIVATION_SITE)):
        activation = logits(tiny, input_ids)
    with applied(tiny, ablation):
        default = logits(tiny, input_ids)
    with applied(tiny, _from_sets_at_the_activation(tiny, mode, strength)):
        from_sets = logits(tiny, input_ids)
    torch.testing.assert_close(activation, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_sets, reference, atol=1e-5, rtol=1e-5)
    assert (activation - default).abs().max() > 1e-4
    assert_unhooked(tiny)


def _from_sets_at_the_activation(loaded: LoadedModel, mode: str, strength: float) -> Ablation:
    """_chosen as fear's neurons of sets found at act(gate), ablated through Ablation.of_sets."""
    sets = NeuronSets("tiny", ACTIVATION_SITE, loaded.n_layers, loaded.width, IdentifyConfig(),
                      {"fear": [Neuron(layer, index, 1.0)
                                for layer, indices in _chosen(loaded).items()
                                for index in indices]})
    ablation = Ablation.of_sets(sets, "fear", mode, strength)
    assert ablation.site == ACTIVATION_SITE
    return _mean_ablation(loaded, ablation) if mode == "mean" else ablation


def test_mean_values_must_come_from_the_intervention_site(make_tiny) -> None:  # type: ignore[no-untyped-def]
    tiny = make_tiny("llama")
    stats = ActivationStats.zeros(tiny.n_layers, tiny.width, DEFAULT_SITE, "all")
    with pytest.raises(UserError, match=r"recorded at site 'mlp\.down_proj\.input'"):
        with_means(Ablation.of(_chosen(tiny), site=ACTIVATION_SITE), stats)


@pytest.mark.parametrize(("by_layer", "error", "named"), [
    ([1, 2], TypeError, "by_layer must map layers to neuron indices"),
    ({0: 3}, TypeError, "by_layer[0] must be a list of neuron indices, got 3"),
    ({0: "12"}, TypeError, "by_layer[0] must be a list"),
    ({0: [1.9]}, ValueError, "1.9 is not a whole number of 0 or more"),
    ({0.5: [1]}, ValueError, "0.5 is not a whole number"),
    ({0: [True]}, ValueError, "True is not a whole number"),
    ({0: [-1]}, ValueError, "-1 is not a whole number of 0 or more"),
    ({0: [2, 2]}, ValueError, "by_layer[0] lists a neuron twice"),
])
def test_an_ablation_of_anything_but_whole_distinct_neurons_names_by_layer(
        by_layer: object, error: type[Exception], named: str) -> None:
    """Once a list failed deep inside with AttributeError and 1.9 was truncated to neuron 1."""
    with pytest.raises(error) as raised:
        Ablation.of(by_layer)  # type: ignore[arg-type]
    assert named in str(raised.value)


def test_numpy_indices_are_whole_numbers() -> None:
    import numpy as np

    assert Ablation.of({np.int64(1): np.array([3, 1]).tolist()}).neurons == ((1, (1, 3)),)
    assert Ablation.of({1: list(np.array([3, 1]))}).size == 2
