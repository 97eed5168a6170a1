"""Steering: amplify one emotion's neurons while the model continues a neutral dialogue, and
measure how the emotion of what it writes shifts.

For each emotion the model continues the same neutral dialogues three ways: untouched, with the
emotion's neurons amplified by ``strength``, and with a random set of the same size in the same
layers amplified as much. Each continuation (greedy decoding, so the three are comparable) is
scored by the label-probability classifier (the share classified as the steered emotion, with
its Wilson interval, and the mean probability of it) and by the emotion lexicon (words of that
emotion per continuation). The excess over the random set is the steering effect of the
emotion's neurons; McNemar's exact test compares the two amplified versions of the same
dialogues (classified as the emotion or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.causal.evaluation.residual import Intervention, intervened
from emoneuron.causal.inference.significance import mcnemar_exact, wilson_interval
from emoneuron.data.lexicon import emotion_word_counts
from emoneuron.data.render import render_dialogue
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.models.loading import LoadedModel
from emoneuron.selection.controls import random_matched
from emoneuron.selection.identify import NeuronSets

NEW_TOKENS = 24
STEERING_FORMAT = 2  # steering.json written by an older format is recomputed, not reused
NEUTRAL_DIALOGUES: tuple[tuple[str, str], ...] = (
    ("I'm going to the post office after lunch.", "Okay. Do you need anything from town?"),
    ("The meeting moved to Thursday at ten.", "Thursday works. Which room is it in?"),
    ("I read that the library extends its hours next month.", "Until when will it be open?"),
    ("We should repaint the fence this weekend.", "What colour were you thinking of?"),
    ("My sister is visiting on Sunday.", "Is she coming by train or by car?"),
    ("The bus timetable changed again.", "Do you know when the first one leaves now?"),
    ("I started a new book yesterday.", "What is it about?"),
    ("They are building a new bridge downtown.", "How long will the work take?"),
    ("I have to renew my passport.", "Can you do that online these days?"),
    ("The shop on the corner sells fresh bread now.", "Since when have they had a bakery?"),
    ("I moved my desk next to the window.", "Does the light bother your screen?"),
    ("We are having pasta for dinner tonight.", "Should I pick up some cheese on the way?"),
)


def neutral_prompts() -> list[Record]:
    """The neutral dialogues every steering continues, as records."""
    return [Record(f"neutral-{k:02d}", EMOTIONS[0], (Turn("A", first), Turn("B", second)),
                   "steering") for k, (first, second) in enumerate(NEUTRAL_DIALOGUES)]


def continue_dialogues(loaded: LoadedModel, prompts: Sequence[Record],
                       intervention: Intervention) -> list[str]:
    """Greedy continuations of speaker A's next turn, one line each, of :data:`NEW_TOKENS`
    tokens at most, under ``intervention`` (neurons, or directions) at every position."""
    tokenizer = loaded.tokenizer
    texts = [render_dialogue(p).text + "\nA:" for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
    with intervened(loaded, intervention), torch.inference_mode():
        output = cast(Any, loaded.model).generate(
            input_ids=batch["input_ids"].to(loaded.device),
            attention_mask=batch["attention_mask"].to(loaded.device),
            max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = output[:, batch["input_ids"].shape[1]:]
    decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [text.strip().split("\n")[0].strip() for text in decoded]


def _scores(classifier: Classifier, texts: Sequence[str]) -> np.ndarray:
    """Calibrated label scores of each continuation read as a one-turn dialogue, all in one
    call so the few-shot prefix is computed once."""
    records = [Record(f"continuation-{k}", EMOTIONS[0], (Turn("A", text or "..."),), "steering")
               for k, text in enumerate(texts)]
    return classifier.predict(records)


def _classified_as(scores: np.ndarray, emotion: str) -> np.ndarray:
    return np.asarray(scores.argmax(axis=1) == EMOTIONS.index(emotion))


def _summary(texts: Sequence[str], scores: np.ndarray, emotion: str) -> dict[str, Any]:
    probability = np.exp(scores - scores.max(axis=1, keepdims=True))
    probability /= probability.sum(axis=1, keepdims=True)
    classified = wilson_interval(_classified_as(scores, emotion))
    words = [emotion_word_counts(text) for text in texts]
    return {"classified_as_target": classified.estimate,
            "classified_ci_low": classified.low, "classified_ci_high": classified.high,
            "mean_probability_target": float(probability[:, EMOTIONS.index(emotion)].mean()),
            "lexicon_target_per_continuation": float(np.mean([w[emotion] for w in words])),
            "lexicon_any_per_continuation": float(np.mean([sum(w.values()) for w in words])),
            "mean_probability": dict(zip(EMOTIONS, probability.mean(axis=0).tolist(),
                                         strict=True)),
            "continuations": list(texts)}


def steering_inputs(classifier: Classifier, sets: NeuronSets, strength: float,
                    seed: int) -> dict[str, Any]:
    """What :func:`steer`'s result is computed from (a stage's inputs, hashed by the run)."""
    return {"format": STEERING_FORMAT, "neurons": sets.to_json(), "strength": strength,
            "seed": seed, "prompt": classifier.description, "dialogues": NEUTRAL_DIALOGUES}


def steer(classifier: Classifier, sets: NeuronSets, strength: float, seed: int,
          progress: bool = True) -> dict[str, Any]:
    """``steering.json``'s content: per emotion, the continuations and their scores with no
    intervention, with its neurons amplified, and with a matched random set amplified."""
    prompts = neutral_prompts()
    continuations: dict[tuple[str, str], list[str]] = {}
    untouched = continue_dialogues(classifier.loaded, prompts, Ablation.of({}))
    for emotion in tqdm(EMOTIONS, desc="steering", unit="emotion", disable=not progress):
        own = sets.layer_indices(emotion)
        rng = np.random.default_rng([seed, EMOTIONS.index(emotion)])
        amplified = {"emotion": own, "random": random_matched(own, sets, emotion, rng)}
        continuations[emotion, "none"] = untouched
        for name, by_layer in amplified.items():
            continuations[emotion, name] = continue_dialogues(
                classifier.loaded, prompts, Ablation.of(by_layer, "amplify", strength, sets.site))
    keys = [k for k in continuations if k[1] != "none"]
    texts = untouched + [text for key in keys for text in continuations[key]]
    scores = _scores(classifier, texts)
    by_key = {key: scores[len(prompts) * (1 + k):len(prompts) * (2 + k)]
              for k, key in enumerate(keys)}
    results: dict[str, Any] = {}
    for emotion in EMOTIONS:
        by_key[emotion, "none"] = scores[:len(prompts)]
        results[emotion] = {name: _summary(continuations[emotion, name], by_key[emotion, name],
                                           emotion) for name in ("none", "emotion", "random")}
        results[emotion]["n_neurons"] = sum(map(len, sets.layer_indices(emotion).values()))
        results[emotion]["p_mcnemar_emotion_vs_random"] = mcnemar_exact(
            _classified_as(by_key[emotion, "emotion"], emotion),
            _classified_as(by_key[emotion, "random"], emotion))
    return {"strength": strength, "seed": seed, "new_tokens": NEW_TOKENS,
            "dialogues": [render_dialogue(p).text for p in prompts], "emotions": results}
