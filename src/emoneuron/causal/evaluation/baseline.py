"""The run's classifier on an extra corpus (``--baseline-data``), apart from identification: how
well the unchanged model names the emotions of real dialogues, beside the synthetic baseline.

Real corpora are unbalanced (DailyDialog's test split has 6,321 "no emotion" utterances and 17
of fear), and a large model classifies about one dialogue a second on a CPU, so at most
``per_emotion`` records of each emotion are evaluated, drawn with a seed; the table keeps every
label's real count (``available``) beside the evaluated ``n``. Neutral records are counted, not
evaluated: the classifier names one of the six emotions.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.inference.significance import wilson_interval
from emoneuron.causal.inference.summaries import summary_rows
from emoneuron.data.schema import EMOTIONS, LABELS, Record


def sample_per_emotion(records: Sequence[Record], per_emotion: int, seed: int) -> list[Record]:
    """At most ``per_emotion`` records of each of the six emotions, a seeded draw in file order.

    >>> from emoneuron.data.schema import Turn
    >>> many = [Record(f"r{i}", "fear", (Turn("A", "oh no"),)) for i in range(5)]
    >>> [r.id for r in sample_per_emotion(many, 2, seed=0)]
    ['r3', 'r4']
    """
    rng = random.Random(seed)
    chosen: set[str] = set()
    for emotion in EMOTIONS:
        ids = [r.id for r in records if r.emotion == emotion]
        chosen.update(rng.sample(ids, min(per_emotion, len(ids))))
    return [r for r in records if r.id in chosen]


def baseline_table(classifier: Classifier, records: Sequence[Record], per_emotion: int,
                   seed: int, progress: bool = False) -> pd.DataFrame:
    """Per label: its real count, the evaluated n, correct, accuracy and Wilson 95% interval;
    then the overall, balanced and corpus-weighted accuracy of the six emotions."""
    available = Counter(r.emotion for r in records)
    evaluated, _ = classifier.fit(sample_per_emotion(records, per_emotion, seed))
    scores = classifier.predict(evaluated, progress=progress)
    truth = np.array([EMOTIONS.index(r.emotion) for r in evaluated])
    correct = scores.argmax(axis=1) == truth if len(evaluated) else np.zeros(0, dtype=bool)
    rows = []
    for label in LABELS:
        outcomes = correct[truth == EMOTIONS.index(label)] if label in EMOTIONS else correct[:0]
        interval = wilson_interval(outcomes)
        rows.append({"emotion": label, "available": available[label], "n": len(outcomes),
                     "correct": int(outcomes.sum()), "accuracy": interval.estimate,
                     "ci_low": interval.low, "ci_high": interval.high})
    per_label = pd.DataFrame(rows)
    six = per_label[per_label["emotion"].isin(EMOTIONS)]
    return pd.concat([per_label, pd.DataFrame(summary_rows(six))], ignore_index=True)
