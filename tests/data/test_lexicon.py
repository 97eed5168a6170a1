from __future__ import annotations

from itertools import combinations

from emoneuron.data.lexicon import (
    EMOTION_WORDS,
    emotion_word_counts,
    find_emotion_words,
    names_any_emotion,
    names_emotion,
)
from emoneuron.data.schema import EMOTIONS, Record, Turn


def _record(emotion: str, *texts: str) -> Record:
    return Record(id="r", emotion=emotion,
                  turns=tuple(Turn("AB"[i % 2], text) for i, text in enumerate(texts)))


def test_every_emotion_has_a_list_of_lowercase_single_words() -> None:
    assert tuple(EMOTION_WORDS) == EMOTIONS
    for emotion, words in EMOTION_WORDS.items():
        assert 40 <= len(words) <= 80, (emotion, len(words))
        assert emotion in words
        for word in words:
            assert word == word.lower() and " " not in word, word


def test_no_word_belongs_to_two_emotions() -> None:
    for first, second in combinations(EMOTIONS, 2):
        assert not EMOTION_WORDS[first] & EMOTION_WORDS[second], (first, second)


def test_counts_are_case_insensitive_whole_words() -> None:
    counts = emotion_word_counts("FURIOUS, absolutely Furious! Then rage; I was happy.")
    assert counts == {"anger": 3, "disgust": 0, "fear": 0, "happiness": 1, "sadness": 0,
                      "surprise": 0}
    # Word boundaries: no match inside longer words.
    assert sum(emotion_word_counts("sadistic madness scarecrow gladiator").values()) == 0
    assert emotion_word_counts("") == dict.fromkeys(EMOTIONS, 0)


def test_apostrophes_contractions_and_possessives() -> None:
    # A contraction is one token and not a lexicon word; a possessive counts as its word.
    assert find_emotion_words("I'm afraid it's her anger's fault") == [
        ("afraid", "fear"), ("anger", "anger")]
    # Curly apostrophes behave like straight ones.
    assert find_emotion_words("My sorrow\u2019s deep, don\u2019t worry") == [
        ("sorrow", "sadness"), ("worry", "fear")]
    # An apostrophe at a word edge is punctuation.
    assert find_emotion_words("'sad' she said") == [("sad", "sadness")]


def test_names_emotion_only_for_the_records_own_emotion() -> None:
    assert names_emotion(_record("fear", "I heard a noise.", "I am so scared."))
    assert not names_emotion(_record("fear", "I am so happy.", "Me too!"))
    assert names_any_emotion(_record("fear", "I am so happy.", "Me too!"))
    implicit = _record("sadness", "My grandmother died last week.", "Come here, I'm here.")
    assert not names_emotion(implicit) and not names_any_emotion(implicit)
