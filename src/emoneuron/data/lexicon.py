"""An emotion-word lexicon for the lexical-confound check: which dialogues name an emotion.

The word lists were written by hand for this project (MIT, like the rest of it); they are not
taken from any published lexicon. Each emotion lists the words that name or directly state it
(nouns, adjectives, verbs, adverbs, with their inflections) plus a few interjections that
conventionally stand for it ("yuck", "yay", "whoa"). Words that merely describe a situation
("crying", "smirked", "mould") are deliberately left out: they are how a dialogue conveys an
emotion without naming it. Every word belongs to one emotion only.

Known limits: single words only (no "over the moon"), no sense disambiguation ("mad" as in
crazy, "shock" as in electric), no negation ("not happy" still names happiness), English only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from emoneuron.data.schema import EMOTIONS, Record

_WORDS: dict[str, str] = {
    "anger": """
        anger angers angered angering angry angrier angriest angrily
        furious furiously fury rage rages raged raging enraged enrage infuriated infuriating
        infuriate irate ire livid fuming fumed seething seethed outrage outraged incensed
        irritated irritating irritation irritate annoyed annoying annoyance annoy annoys
        mad madder maddest maddening resent resented resentful resentment indignant
        indignation frustrated frustrating frustration exasperated exasperating exasperation
        hate hated hates hating hatred wrath wrathful aggravated vexed
    """,
    "disgust": """
        disgust disgusts disgusted disgusting disgustingly revolted revolting revulsion
        repulsed repulsive repulsion repugnant repellent gross grossed grossest nauseated
        nauseating nauseous nausea sickened sickening vile loathe loathed loathes loathing
        loathsome abhor abhorred abhorrent detest detested detestable appalled appalling
        icky yuck yucky eww ew distaste distasteful squeamish sickens repels revolts
    """,
    "fear": """
        fear fears feared fearing fearful fearfully afraid scared scare scares scary scarier
        scariest frightened frighten frightens frightening fright terrified terrify terrifies
        terrifying terror horror horrified horrifying panic panics panicked panicking panicky
        anxious anxiously anxiety nervous nervously nervousness worried worry worries
        worrying dread dreaded dreading alarmed petrified spooked uneasy unease
        apprehensive apprehension phobia jittery
    """,
    "happiness": """
        happy happier happiest happily happiness joy joys joyful joyfully joyous glad gladly
        gladness delighted delight delights delightful thrilled thrilling overjoyed ecstatic
        ecstasy elated elation cheerful cheerfully cheery jubilant jubilation euphoric
        euphoria blissful bliss contented pleased excited exciting excitement rejoice
        rejoiced rejoicing gleeful glee merry chuffed yay hooray hurray yippee
    """,
    "sadness": """
        sad sadder saddest sadly sadness sadden saddened unhappy unhappier unhappiness
        sorrow sorrows sorrowful grief grieve grieves grieved grieving heartbroken heartbreak
        heartbreaking depressed depressing depression miserable miserably misery gloomy
        gloom melancholy despair despairing dejected downcast devastated forlorn mournful
        mourn mourned mourning lonely loneliness upset upsetting hopeless hopelessness
        despondent glum tearful woe woeful sorrowing wretched
    """,
    "surprise": """
        surprise surprises surprised surprising surprisingly astonished astonishing
        astonishment astonish amazed amazement amaze shocked shock shocking startled
        startling startle flabbergasted dumbfounded astounded astounding stunned bewildered
        unexpected unexpectedly gobsmacked speechless dumbstruck thunderstruck staggered
        amazes astounds astonishes startles stun stuns shocks disbelief incredulous
        wow wowed whoa woah
    """,
}

EMOTION_WORDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {emotion: frozenset(_WORDS[emotion].split()) for emotion in EMOTIONS})

_EMOTION_OF: dict[str, str] = {word: emotion for emotion, words in EMOTION_WORDS.items()
                               for word in words}

# Letters with inner apostrophes ("don't", "anger's") stay one token; curly apostrophes are
# folded to straight ones first so both spellings tokenise alike.
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("\u2019", "'").replace("\u2018", "'"))


def find_emotion_words(text: str) -> list[tuple[str, str]]:
    """Each lexicon word in ``text`` as ``(word, emotion)``, in order; a possessive counts."""
    found: list[tuple[str, str]] = []
    for token in _tokens(text):
        word = token[:-2] if token.endswith("'s") and token not in _EMOTION_OF else token
        if word in _EMOTION_OF:
            found.append((word, _EMOTION_OF[word]))
    return found


def emotion_word_counts(text: str) -> dict[str, int]:
    """How many lexicon words of each emotion ``text`` contains (every emotion is a key)."""
    counts = dict.fromkeys(EMOTIONS, 0)
    for _, emotion in find_emotion_words(text):
        counts[emotion] += 1
    return counts


def names_emotion(record: Record) -> bool:
    """Whether the dialogue contains a lexicon word of its own labelled emotion."""
    return any(emotion == record.emotion
               for turn in record.turns for _, emotion in find_emotion_words(turn.text))


def names_any_emotion(record: Record) -> bool:
    """Whether the dialogue contains a lexicon word of any emotion."""
    return any(find_emotion_words(turn.text) for turn in record.turns)
