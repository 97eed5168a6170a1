"""Answer formats: label scores as before, letters map back through a per-dialogue order, yesno
is log P(Yes) - log P(No), token scopes stay on the dialogue's words and the scored position."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import build_word_tokenizer
from tokenizers import pre_tokenizers
from transformers import PreTrainedTokenizerFast

from emoneuron.app.run import run
from emoneuron.causal.evaluation.answers import CONTENT_FREE, LETTERS, answer_format
from emoneuron.causal.evaluation.classifier import Classifier, prompt_prefix, query_text
from emoneuron.causal.evaluation.execution import EvaluationSetup
from emoneuron.causal.evaluation.intervene import Ablation, applied
from emoneuron.causal.inference.significance import holm
from emoneuron.config import RunConfig, preset_config
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel, ModelSpec

FORMAT_WORDS = (answer_format("letters").instruction, answer_format("yesno").instruction,
                "Options: A) B) C) D) E) F) Answer: Yes No Is the emotion of this dialogue ?")


def _shots() -> list[Record]:
    return [Record(f"shot-{e}", e, (Turn("A", f"a {e} dialogue"),), "test") for e in EMOTIONS]


@pytest.fixture(scope="module")
def formats_tiny(make_tiny: Callable[[str], LoadedModel]) -> LoadedModel:
    """The tiny llama with a word tokenizer that knows every format's words."""
    return dataclasses.replace(make_tiny("llama"), tokenizer=build_word_tokenizer(FORMAT_WORDS))


def _full_forward(classifier: Classifier, record: Record, question: Any = None) -> np.ndarray:
    """Answer-token log-probabilities from one unbatched, uncached forward pass."""
    loaded = classifier.loaded
    ids = classifier.prefix_ids + loaded.tokenizer.encode(classifier.query(record, question),
                                                          add_special_tokens=False)
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.log_softmax(logits, -1)[classifier.answer_ids].numpy()


# The label format's calibrated scores for the conftest records as the classifier computed them
# before answer formats existed (tiny llama, word tokenizer, these shots, batch size 3). Compared
# to 2e-6: float32 kernels differ by CPU (an AVX512 AMD EPYC gave up to 4.9e-7 off these), far
# below the 1e-3 that separates the emotions' scores, and the argmax is checked exactly.
LABEL_SCORES_BEFORE = np.array([
    (-0.0068707, -0.0091438, -0.0090203, 0.0034332, 0.0037889, -0.0056911),
    (-0.0051327, -0.0043440, -0.0049582, -0.0001049, -0.0053520, -0.0064526),
    (-0.0002398, -0.0014429, -0.0022850, 0.0066433, 0.0020294, 0.0130982),
    (-0.0089102, -0.0013428, -0.0076237, 0.0011425, -0.0064406, -0.0010157),
    (-0.0039377, -0.0047822, -0.0050697, 0.0024042, -0.0019088, -0.0039058),
    (-0.0077190, -0.0006990, -0.0065608, 0.0033126, -0.0025034, -0.0078011),
    (-0.0043283, -0.0021873, -0.0050778, 0.0008483, -0.0050063, 0.0017271),
    (-0.0007658, -0.0033135, -0.0035944, -0.0011520, -0.0022974, -0.0044432)])


def test_label_format_prompts_and_scores_as_before(
        make_word_tiny: Callable[[str], LoadedModel], records: list[Record]) -> None:
    classifier = Classifier(make_word_tiny("llama"), _shots(), batch_size=3)
    assert classifier.answer_format == "label"
    scores = classifier.predict(records)
    np.testing.assert_allclose(scores, LABEL_SCORES_BEFORE, rtol=0, atol=2e-6)
    assert scores.argmax(axis=1).tolist() == [4, 3, 5, 3, 3, 3, 5, 0]
    assert query_text(records[4]) == "Dialogue:\nA: So angry right now!\nEmotion:"
    assert prompt_prefix(_shots()[:1]) == (
        "Classify the emotion of each dialogue as one of: anger, disgust, fear, happiness, "
        "sadness, surprise.\n\nDialogue:\nA: a anger dialogue\nEmotion: anger\n\n")
    assert classifier.description == (
        "6-shot plain prompt (1 example(s) per emotion), prediction = label word with the "
        "highest next-token log-probability after 'Emotion:', contextually calibrated")


