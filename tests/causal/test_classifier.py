"""Label scoring: the cached-prefix batched path must equal a plain full forward pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import build_word_tokenizer
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from emoneuron.causal.evaluation.classifier import (
    CONTENT_FREE,
    Classifier,
    chat_works,
    order_shots,
    query_text,
)
from emoneuron.causal.evaluation.intervene import Ablation, applied
from emoneuron.causal.evaluation.prompts import best_styles, check_prompts
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel


def _shots() -> list[Record]:
    return [Record(f"shot-{e}", e, (Turn("A", f"a {e} dialogue"),), "test") for e in EMOTIONS]


def _reference(classifier: Classifier, record: Record) -> np.ndarray:
    loaded = classifier.loaded
    ids = classifier.prefix_ids + loaded.tokenizer.encode(classifier.query(record),
                                                          add_special_tokens=False)
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.log_softmax(logits, -1)[classifier.answer_ids].numpy()


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2", "gpt-neox"])
def test_cached_batched_scores_equal_full_forward(
        family: str, make_word_tiny: Callable[[str], LoadedModel],
        records: list[Record]) -> None:
    classifier = Classifier(make_word_tiny(family), _shots(), batch_size=3, calibrate=False)
    scores = classifier.predict(records)
    expected = np.stack([_reference(classifier, r) for r in records])
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert len({len(query_text(r).split()) for r in records}) > 1  # batches really pad


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")


def test_chat_prompt_scores_equal_full_forward(make_tiny: Callable[[str], LoadedModel],
                                               records: list[Record]) -> None:
    tokenizer = build_word_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    loaded = dataclasses.replace(make_tiny("llama"), tokenizer=tokenizer)
    classifier = Classifier(loaded, _shots(), batch_size=3, calibrate=False, style="chat")
    query = classifier.query(records[0])
    assert query.startswith("<user> Dialogue:") and query.endswith("<assistant> Emotion:")
    expected = np.stack([_reference(classifier, r) for r in records])
    np.testing.assert_allclose(classifier.predict(records), expected, atol=1e-4)
    loaded_plain = dataclasses.replace(loaded, tokenizer=build_word_tokenizer())
    with pytest.raises(UserError, match="no chat template"):
        Classifier(loaded_plain, _shots(), style="chat")


def test_calibration_subtracts_the_content_free_scores(
        make_word_tiny: Callable[[str], LoadedModel], records: list[Record]) -> None:
    raw = Classifier(make_word_tiny("llama"), _shots(), batch_size=4, calibrate=False)
    calibrated = Classifier(make_word_tiny("llama"), _shots(), batch_size=4, calibrate=True)
    expected = raw.predict(records) - _reference(raw, CONTENT_FREE)
    np.testing.assert_allclose(calibrated.predict(records), expected, atol=1e-4)


def test_interventions_reach_the_scores(make_word_tiny: Callable[[str], LoadedModel],
                                        records: list[Record]) -> None:
    loaded = make_word_tiny("llama")
    classifier = Classifier(loaded, _shots(), batch_size=4)
    clean = classifier.predict(records)
    everything = Ablation.of({layer: range(loaded.width) for layer in range(loaded.n_layers)})
    with applied(loaded, everything):
        ablated = classifier.predict(records)
    assert np.abs(clean - ablated).max() > 1e-3
    np.testing.assert_allclose(classifier.predict(records), clean, atol=1e-6)


def test_labels_must_be_single_distinct_tokens(make_tiny: Callable[[str], LoadedModel]) -> None:
    words = build_word_tokenizer()
    Classifier(dataclasses.replace(make_tiny("llama"), tokenizer=words), _shots())
    # Without "disgust" in the vocabulary its label becomes <unk>: not a usable label.
    vocabulary = {w: i for w, i in words.get_vocab().items() if w != "disgust"}
    inner = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    inner.pre_tokenizer = pre_tokenizers.Whitespace()
    lacking = PreTrainedTokenizerFast(tokenizer_object=inner, pad_token="<pad>",
                                      unk_token="<unk>")
    with pytest.raises(UserError, match="single distinct tokens"):
        Classifier(dataclasses.replace(make_tiny("llama"), tokenizer=lacking), _shots())


def test_order_shots_needs_every_emotion() -> None:
    shots = _shots()
    assert sorted(s.emotion for s in order_shots(shots, seed=1)) == sorted(EMOTIONS)
    assert order_shots(shots, 1) != order_shots(shots, 2) or order_shots(shots, 1) != shots
    with pytest.raises(UserError, match="surprise"):
        order_shots(shots[:-1], seed=0)


def test_auto_style_uses_the_chat_template_for_instruct_models(
        make_tiny: Callable[[str], LoadedModel]) -> None:
    tokenizer = build_word_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    base = dataclasses.replace(make_tiny("llama"), tokenizer=tokenizer)
    instruct = dataclasses.replace(base, instruct=True)
    assert Classifier(instruct, _shots()).style == "chat"
    assert Classifier(base, _shots()).style == "plain"
    no_template = dataclasses.replace(instruct, tokenizer=build_word_tokenizer())
    assert Classifier(no_template, _shots()).style == "plain"


# Renders the conversation last message first: the query is not appended to the prefix.
REVERSED_TEMPLATE = ("{% for m in messages | reverse %}<{{ m['role'] }}> {{ m['content'] }}\n"
                     "{% endfor %}{% if add_generation_prompt %}<assistant> {% endif %}")


def test_a_chat_template_that_does_not_append_is_refused_fixed_and_left_out_by_best(
        make_tiny: Callable[[str], LoadedModel]) -> None:
    """Given, a chat prompt that cannot work is refused with advice that works; compared by
    --prompt-choice best (and evaluate), it is left out, as a missing template is."""
    tokenizer = build_word_tokenizer()
    tokenizer.chat_template = REVERSED_TEMPLATE
    instruct = dataclasses.replace(make_tiny("llama"), tokenizer=tokenizer, instruct=True)
    assert not chat_works(tokenizer)
    with pytest.raises(UserError, match=r"^this chat template does not extend a conversation "
                                        r"by appending; use --prompt plain$"):
        Classifier(instruct, _shots())  # auto: chat for an instruct model with a template
    assert Classifier(instruct, _shots(), style="plain").style == "plain"
    assert best_styles(instruct) == ["plain"]
    check_prompts(instruct, _shots(), "best", "auto", {"label": "--answer-format"})
    tokenizer.chat_template = CHAT_TEMPLATE
    assert chat_works(tokenizer) and best_styles(instruct) == ["chat", "plain"]


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_reusing_unchanged_lower_layers_gives_the_same_scores(
        family: str, make_word_tiny: Callable[[str], LoadedModel], records: list[Record]) -> None:
    loaded = make_word_tiny(family)
    top = loaded.n_layers - 1
    ablation = Ablation.of({top: range(0, loaded.width, 2)})
    assert ablation.first_layer == top
    classifier = Classifier(loaded, _shots(), batch_size=3)
    calls: list[int] = []
    bottom = loaded.adapter.site_modules(loaded.model)[0]
    with applied(loaded, ablation):
        full = classifier.predict(records)
        first = classifier.predict(records, unchanged_below=top)  # keeps layer inputs
        handle = bottom.register_forward_pre_hook(lambda _m, _a: calls.append(1))
        try:
            reused = classifier.predict(records, unchanged_below=top)  # skips lower layers
        finally:
            handle.remove()
    assert len(calls) == 1  # only the shared prefix ran through the bottom layer
    np.testing.assert_allclose(first, full, atol=1e-5)
    np.testing.assert_allclose(reused, full, atol=1e-5)
    assert not np.allclose(full, classifier.predict(records), atol=1e-4)
    layers = loaded.adapter.layers(loaded.model)
    assert all("forward" not in vars(layer) for layer in layers)  # nothing left patched


def test_fit_cuts_dialogues_longer_than_the_context_from_their_start(
        make_word_tiny: Callable[[str], LoadedModel]) -> None:
    loaded = make_word_tiny("llama")
    classifier = Classifier(loaded, _shots(), batch_size=4)
    budget = loaded.context_length - len(classifier.prefix_ids)
    long_turns = tuple(Turn("A" if i % 2 else "B", "I am so angry right now " * 40)
                       for i in range(6))
    ending = Turn("A", "We won the match today")
    long_record = Record("long", "anger", (*long_turns, ending), "test")
    short = _shots()[0]

    def length(record: Record) -> int:
        return len(loaded.tokenizer.encode(classifier.query(record), add_special_tokens=False))

    assert length(long_record) > budget
    fitted, cut = classifier.fit([short, long_record])
    assert cut == 1 and fitted[0] == short
    assert length(fitted[1]) <= budget and fitted[1].meta["truncated"] is True
    assert fitted[1].turns[-1] == ending and len(fitted[1].turns) < len(long_record.turns)
    classifier.predict(fitted)  # runs within the context


def _dialogue_positions(classifier: Classifier, suffix: list[int]) -> list[bool]:
    """Independently of the classifier's offsets: in a plain prompt over the word tokenizer,
    every query token is a turn's word except 'Dialogue', 'Emotion', ':' and speaker tags
    (the token right before a ':'). The test records have no ':' in their words."""
    pieces = [classifier.loaded.tokenizer.decode([i]) for i in suffix]
    scaffold = {"Dialogue", "Emotion", ":"}
    return [p not in scaffold and (k + 1 == len(pieces) or pieces[k + 1] != ":")
            for k, p in enumerate(pieces)]


@pytest.mark.parametrize("tokens", ["dialogue", "last"])
def test_token_scoped_interventions_equal_a_full_forward(
        tokens: str, make_word_tiny: Callable[[str], LoadedModel],
        records: list[Record]) -> None:
    """The classifier tells a restricted intervention its positions in every cached, batched
    pass; a single unbatched forward with the positions written out must agree."""
    loaded = make_word_tiny("llama")
    classifier = Classifier(loaded, _shots(), batch_size=3, calibrate=False)
    ablation = Ablation.of({layer: range(0, loaded.width, 2) for layer in range(loaded.n_layers)},
                           mode="clamp", strength=3.0, tokens=tokens)
    with applied(loaded, ablation) as scope:
        scores = classifier.predict(records, scope=scope)
        expected = []
        for record in records:
            suffix = loaded.tokenizer.encode(classifier.query(record), add_special_tokens=False)
            own = (_dialogue_positions(classifier, suffix) if tokens == "dialogue"
                   else [k == len(suffix) - 1 for k in range(len(suffix))])
            scope.mask = torch.tensor([[False] * len(classifier.prefix_ids) + own])
            expected.append(_reference(classifier, record))
    np.testing.assert_allclose(scores, np.stack(expected), atol=1e-4)
    clean = classifier.predict(records)
    with applied(loaded, dataclasses.replace(ablation, tokens="all")):
        everywhere = classifier.predict(records)
    assert np.abs(scores - clean).max() > 1e-3
    assert np.abs(scores - everywhere).max() > 1e-3


@pytest.mark.parametrize("per_emotion", [0, 2])
def test_zero_and_k_shot_prompts_score_like_a_full_forward(
        per_emotion: int, make_word_tiny: Callable[[str], LoadedModel],
        records: list[Record]) -> None:
    pool = _shots() + [dataclasses.replace(s, id=s.id + "-2", turns=(Turn("B", "another"),))
                       for s in _shots()]
    shots = order_shots(pool, seed=0, per_emotion=per_emotion)
    assert len(shots) == per_emotion * len(EMOTIONS)
    classifier = Classifier(make_word_tiny("llama"), shots, batch_size=3, calibrate=False)
    assert ("zero-shot" in classifier.description) == (per_emotion == 0)
    expected = np.stack([_reference(classifier, r) for r in records])
    np.testing.assert_allclose(classifier.predict(records), expected, atol=1e-4)
    with pytest.raises(UserError, match="3-shot-per-emotion"):
        order_shots(pool, seed=0, per_emotion=3)


def _fit_one_turn_at_a_time(classifier: Classifier, record: Record) -> tuple[Turn, ...]:
    """The rule before the single tokenisation: drop the earliest turn and tokenise again until
    the query fits, then cut the last turn's words (quadratic in the number of turns)."""
    loaded = classifier.loaded
    budget = loaded.context_length - len(classifier.prefix_ids)
    turns = list(record.turns)
    while len(loaded.tokenizer.encode(classifier.query(
            dataclasses.replace(record, turns=tuple(turns))), add_special_tokens=False)) > budget:
        if len(turns) > 1:
            turns.pop(0)
        else:
            words = turns[0].text.split()
            turns[0] = Turn(turns[0].speaker, " ".join(words[len(words) // 4 + 1:]) or "...")
    return tuple(turns)


def _long(name: str, lengths: list[int]) -> Record:
    """A dialogue whose turns have these numbers of words (drawn from the tokenizer's corpus)."""
    words = ("I", "am", "so", "angry", "right", "now", "we", "won", "the", "match", "today",
             "what", "a", "wonderful", "day")
    turns = tuple(Turn("AB"[i % 2], " ".join(words[(i + j) % len(words)] for j in range(n)))
                  for i, n in enumerate(lengths))
    return Record(name, "anger", turns, "test")


def test_fit_keeps_the_turns_dropping_one_at_a_time_kept(
        make_word_tiny: Callable[[str], LoadedModel]) -> None:
    classifier = Classifier(make_word_tiny("llama"), _shots(), batch_size=4)
    cases = [_long("many short", [7] * 400), _long("few long", [300, 250, 200, 150, 100]),
             _long("one giant", [3000]), _long("giant last", [5, 5, 2000]),
             _long("mixed", [1, 900, 3, 40, 600, 2, 2, 80, 300]), _long("fits", [5, 5])]
    for record in cases:
        fitted, _ = classifier.fit([record])
        assert fitted[0].turns == _fit_one_turn_at_a_time(classifier, record), record.id


def test_fit_tokenises_a_5000_turn_dialogue_a_few_times_not_once_per_turn(
        make_word_tiny: Callable[[str], LoadedModel], monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = make_word_tiny("llama")
    classifier = Classifier(loaded, _shots(), batch_size=4)
    calls: list[int] = []
    tokenizer_class = type(loaded.tokenizer)
    encode = tokenizer_class._encode_plus
    monkeypatch.setattr(tokenizer_class, "_encode_plus",
                        lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs))
    record = _long("endless", [6] * 5000)
    fitted, cut = classifier.fit([record])
    assert cut == 1 and fitted[0].turns == record.turns[-len(fitted[0].turns):]
    assert 1 <= len(calls) <= 4, len(calls)
    monkeypatch.undo()
    budget = loaded.context_length - len(classifier.prefix_ids)
    kept = fitted[0].turns
    lengths = [len(loaded.tokenizer.encode(
        classifier.query(dataclasses.replace(record, turns=record.turns[-n:])),
        add_special_tokens=False)) for n in (len(kept), len(kept) + 1)]
    assert lengths[0] <= budget < lengths[1]  # as many turns as fit, not one fewer
