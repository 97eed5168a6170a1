"""Neuron identification from hand-built statistics: lape, smd, assignment, overlap, files."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.identify import IdentifyConfig, Neuron, NeuronSets, identify
from emoneuron.selection.scores import compute_scores, entropy_selectivity

LAYERS, WIDTH = 3, 20
N_NEURONS = LAYERS * WIDTH
# Different token counts per emotion: probabilities must divide by each emotion's own count.
TOKENS = np.array([1000.0, 1200.0, 800.0, 1000.0, 900.0, 1100.0])

# (layer, index, emotion, P(active | emotion), P(active | any other emotion)); the off-target
# rates differ so the selectivity scores are well apart (about 0.84 down to 0.38).
SELECTIVE = [
    (0, 3, "anger", 0.95, 0.01),
    (1, 7, "disgust", 0.90, 0.02),
    (2, 11, "fear", 0.90, 0.03),
    (0, 15, "happiness", 0.85, 0.04),
    (1, 0, "sadness", 0.90, 0.05),
    (2, 19, "surprise", 0.95, 0.06),
    (2, 4, "anger", 0.90, 0.08),
]
# Perfectly selective for fear but active on 5% of its tokens only: below the activity floor.
RARE = (1, 12, "fear", 0.05, 0.0)


def _background(seed: int = 0) -> np.ndarray:
    """P(active | emotion) of unselective neurons: about half the time for every emotion."""
    return np.random.default_rng(seed).uniform(0.4, 0.6, size=(len(EMOTIONS), LAYERS, WIDTH))


def _set(probability: np.ndarray, layer: int, index: int, rates: dict[str, float],
         off: float) -> None:
    probability[:, layer, index] = [rates.get(e, off) for e in EMOTIONS]


def _stats(probability: np.ndarray) -> ActivationStats:
    """Counts as a recording would give them: active = round(P * tokens)."""
    active = np.round(probability * TOKENS[:, None, None])
    return ActivationStats(tokens=torch.tensor(TOKENS), active=torch.tensor(active),
                           sum=torch.tensor(active * 0.5), sum_sq=torch.tensor(active * 0.5))


def _lape_probability() -> np.ndarray:
    probability = _background()
    for layer, index, emotion, on, off in [*SELECTIVE, RARE]:
        _set(probability, layer, index, {emotion: on}, off)
    return probability


def _selectivity(stats: ActivationStats, layer: int, index: int) -> float:
    """1 - H / log 6 of the normalised activation probabilities, computed independently."""
    p = stats.active[:, layer, index].numpy() / TOKENS
    q = p / p.sum()
    q = q[q > 0]
    return float(1 + (q * np.log(q)).sum() / math.log(len(EMOTIONS)))


def _positions(neurons: list[Neuron]) -> list[tuple[int, int]]:
    return [(n.layer, n.index) for n in neurons]


def _ranked(stats: ActivationStats, candidates: list[tuple[int, int, str, float, float]]
            ) -> list[tuple[int, int, str]]:
    scored = sorted(candidates, key=lambda c: -_selectivity(stats, c[0], c[1]))
    return [(layer, index, emotion) for layer, index, emotion, _, _ in scored]


# -- lape --------------------------------------------------------------------------------------

def test_lape_selects_the_selective_neurons_with_their_emotion_and_score() -> None:
    stats = _stats(_lape_probability())
    config = IdentifyConfig(assignment="argmax", share=0.12)  # round(0.12 * 60) = 7 neurons
    sets = identify(stats, config, "toy-model")
    assert (sets.model, sets.site, sets.n_layers, sets.width) == ("toy-model", stats.site,
                                                                  LAYERS, WIDTH)
    assert sets.config == config
    assert set(sets.emotions) == set(EMOTIONS)
    ranked = _ranked(stats, SELECTIVE)
    for emotion in EMOTIONS:
        expected = [(layer, index) for layer, index, e in ranked if e == emotion]
        assert _positions(sets.emotions[emotion]) == expected, emotion
        for neuron in sets.emotions[emotion]:
            assert neuron.score == pytest.approx(
                _selectivity(stats, neuron.layer, neuron.index), abs=1e-9)
    anger = sets.emotions["anger"]
    assert _positions(anger) == [(0, 3), (2, 4)]
    assert anger[0].score > anger[1].score
    assert sum(len(ns) for ns in sets.emotions.values()) == 7


def test_fully_selective_neuron_scores_one() -> None:
    probability = _background()
    _set(probability, 0, 0, {"surprise": 0.9}, 0.0)
    sets = identify(_stats(probability), IdentifyConfig(assignment="argmax", share=0.02), "m")
    (neuron,) = sets.emotions["surprise"]
    assert (neuron.layer, neuron.index) == (0, 0)
    assert neuron.score == pytest.approx(1.0, abs=1e-9)


def test_activity_floor_drops_a_rarely_active_neuron() -> None:
    stats = _stats(_lape_probability())
    default = identify(stats, IdentifyConfig(assignment="argmax", share=0.12), "m")
    assert (RARE[0], RARE[1]) not in {pos for ns in default.emotions.values()
                                      for pos in _positions(ns)}
    # The same neuron is the most selective of all once the floor is removed: so it was the
    # floor, not its score, that kept it out.
    no_floor = identify(stats, IdentifyConfig(assignment="argmax",
                                              share=0.12, activity_quantile=0.0), "m")
    fear = no_floor.emotions["fear"]
    assert _positions(fear)[0] == (RARE[0], RARE[1])
    assert fear[0].score == pytest.approx(1.0)


@pytest.mark.parametrize(("share", "count"), [(0.02, 1), (0.05, 3), (0.1, 6), (0.12, 7)])
def test_share_controls_the_count(share: float, count: int) -> None:
    assert round(share * N_NEURONS) == count
    stats = _stats(_lape_probability())
    sets = identify(stats, IdentifyConfig(assignment="argmax", share=share), "m")
    chosen = {(n.layer, n.index) for ns in sets.emotions.values() for n in ns}
    assert len(chosen) == sum(len(ns) for ns in sets.emotions.values()) == count
    assert chosen == {(layer, index) for layer, index, _ in _ranked(stats, SELECTIVE)[:count]}


def test_tiny_share_still_keeps_one_neuron() -> None:
    sets = identify(_stats(_lape_probability()), IdentifyConfig(assignment="argmax",
                                                                share=0.001), "m")
    assert _positions(sets.emotions["anger"]) == [(0, 3)]
    assert sum(len(ns) for ns in sets.emotions.values()) == 1


# -- assignment and overlap --------------------------------------------------------------------

DOUBLE = (1, 5)  # fires for anger and disgust
SINGLE = (0, 2)  # fires for sadness


def _two_emotion_stats() -> ActivationStats:
    probability = _background(seed=1)
    _set(probability, *DOUBLE, {"anger": 0.9, "disgust": 0.85}, 0.02)
    _set(probability, *SINGLE, {"sadness": 0.9}, 0.02)
    return _stats(probability)


def test_normalised_assignment_puts_a_shared_neuron_in_both_emotions() -> None:
    stats = _two_emotion_stats()
    sets = identify(stats, IdentifyConfig(share=0.03, assignment="normalised"), "m")  # 2 neurons
    assert _positions(sets.emotions["anger"]) == [DOUBLE]
    assert _positions(sets.emotions["disgust"]) == [DOUBLE]
    assert _positions(sets.emotions["sadness"]) == [SINGLE]
    for emotion in ("fear", "happiness", "surprise"):
        assert sets.emotions[emotion] == []
    assert sets.emotions["anger"][0].score == sets.emotions["disgust"][0].score
    assert sets.emotions["anger"][0].score == pytest.approx(_selectivity(stats, *DOUBLE))
    anger, disgust, sadness = (EMOTIONS.index(e) for e in ("anger", "disgust", "sadness"))
    expected = [[0] * len(EMOTIONS) for _ in EMOTIONS]
    for a, b in ((anger, anger), (disgust, disgust), (anger, disgust), (disgust, anger),
                 (sadness, sadness)):
        expected[a][b] = 1
    assert sets.overlap == expected


def test_argmax_assignment_is_exclusive() -> None:
    sets = identify(_two_emotion_stats(), IdentifyConfig(assignment="argmax", share=0.03), "m")
    assert _positions(sets.emotions["anger"]) == [DOUBLE]  # 0.9 beats disgust's 0.85
    assert sets.emotions["disgust"] == []
    assert _positions(sets.emotions["sadness"]) == [SINGLE]
    positions = [pos for ns in sets.emotions.values() for pos in _positions(ns)]
    assert len(positions) == len(set(positions)) == 2


# -- smd ---------------------------------------------------------------------------------------

def _smd_stats() -> ActivationStats:
    """Background: mean ~ N(0, 0.1) per emotion, variance 1. (2, 8): mean 1 for fear, 0
    otherwise, variance 0.01 (d = 10). (0, 1): mean 3 for fear but variance 100 (d = 0.3)."""
    rng = np.random.default_rng(2)
    shape = (len(EMOTIONS), LAYERS, WIDTH)
    mean = rng.normal(0.0, 0.1, size=shape)
    var = np.ones(shape)
    fear = EMOTIONS.index("fear")
    for (layer, index), shift, variance in (((2, 8), 1.0, 0.01), ((0, 1), 3.0, 100.0)):
        mean[:, layer, index] = 0.0
        mean[fear, layer, index] = shift
        var[:, layer, index] = variance
    t = TOKENS[:, None, None]
    return ActivationStats(tokens=torch.tensor(TOKENS),
                           active=torch.tensor(0.5 * t * np.ones(shape)),
                           sum=torch.tensor(mean * t),
                           sum_sq=torch.tensor((var + mean ** 2) * t))


def test_smd_picks_the_shifted_low_variance_neuron() -> None:
    sets = identify(_smd_stats(), IdentifyConfig(assignment="argmax",
                                                 statistic="smd", share=0.02), "m")  # 1 neuron
    assert _positions(sets.emotions["fear"]) == [(2, 8)]
    # Cohen's d with pooled variance: (1 - 0) / sqrt(0.01).
    assert sets.emotions["fear"][0].score == pytest.approx(10.0, rel=1e-6)
    assert all(sets.emotions[e] == [] for e in EMOTIONS if e != "fear")


def test_smd_ranks_effect_size_not_raw_shift() -> None:
    # share 1: every neuron is kept and goes to the emotion of its largest d.
    sets = identify(_smd_stats(), IdentifyConfig(assignment="argmax",
                                                 statistic="smd", share=1.0), "m")
    assert sum(len(ns) for ns in sets.emotions.values()) == N_NEURONS
    fear = sets.emotions["fear"]
    assert _positions(fear)[0] == (2, 8)
    scores = [n.score for n in fear]
    assert scores == sorted(scores, reverse=True)
    # The large-shift, large-variance neuron: d = 3 / sqrt(100), far below the first.
    (wide,) = [n for n in fear if (n.layer, n.index) == (0, 1)]
    assert wide.score == pytest.approx(0.3, rel=1e-6)


# -- files -------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path: Path) -> None:
    sets = identify(_two_emotion_stats(),
                    IdentifyConfig(share=0.03, assignment="normalised", normalised_threshold=0.3),
                    "toy")
    path = tmp_path / "run" / "neurons.json"
    sets.save(path)
    loaded = NeuronSets.load(path)
    assert loaded == sets
    assert loaded.config == sets.config
    payload = json.loads(path.read_text())
    assert payload["statistic"] == "lape" and "method" not in payload
    assert payload["overlap"]["emotions"] == list(EMOTIONS)


def test_round_trip_of_hand_built_sets(tmp_path: Path) -> None:
    sets = NeuronSets(model="m", site="mlp.down_proj.input", n_layers=4, width=9,
                      config=IdentifyConfig(assignment="argmax", statistic="smd", share=0.5),
                      emotions={e: [Neuron(i % 4, i, 1.0 / (i + 1)) for i in range(k)]
                                for k, e in enumerate(EMOTIONS)},
                      overlap=[[1] * 6 for _ in range(6)])
    sets.save(tmp_path / "n.json")
    assert NeuronSets.load(tmp_path / "n.json") == sets


@pytest.mark.parametrize("overlap", [[], {"counts": []}, None, "absent"])
def test_a_neurons_file_without_overlap_counts_loads_with_none(
        tmp_path: Path, overlap: Any) -> None:
    """Written by hand, or before the counts were kept: the sets load, with no counts (issue
    24 listed ``"overlap": []`` among the tracebacks)."""
    sets = NeuronSets(model="m", site="mlp.down_proj.input", n_layers=4, width=9,
                      config=IdentifyConfig(assignment="argmax", statistic="smd", share=0.5),
                      emotions={e: [Neuron(k % 4, k, 1.0)] for k, e in enumerate(EMOTIONS)},
                      overlap=[[1] * 6 for _ in range(6)])
    payload = sets.to_json()
    if overlap == "absent":
        del payload["overlap"]
    else:
        payload["overlap"] = overlap
    (tmp_path / "n.json").write_text(json.dumps(payload))
    assert NeuronSets.load(tmp_path / "n.json") == replace(sets, overlap=[])


@pytest.mark.parametrize("content", [
    "this is not json",
    "",
    "[1, 2, 3]",
    "null",
    "{}",
    '{"method": "lape"}',
    json.dumps({"model": "m", "site": "s", "method": "lape", "parameters": {"bogus": 1},
                "n_layers": 1, "width": 1, "emotions": {}}),
    json.dumps({"model": "m", "site": "s", "method": "lape", "parameters": {},
                "n_layers": 1, "width": 1, "emotions": {"anger": []}}),
    json.dumps({"model": "m", "site": "s", "method": "lape", "parameters": {},
                "n_layers": 1, "width": 1,
                "emotions": {e: [{"layer": "x", "index": 0, "score": 1}] for e in EMOTIONS}}),
])
def test_garbage_neurons_file_is_a_user_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "neurons.json"
    path.write_text(content)
    with pytest.raises(UserError) as caught:
        NeuronSets.load(path)
    assert str(path) in str(caught.value)


def test_missing_neurons_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"not a valid neurons\.json"):
        NeuronSets.load(tmp_path / "absent.json")


# -- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"statistic": "entropy"}, {"statistic": "LAPE"}, {"assignment": "all"}, {"assignment": ""},
    {"share": 0.0}, {"share": -0.01}, {"share": 1.5}, {"share": float("nan")},
])
def test_bad_config_is_a_user_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(UserError):
        IdentifyConfig(**kwargs)


def test_share_one_is_accepted() -> None:
    assert IdentifyConfig(assignment="argmax", share=1.0).share == 1.0


def test_activity_quantile_outside_unit_interval_is_a_user_error() -> None:
    stats = _stats(_lape_probability())
    with pytest.raises(UserError):
        identify(stats, IdentifyConfig(assignment="argmax", activity_quantile=1.5), "m")


def test_never_active_neurons_are_not_selective() -> None:
    stats = ActivationStats.zeros(1, 3, "site", "dialogue")
    stats.tokens += 10
    stats.active[:, 0, 1] = 5  # fires for every emotion: entropy maximal
    stats.active[0, 0, 2] = 9  # fires only for anger: fully selective
    _, selectivity = entropy_selectivity(stats)
    assert selectivity[0].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)


# -- rules, distribution -------------------------------------------------------------------------

def test_per_emotion_rule_takes_each_emotions_top_n() -> None:
    stats = _stats(_lape_probability())
    sets = identify(stats, IdentifyConfig(rule="per-emotion", top_n=2, assignment="normalised"),
                    "m")
    normalised, _ = entropy_selectivity(stats)
    per_emotion = compute_scores(stats, "lape").per_emotion
    for e, emotion in enumerate(EMOTIONS):
        ranked = per_emotion[e].flatten().topk(2).indices.tolist()
        expected = [(i // WIDTH, i % WIDTH) for i in ranked]
        assert _positions(sets.emotions[emotion]) == expected, emotion
        assert [n.score for n in sets.emotions[emotion]] == pytest.approx(
            [float(normalised[e].flatten()[i]) for i in ranked])
    # The planted anger neurons lead anger's list.
    assert set(_positions(sets.emotions["anger"])) == {(0, 3), (2, 4)}


def test_per_emotion_argmax_lists_are_disjoint() -> None:
    stats = _stats(_lape_probability())
    sets = identify(stats, IdentifyConfig(assignment="argmax",
                                          rule="per-emotion", top_n=4, activity_quantile=0.0),
                    "m")
    positions = [p for ns in sets.emotions.values() for p in _positions(ns)]
    assert len(positions) == len(set(positions)) > 3 * len(EMOTIONS)
    strongest = entropy_selectivity(stats)[0].argmax(0)
    for e, emotion in enumerate(EMOTIONS):
        assert 0 < len(sets.emotions[emotion]) <= 4
        assert all(int(strongest[layer, index]) == e for layer, index in
                   _positions(sets.emotions[emotion]))


def test_per_layer_rule_keeps_the_share_of_every_layer() -> None:
    stats = _stats(_lape_probability())
    sets = identify(stats, IdentifyConfig(assignment="argmax", rule="per-layer", share=0.1,
                                          activity_quantile=0.0), "m")  # 2 per layer
    per_layer = sets.distribution()["per_layer"]
    assert [sum(per_layer[e][layer] for e in EMOTIONS) for layer in range(LAYERS)] == [2] * LAYERS
    _, selectivity = entropy_selectivity(stats)
    for layer in range(LAYERS):
        best = set(selectivity[layer].topk(2).indices.tolist())
        chosen = {n.index for ns in sets.emotions.values() for n in ns if n.layer == layer}
        assert chosen == best


def test_neurons_json_names_statistic_rule_and_distribution(tmp_path: Path) -> None:
    sets = identify(_stats(_lape_probability()), IdentifyConfig(assignment="argmax",
                                                                share=0.12), "m")
    sets.save(tmp_path / "neurons.json")
    payload = json.loads((tmp_path / "neurons.json").read_text())
    assert (payload["statistic"], payload["rule"]) == ("lape", "global")
    assert payload["parameters"]["top_n"] == 50
    assert payload["distribution"]["per_layer"]["anger"] == [1, 0, 1]  # (0, 3) and (2, 4)
    depth = payload["distribution"]["relative_depth"]
    assert len(depth["bins"]) == 10 and sum(depth["counts"]["anger"]) == 2
    assert depth["counts"]["anger"][0] == 1 and depth["counts"]["anger"][6] == 1  # 2/3 -> 0.6
    selected = payload["overlap"]["selected"]
    assert [selected[i][i] for i in range(len(EMOTIONS))] == [
        len(sets.emotions[e]) for e in EMOTIONS]
    assert NeuronSets.load(tmp_path / "neurons.json") == sets


@pytest.mark.parametrize("kwargs", [{"rule": "top"}, {"top_n": 0}])
def test_bad_rule_is_a_user_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(UserError):
        IdentifyConfig(**kwargs)


# -- Tang et al.'s LAPE assignment ------------------------------------------------------------

def _tang_et_al(over_zero: torch.Tensor, n: torch.Tensor, top_rate: float = 0.01,
                filter_rate: float = 0.95, activation_bar_ratio: float = 0.95,
                ) -> dict[str, list[tuple[int, int]]]:
    """Transcription of Tang et al.'s identify.py (RUCAIBox/Language-Specific-Neurons),
    ``over_zero`` (layer x inter x group) and ``n`` (group); emotions for languages."""
    activation_probs = over_zero / n
    normed_activation_probs = activation_probs / activation_probs.sum(dim=-1, keepdim=True)
    normed_activation_probs[torch.isnan(normed_activation_probs)] = 0
    log_probs = torch.where(normed_activation_probs > 0, normed_activation_probs.log(), 0)
    entropy = -torch.sum(normed_activation_probs * log_probs, dim=-1)
    flattened_probs = activation_probs.flatten()
    top_prob_value = flattened_probs.kthvalue(
        round(len(flattened_probs) * filter_rate)).values.item()
    top_position = (activation_probs > top_prob_value).sum(dim=-1)
    entropy[top_position == 0] = torch.inf
    flattened_entropy = entropy.flatten()
    _, index = flattened_entropy.topk(round(len(flattened_entropy) * top_rate), largest=False)
    row_index = index // entropy.size(1)
    col_index = index % entropy.size(1)
    selected_probs = activation_probs[row_index, col_index].transpose(0, 1)
    activation_bar = flattened_probs.kthvalue(
        round(len(flattened_probs) * activation_bar_ratio)).values.item()
    lang, indice = torch.where(selected_probs > activation_bar)
    found: dict[str, list[tuple[int, int]]] = {e: [] for e in EMOTIONS}
    for group, i in zip(lang.tolist(), indice.tolist(), strict=True):
        found[EMOTIONS[group]].append((int(row_index[i]), int(col_index[i])))
    return {e: sorted(positions) for e, positions in found.items()}


@pytest.mark.parametrize("share", [0.01, 0.05])
def test_lape_assignment_matches_tang_et_als_code_on_a_random_recording(share: float) -> None:
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(500, 1500, (len(EMOTIONS),), generator=generator).double()
    # A neuron's rate times per-emotion factors: selective neurons clear the bar for one
    # emotion or several.
    rate = torch.rand(1, 4, 300, generator=generator)
    factors = torch.rand(len(EMOTIONS), 4, 300, generator=generator)
    active = (rate * factors * tokens.view(-1, 1, 1)).round()
    stats = ActivationStats(tokens=tokens, active=active, sum=active, sum_sq=active)
    sets = identify(stats, IdentifyConfig(share=share, assignment="lape"), "m")
    expected = _tang_et_al(active.permute(1, 2, 0), tokens, top_rate=share)
    assert {e: sorted(_positions(ns)) for e, ns in sets.emotions.items()} == expected
    distinct = {position for positions in expected.values() for position in positions}
    assert sum(map(len, expected.values())) > len(distinct)  # some belong to several


def _spread_stats() -> ActivationStats:
    """Three neurons firing on 90% of the tokens of four emotions and 20% of the other two:
    the most selective, yet no normalised probability reaches 0.25 (0.9 / 4.0 = 0.225)."""
    probability = _background(seed=4)
    for layer, index in ((0, 1), (1, 2), (2, 3)):
        _set(probability, layer, index, dict.fromkeys(EMOTIONS[:4], 0.9), 0.2)
    return _stats(probability)


def test_lape_assigns_the_neurons_the_normalised_threshold_leaves_unassigned() -> None:
    stats = _spread_stats()
    with pytest.warns(UserWarning, match=f"no neurons assigned to {', '.join(EMOTIONS)}: no "
                      "kept neuron's normalised"):
        old = identify(stats, IdentifyConfig(share=0.05, assignment="normalised"), "m")
    assert all(ns == [] for ns in old.emotions.values())
    lape = identify(stats, IdentifyConfig(share=0.05, assignment="lape"), "m")
    for emotion in EMOTIONS[:4]:
        assert sorted(_positions(lape.emotions[emotion])) == [(0, 1), (1, 2), (2, 3)]
    assert lape.overlap[0][:4] == [3, 3, 3, 3]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"assignment": "multi"}, "use 'lape' .* or 'normalised'"),
    ({"assignment": "lape", "rule": "per-emotion"}, "global or per-layer"),
])
def test_retired_or_meaningless_assignment_is_a_user_error(kwargs: dict[str, object],
                                                            message: str) -> None:
    with pytest.raises(UserError, match=message):
        IdentifyConfig(**kwargs)  # type: ignore[arg-type]


def test_old_multi_neurons_json_loads_as_normalised(tmp_path: Path) -> None:
    sets = identify(_two_emotion_stats(), IdentifyConfig(share=0.03, assignment="normalised"),
                    "m")
    payload = sets.to_json()
    payload["parameters"]["assignment"] = "multi"
    payload["parameters"]["multi_threshold"] = payload["parameters"].pop("normalised_threshold")
    (tmp_path / "neurons.json").write_text(json.dumps(payload))
    assert NeuronSets.load(tmp_path / "neurons.json") == sets


def test_selection_methods_name_their_site_and_rule() -> None:
    from emoneuron.selection.identify import SELECTION_METHODS, selection_method

    lape = SELECTION_METHODS["lape"]
    assert (lape.label, lape.site) == ("LAPE (Tang et al. 2024)", "mlp.activation")
    assert (lape.config.statistic, lape.config.rule, lape.config.share, lape.config.assignment) == (
        "lape", "global", 0.01, "lape")
    assert "LAPE" not in SELECTION_METHODS["entropy-argmax"].label
    assert SELECTION_METHODS["entropy-argmax"].site == "mlp.down_proj.input"
    assert lape.overridden(lape.site, lape.config) is lape
    changed = lape.overridden("mlp.down_proj.input", replace(lape.config, statistic="smd"))
    assert changed.site == "mlp.down_proj.input" and changed.config.statistic == "smd"
    assert changed.config.share == 0.01
    assert changed.label == "LAPE (Tang et al. 2024), with statistic smd, site mlp.down_proj.input"
    with pytest.raises(UserError, match=r"use one of lape, entropy-argmax, auroc"):
        selection_method("tang")
    with pytest.raises(UserError, match=r"--site 'mlp\.up': use one of"):
        lape.overridden("mlp.up", lape.config)  # type: ignore[arg-type]


def test_identify_names_an_argument_of_the_wrong_type() -> None:
    """Once AttributeError or TypeError deep inside the selection."""
    stats = _two_emotion_stats()
    with pytest.raises(TypeError, match=r"config must be an IdentifyConfig, got 'lape'; e\.g\. "
                                        r"IdentifyConfig\(statistic='lape'\)"):
        identify(stats, "lape", "m")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stats must be a Recording"):
        identify(np.zeros(3), IdentifyConfig(), "m")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be the model's name"):
        identify(stats, IdentifyConfig(), None)  # type: ignore[arg-type]