def test_letters_orders_differ_per_dialogue_and_repeat_with_the_seed(
        formats_tiny: LoadedModel, records: list[Record]) -> None:
    def orders(seed: int) -> list[tuple[str, ...]]:
        classifier = Classifier(formats_tiny, _shots(), answer_format="letters", seed=seed)
        return [classifier.answers.questions(r)[0].options for r in records]

    assert all(sorted(order) == sorted(EMOTIONS) for order in orders(0))
    assert len(set(orders(0))) > 1
    assert orders(0) == orders(0)
    assert orders(0) != orders(1)
    letters = Classifier(formats_tiny, _shots(), answer_format="letters")
    assert [formats_tiny.tokenizer.decode([i]) for i in letters.answer_ids] == list(LETTERS)


def test_letters_examples_show_their_own_options_and_right_letter(
        formats_tiny: LoadedModel) -> None:
    answers = answer_format("letters", seed=3)
    prefix = prompt_prefix(_shots(), answers)
    for shot in _shots():
        options = answers.questions(shot)[0].options
        listed = "".join(f"\n{letter}) {emotion}" for letter, emotion in zip(LETTERS, options,
                                                                              strict=True))
        letter = LETTERS[options.index(shot.emotion)]
        assert (f"A: a {shot.emotion} dialogue\nOptions:{listed}\nAnswer: {letter}\n\n"
                in prefix)


