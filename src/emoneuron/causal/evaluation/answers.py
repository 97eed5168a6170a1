"""Answer formats: what the classifier asks after a dialogue, which tokens it scores, and how
their log-probabilities become one score per emotion.

A neuron set whose removal only matters because it writes the label word reads the answer out;
it does not carry the emotion. Formats fixed in advance, in which the scored token is not the
emotion word, tell the two apart:

- ``label``: ``Emotion:``, scored on the six label words (`` anger`` ...). One query per dialogue.
- ``letters``: the six emotions listed as options A-F in an order drawn per dialogue (seeded by
  the seed and the dialogue's id), ``Answer:``, scored on the six letters; an emotion's score is
  its letter's. One query per dialogue.
- ``yesno``: one question per emotion (``Is the emotion of this dialogue anger?``), ``Answer:``,
  scored on `` Yes`` and `` No``; an emotion's score is log P(Yes) - log P(No). Six queries per
  dialogue: six times the label format's cost.

Calibration, when on, subtracts the content-free dialogue's scores (Zhao et al. 2021). ``label``
and ``yesno`` subtract them per query (the yes/no bias of each emotion's question). ``letters``
subtracts a per-letter bias: the mean letter log-probability of the content-free dialogue under
the six cyclic orders of the emotions, in which every emotion stands at every letter once, so
the bias is the letters' own and no emotion's (six extra queries per call, not one per dialogue).

>>> answer_format("letters", seed=0).questions(CONTENT_FREE)[0].options
('fear', 'happiness', 'surprise', 'anger', 'sadness', 'disgust')
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from emoneuron.data.schema import EMOTIONS, Record, Turn

LETTERS = "ABCDEF"

# Contextual calibration (Zhao et al. 2021): the prediction on a content-free dialogue measures
# the prompt's own bias towards each answer; subtracting it corrects that bias. On SmolLM2 it
# lifts mean accuracy on the synthetic dialogues from about 0.5 to about 0.7 (label format).
CONTENT_FREE = Record(id="content-free", emotion=EMOTIONS[0],
                      turns=(Turn("A", "N/A"), Turn("B", "N/A")), source="calibration")


@dataclass(frozen=True)
class Question:
    """One scored query about a dialogue: ``text`` follows the dialogue; ``options`` are the
    emotions the scored answer tokens stand for, in token order (yesno: the one asked about)."""

    text: str
    options: tuple[str, ...]


class AnswerFormat(Protocol):
    """What the classifier needs of a format: the questions asked about a record (and about the
    content-free dialogue when calibrating), a worked example for a few-shot ``shot`` at
    ``position`` in the prompt, the calibration bias from the content-free queries' answer
    scores, and the six emotion scores from a record's (bias-corrected) answer scores, one row
    per question."""

    name: str
    rule: str  # how the prediction is made, for the classifier's description
    instruction: str
    cue: str  # ends every query; the next token is scored
    answers: tuple[str, ...]  # the scored answer words, each a single token after a space

    def questions(self, record: Record) -> list[Question]: ...

    def example(self, shot: Record, position: int) -> tuple[Question, str]: ...

    def calibration(self) -> list[Question]: ...

    def bias(self, rows: np.ndarray) -> np.ndarray: ...

    def emotion_scores(self, questions: Sequence[Question], rows: np.ndarray) -> np.ndarray: ...


class LabelFormat:
    """The emotion word itself is the answer."""

    name = "label"
    rule = "label word with the highest next-token log-probability after 'Emotion:'"
    instruction = ("Classify the emotion of each dialogue as one of: "
                   + ", ".join(EMOTIONS) + ".\n\n")
    cue = "Emotion:"
    answers = EMOTIONS

    def questions(self, record: Record) -> list[Question]:
        return [Question("", EMOTIONS)]

    def example(self, shot: Record, position: int) -> tuple[Question, str]:
        return Question("", EMOTIONS), shot.emotion

    def calibration(self) -> list[Question]:
        return self.questions(CONTENT_FREE)

    def bias(self, rows: np.ndarray) -> np.ndarray:
        return rows

    def emotion_scores(self, questions: Sequence[Question], rows: np.ndarray) -> np.ndarray:
        return _by_option(questions[0], rows[0])


class LetterFormat:
    """Options A-F in a per-dialogue order; the answer is a letter."""

    name = "letters"
    rule = ("emotion whose option letter (A-F, options in a seeded order per dialogue) has the "
            "highest next-token log-probability after 'Answer:'")
    instruction = ("Classify the emotion of each dialogue: answer with the letter of the "
                   "option that names it.\n\n")
    cue = "Answer:"
    answers = tuple(LETTERS)

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def questions(self, record: Record) -> list[Question]:
        order = list(EMOTIONS)
        random.Random(f"{self.seed}:{record.id}").shuffle(order)
        return [_options_question(tuple(order))]

    def example(self, shot: Record, position: int) -> tuple[Question, str]:
        question = self.questions(shot)[0]
        return question, LETTERS[question.options.index(shot.emotion)]

    def calibration(self) -> list[Question]:
        return [_options_question(EMOTIONS[k:] + EMOTIONS[:k]) for k in range(len(EMOTIONS))]

    def bias(self, rows: np.ndarray) -> np.ndarray:
        bias: np.ndarray = rows.mean(axis=0, keepdims=True)
        return bias

    def emotion_scores(self, questions: Sequence[Question], rows: np.ndarray) -> np.ndarray:
        return _by_option(questions[0], rows[0])


class YesNoFormat:
    """One yes/no question per emotion; the emotion's score is log P(Yes) - log P(No)."""

    name = "yesno"
    rule = ("emotion with the highest log P(Yes) - log P(No) after its own question "
            "'Is the emotion of this dialogue ...? Answer:' (six queries per dialogue)")
    instruction = ("Say whether each dialogue conveys the emotion asked about: answer Yes or "
                   "No.\n\n")
    cue = "Answer:"
    answers: tuple[str, ...] = ("Yes", "No")

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def questions(self, record: Record) -> list[Question]:
        return [_yes_no_question(emotion) for emotion in EMOTIONS]

    def example(self, shot: Record, position: int) -> tuple[Question, str]:
        """Every other example is asked about its own emotion, the rest about a seeded other
        one, so the examples favour neither answer."""
        if position % 2 == 0:
            return _yes_no_question(shot.emotion), "Yes"
        others = [e for e in EMOTIONS if e != shot.emotion]
        return _yes_no_question(random.Random(f"{self.seed}:{shot.id}").choice(others)), "No"

    def calibration(self) -> list[Question]:
        return self.questions(CONTENT_FREE)

    def bias(self, rows: np.ndarray) -> np.ndarray:
        return rows

    def emotion_scores(self, questions: Sequence[Question], rows: np.ndarray) -> np.ndarray:
        scores = np.zeros(len(EMOTIONS), dtype=np.float64)
        for question, (yes, no) in zip(questions, rows, strict=True):
            scores[EMOTIONS.index(question.options[0])] = yes - no
        return scores


def answer_format(name: str, seed: int = 0) -> AnswerFormat:
    """The format called ``name`` (``seed`` draws the letters' orders and yes/no examples).

    >>> answer_format("yesno").answers
    ('Yes', 'No')
    """
    formats: dict[str, AnswerFormat] = {"label": LabelFormat(), "letters": LetterFormat(seed),
                                        "yesno": YesNoFormat(seed)}
    return formats[name]


def _options_question(order: tuple[str, ...]) -> Question:
    listed = "".join(f"\n{letter}) {emotion}" for letter, emotion in zip(LETTERS, order,
                                                                          strict=True))
    return Question(f"\nOptions:{listed}", order)


def _yes_no_question(emotion: str) -> Question:
    return Question(f"\nIs the emotion of this dialogue {emotion}?", (emotion,))


def _by_option(question: Question, row: np.ndarray) -> np.ndarray:
    """A row of answer-token scores reordered into EMOTIONS' order."""
    scores = np.zeros(len(EMOTIONS), dtype=np.float64)
    scores[[EMOTIONS.index(option) for option in question.options]] = row
    return scores
