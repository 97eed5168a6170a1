"""A planted effect the whole pipeline must find: a tiny Llama whose decision is made by a known
set of neurons per emotion.

Layer 0's attention has zero query and key weights, so it attends uniformly and its value/output
maps copy the mean of six "keyword" embedding dimensions over the sequence into the last
position. Each emotion's keyword tokens carry a unit in that emotion's dimension; no other token
has any. In layer 1, ``PLANTED`` neurons per emotion read that dimension (gate and up rows) and
write, through their down-projection column, the one dimension the emotion's label token is
unembedded from. Every other weight is the model's small random initialisation.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import build_word_tokenizer

from emoneuron.causal.conditions.grid import grid
from emoneuron.causal.conditions.store import ConditionStore, correctness
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import CHANCE, Classifier
from emoneuron.causal.evaluation.execution import Sources, execute
from emoneuron.causal.experiments.attribution import attribute
from emoneuron.causal.inference.significance import mcnemar_exact
from emoneuron.causal.inference.tables import ablation_tables
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.models.adapters import DEFAULT_SITE, adapter_for
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.recorder import record
from emoneuron.selection.identify import IdentifyConfig, Neuron, NeuronSets, identify

KEYWORDS = {"anger": ("furious", "livid", "rage"), "disgust": ("gross", "revolting", "nasty"),
            "fear": ("terrified", "afraid", "dread"),
            "happiness": ("joyful", "delighted", "cheerful"),
            "sadness": ("grief", "tearful", "gloomy"),
            "surprise": ("astonished", "stunned", "unexpected")}
FILLER = ("the", "day", "we", "went", "home", "and", "then", "it", "was", "so", "very", "all")
HIDDEN, WIDTH, PLANTED = 32, 64, 3
LABEL_DIMENSION = 8  # label e is read from dimension LABEL_DIMENSION + e; keyword e from e


def planted(emotion: str) -> list[int]:
    """The layer-1 neurons that carry ``emotion``."""
    first = EMOTIONS.index(emotion) * PLANTED
    return list(range(first, first + PLANTED))


def _build() -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_word_tokenizer(tuple(w for words in KEYWORDS.values() for w in words)
                                     + FILLER)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=WIDTH,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256, tie_word_embeddings=False,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    keyword = torch.eye(HIDDEN)[:len(EMOTIONS)]
    label = torch.eye(HIDDEN)[LABEL_DIMENSION:LABEL_DIMENSION + len(EMOTIONS)]
    with torch.no_grad():
        embedding = model.get_input_embeddings().weight
        embedding[:, :len(EMOTIONS)] = 0
        for e, words in enumerate(KEYWORDS.values()):
            for word in words:
                embedding[tokenizer.convert_tokens_to_ids(word), e] = 1.0
        attention = model.model.layers[0].self_attn
        attention.q_proj.weight.zero_()
        attention.k_proj.weight.zero_()
        for projection in (attention.v_proj, attention.o_proj):
            projection.weight[:len(EMOTIONS), :len(EMOTIONS)] = torch.eye(len(EMOTIONS))
        mlp = model.model.layers[1].mlp
        for e, emotion in enumerate(EMOTIONS):
            for neuron in planted(emotion):
                mlp.gate_proj.weight[neuron] = keyword[e]
                mlp.up_proj.weight[neuron] = keyword[e]
                mlp.down_proj.weight[:, neuron] = label[e]
            label_token = tokenizer.convert_tokens_to_ids(emotion)
            model.lm_head.weight[label_token] = label[e]
    return LoadedModel(name="planted-llama", model=model, tokenizer=tokenizer,
                       adapter=adapter_for(model), directory=None, instruct=False)


def _dialogues(per_emotion: int, seed: int, prefix: str) -> list[Record]:
    rng = random.Random(seed)

    def turn(emotion: str) -> str:
        words = [*rng.sample(FILLER, 4), rng.choice(KEYWORDS[emotion])]
        rng.shuffle(words)
        return " ".join(words)

    return [Record(f"{prefix}-{emotion}-{i}", emotion,
                   (Turn("A", turn(emotion)), Turn("B", turn(emotion))), "planted")
            for emotion in EMOTIONS for i in range(per_emotion)]


@pytest.fixture(scope="module")
def setup() -> Iterator[dict[str, Any]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    loaded = _build()
    classifier = Classifier(loaded, [], batch_size=16)
    yield {"classifier": classifier, "identification": _dialogues(8, 0, "identify"),
           "evaluation": _dialogues(20, 1, "evaluate")}
    torch.set_num_threads(threads)


def _planted_sets() -> NeuronSets:
    return NeuronSets(model="planted-llama", site=DEFAULT_SITE, n_layers=2, width=WIDTH,
                      config=IdentifyConfig(assignment="argmax", rule="per-emotion", top_n=PLANTED),
                      emotions={e: [Neuron(1, i, 1.0) for i in planted(e)] for e in EMOTIONS})


def test_the_planted_neurons_decide_and_the_tables_see_it(setup: dict[str, Any],
                                                           tmp_path: Path) -> None:
    classifier, evaluation = setup["classifier"], setup["evaluation"]
    sets = _planted_sets()
    conditions = grid(Design(control_seeds=(0, 1, 2), controls=("random",), proportions=(),
                             dose_strengths=()))
    store = ConditionStore(tmp_path / "conditions.jsonl", "planted")
    stats = record(classifier.loaded, setup["identification"], progress=False).stats()
    execute(classifier, sets, Sources(stats), evaluation, conditions, store, progress=False)
    tables = ablation_tables(store, evaluation, conditions)

    ablation = tables["ablation"]
    baseline = ablation[ablation.condition == "baseline"].set_index("eval_emotion").accuracy
    assert (baseline >= 0.95).all()
    masks = ablation[ablation.condition == "mask"]
    own = masks[masks.masked_emotion == masks.eval_emotion]
    others = masks[masks.masked_emotion != masks.eval_emotion]
    assert (own.accuracy <= CHANCE + 0.25).all()
    assert (others.accuracy >= 0.95).all()

    effects = tables["effects"]
    self_effects = effects[effects.masked_emotion == effects.eval_emotion]
    assert (self_effects.p_mcnemar_baseline_holm < 0.01).all()
    assert (tables["specificity"].ci_low > 0).all()

    base = correctness(store.done[conditions[0].key], evaluation)
    for condition in conditions:
        if condition.kind == "control":
            frame = correctness(store.done[condition.key], evaluation)
            mine = (frame.eval_emotion == condition.masked_emotion).to_numpy()
            assert mcnemar_exact(base.correct.to_numpy()[mine],
                                 frame.correct.to_numpy()[mine]) > 0.05


def test_attribution_ranks_the_planted_neurons_first(setup: dict[str, Any]) -> None:
    stats = attribute(setup["classifier"], setup["identification"], progress=False)
    for statistic in ("attribution", "attribution-specific"):
        sets = identify(stats, IdentifyConfig(assignment="argmax",
                                              statistic=statistic, rule="per-emotion",
                                              top_n=PLANTED), "planted-llama")
        for emotion in EMOTIONS:
            assert sorted((n.layer, n.index) for n in sets.emotions[emotion]) == [
                (1, i) for i in planted(emotion)]
    # Neurons outside every planted set barely touch the decision; another emotion's planted
    # neurons do (negatively: they push towards a wrong label), hence the exclusion.
    mean = stats.mean_per_dialogue()
    unplanted = torch.ones((2, WIDTH), dtype=torch.bool)
    unplanted[1, :PLANTED * len(EMOTIONS)] = False
    for e, emotion in enumerate(EMOTIONS):
        assert mean[e, 1, planted(emotion)].min() > 10 * mean[e][unplanted].abs().max()