@contextmanager
def _planted(loaded: LoadedModel, token: int, logit: float) -> Iterator[None]:
    """Adds ``logit`` to one token's logit at every position."""
    def plant(_module: torch.nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        planted = output.clone()
        planted[..., token] += logit
        return planted

    handle = loaded.model.get_output_embeddings().register_forward_hook(plant)
    try:
        yield
    finally:
        handle.remove()


@pytest.mark.parametrize("letter", ["A", "D"])
def test_letters_map_the_winning_letter_back_to_its_emotion(
        letter: str, formats_tiny: LoadedModel, records: list[Record]) -> None:
    classifier = Classifier(formats_tiny, _shots(), batch_size=3, calibrate=False,
                            answer_format="letters")
    token = int(classifier.answer_ids[LETTERS.index(letter)])
    with _planted(formats_tiny, token, 30.0):
        predicted = classifier.predict(records).argmax(axis=1)
    expected = [classifier.answers.questions(r)[0].options[LETTERS.index(letter)]
                for r in records]
    assert [EMOTIONS[k] for k in predicted] == expected
    assert len(set(expected)) > 1  # the same letter names different emotions


def test_letters_scores_are_the_letters_log_probabilities_minus_their_bias(
        formats_tiny: LoadedModel, records: list[Record]) -> None:
    raw = Classifier(formats_tiny, _shots(), batch_size=3, calibrate=False,
                     answer_format="letters")
    calibrated = dataclasses.replace(raw, calibrate=True)
    bias = np.mean([_full_forward(raw, CONTENT_FREE, q) for q in raw.answers.calibration()],
                   axis=0)
    expected_raw, expected_calibrated = [], []
    for record in records:
        options = raw.answers.questions(record)[0].options
        letters = _full_forward(raw, record)
        by_emotion = [options.index(e) for e in EMOTIONS]
        expected_raw.append(letters[by_emotion])
        expected_calibrated.append((letters - bias)[by_emotion])
    np.testing.assert_allclose(raw.predict(records), expected_raw, atol=1e-4)
    np.testing.assert_allclose(calibrated.predict(records), expected_calibrated, atol=1e-4)
    both = raw.predict_calibrated_and_not(records)
    np.testing.assert_allclose(both[False], expected_raw, atol=1e-4)
    np.testing.assert_allclose(both[True], expected_calibrated, atol=1e-4)


def test_yesno_scores_are_log_yes_minus_log_no_per_emotion(
        formats_tiny: LoadedModel, records: list[Record]) -> None:
    classifier = Classifier(formats_tiny, _shots(), batch_size=4, calibrate=False,
                            answer_format="yesno")
    record = records[2]
    expected = []
    for emotion in EMOTIONS:
        question = next(q for q in classifier.answers.questions(record)
                        if q.options == (emotion,))
        assert classifier.query(record, question).endswith(
            f"Is the emotion of this dialogue {emotion}?\nAnswer:")
        yes, no = _full_forward(classifier, record, question)
        expected.append(yes - no)
    scores = classifier.predict(records)
    np.testing.assert_allclose(scores[2], expected, atol=1e-4)
    calibrated = dataclasses.replace(classifier, calibrate=True).predict(records)
    free = classifier.predict([CONTENT_FREE])[0]
    np.testing.assert_allclose(calibrated, scores - free, atol=1e-4)
    assert "six queries per dialogue" in classifier.description


def test_yesno_examples_answer_yes_and_no_equally(formats_tiny: LoadedModel) -> None:
    prefix = prompt_prefix(_shots(), answer_format("yesno", seed=0))
    assert prefix.count("\nAnswer: Yes\n") == prefix.count("\nAnswer: No\n") == 3
    assert "A: a anger dialogue\nIs the emotion of this dialogue anger?\nAnswer: Yes" in prefix


def _expected_positions(classifier: Classifier, record: Record, question: Any,
                        tokens: str) -> list[bool]:
    """Independently of the classifier's character offsets: the dialogue's words are the
    whitespace pieces of its turns, in order, right after 'Dialogue :' and each speaker tag."""
    tokenizer = classifier.loaded.tokenizer
    suffix = tokenizer.encode(classifier.query(record, question), add_special_tokens=False)
    if tokens == "last":
        return [k == len(suffix) - 1 for k in range(len(suffix))]
    positions = [False] * len(suffix)
    k = 2  # after "Dialogue", ":"
    for turn in record.turns:
        k += 2  # the speaker tag and its ":"
        for _ in pre_tokenizers.Whitespace().pre_tokenize_str(turn.text):
            positions[k] = True
            k += 1
    return positions


@pytest.mark.parametrize("answers", ["label", "letters", "yesno"])
@pytest.mark.parametrize("tokens", ["dialogue", "last"])
def test_token_scopes_cover_the_dialogue_or_the_scored_position(
        answers: str, tokens: str, formats_tiny: LoadedModel, records: list[Record]) -> None:
    """The scope's mask in every cached, batched pass equals the positions written out by
    hand: scores agree with single full forwards under those masks, and the dialogue flags
    of encode are exactly the dialogue's words (not the options or the question)."""
    loaded = formats_tiny
    classifier = Classifier(loaded, _shots(), batch_size=3, calibrate=False,
                            answer_format=answers)
    chosen = records[:4]
    if tokens == "dialogue":
        for record in chosen:
            for question in classifier.answers.questions(record):
                assert classifier.encode(record, question)[1] == _expected_positions(
                    classifier, record, question, tokens)
    ablation = Ablation.of({layer: range(0, loaded.width, 2) for layer in range(loaded.n_layers)},
                           mode="clamp", strength=3.0, tokens=tokens)
    with applied(loaded, ablation) as scope:
        scores = classifier.predict(chosen, scope=scope)
        expected = []
        for record in chosen:
            rows = []
            for question in classifier.answers.questions(record):
                own = _expected_positions(classifier, record, question, tokens)
                scope.mask = torch.tensor([[False] * len(classifier.prefix_ids) + own])
                rows.append(_full_forward(classifier, record, question))
            expected.append(classifier.answers.emotion_scores(
                classifier.answers.questions(record), np.stack(rows)))
    np.testing.assert_allclose(scores, np.stack(expected), atol=1e-4)
    assert np.abs(scores - classifier.predict(chosen)).max() > 1e-3


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")


@pytest.mark.parametrize("answers", ["letters", "yesno"])
def test_chat_prompt_puts_the_question_in_the_user_turn(
        answers: str, make_tiny: Callable[[str], LoadedModel], records: list[Record]) -> None:
    tokenizer = build_word_tokenizer(FORMAT_WORDS)
    tokenizer.chat_template = CHAT_TEMPLATE
    loaded = dataclasses.replace(make_tiny("llama"), tokenizer=tokenizer)
    classifier = Classifier(loaded, _shots(), batch_size=3, calibrate=False, style="chat",
                            answer_format=answers)
    record = records[1]
    question = classifier.answers.questions(record)[-1]
    assert classifier.query(record, question) == (
        f"<user> Dialogue:\nA: We won!{question.text} </s>\n<assistant> Answer:")
    scores = classifier.predict([record])[0]
    rows = np.stack([_full_forward(classifier, record, q)
                     for q in classifier.answers.questions(record)])
    np.testing.assert_allclose(
        scores, classifier.answers.emotion_scores(classifier.answers.questions(record), rows),
        atol=1e-4)


def test_formats_whose_answers_are_not_single_tokens_are_refused(
        make_word_tiny: Callable[[str], LoadedModel]) -> None:
    loaded = make_word_tiny("llama")  # its vocabulary has no C-F, Yes or No
    for answers in ("letters", "yesno"):
        with pytest.raises(UserError) as refused:
            Classifier(loaded, _shots(), answer_format=answers)
        message = str(refused.value)
        assert "\n" not in message
        assert f"{answers} format's answer words are not single distinct tokens" in message
        assert PreTrainedTokenizerFast.__name__ in message
        assert "--answer-format label" in message
    with pytest.raises(UserError, match="unknown answer format 'words'"):
        Classifier(loaded, _shots(), answer_format="words")
    with pytest.raises(UserError, match="--answer-format"):
        RunConfig(answer_format="words")  # type: ignore[arg-type]


def test_evaluation_setup_rebuilds_the_classifier_in_its_format(
        formats_tiny: LoadedModel, records: list[Record]) -> None:
    class Loaded(ModelSpec):
        def load(self) -> LoadedModel:
            return formats_tiny

    classifier = Classifier(formats_tiny, _shots(), batch_size=3, answer_format="letters",
                            seed=5)
    rebuilt, evaluation = EvaluationSetup.of(classifier, Loaded("tiny"), records)()
    assert (rebuilt.answer_format, rebuilt.seed) == ("letters", 5)
    np.testing.assert_array_equal(rebuilt.predict(evaluation), classifier.predict(records))
    other_seed = dataclasses.replace(classifier, seed=6)
    assert not np.array_equal(other_seed.predict(records), classifier.predict(records))


def test_a_run_tests_every_set_in_each_other_format_against_random_sets(
        formats_tiny: LoadedModel, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    formats_tiny.model.save_pretrained(model_dir)
    formats_tiny.tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    run(preset_config(model=str(model_dir), per_emotion=8, max_turns=2, share=0.05,
                      batch_size=8, null_sets=2, scopes=("all",), cross_per_emotion=0,
                      controls=("random",), control_seeds=(0,), sweep=False, steer=False,
                      compare_methods=("lape", "attribution"), probe=False,
                      other_formats=("letters", "yesno")), out, progress=False)
    formats = pd.read_csv(out / "formats_setlevel.csv")
    # Every tested method: the run's own sets (5%) and the compared LAPE (1%) and attribution.
    methods = set(pd.read_csv(out / "setlevel.csv").method)
    assert methods == {"run", "lape", "attribution"}
    assert set(zip(formats.answer_format, formats.method, strict=True)) == {
        (name, method) for name in ("letters", "yesno") for method in methods}
    for _, family in formats.groupby(["answer_format", "method"]):
        assert sorted(family.masked_emotion) == sorted(EMOTIONS)
        assert family.p_holm.tolist() == pytest.approx(holm(family.p.tolist()))
    stored = [json.loads(line) for line in (out / "conditions.jsonl").open()]
    for name in ("letters", "yesno"):
        asked = [e for e in stored if e["answer_format"] == name]
        assert all(e["key"].endswith(f"/format-{name}") for e in asked)
        # The unchanged model once, then each method's six sets and their random sets.
        assert sorted(e["kind"] for e in asked).count("baseline") == 1
        assert len(asked) == 1 + len(methods) * 6 * (1 + 2)
    assert "Answer formats" in (out / "report.html").read_text(encoding="utf-8")


def test_a_format_the_tokenizer_cannot_answer_in_is_refused_before_any_stage(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(UserError, match="the letters format's answer words"):
        run(preset_config(model=str(tiny_model_dir), per_emotion=8, max_turns=2,
                          other_formats=("letters",)), out, progress=False)
    assert not (out / "stats.safetensors").exists()
