"""The run directory's layout: the name of every file ``emoneuron run`` writes, and where each
split, method and shuffled control lands. It imports nothing of the project, so every stage may
name the files it writes; reading them, verified against the manifest, is
:class:`emoneuron.rundir.RunDir`'s.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"
STATS = "stats.safetensors"  # with its header as readable JSON beside it (stats.json)
NEURONS = "neurons.json"
STABILITY = "stability.json"
CONDITIONS = "conditions.jsonl"
STEERING = "steering.json"
# Each unit's steering judged by the probe and the lexicon against its nulls, and every
# continuation with how it was steered and judged (causal.steerjudge).
STEERING_JUDGES = "steering_judges.csv"
STEERING_JUDGES_DESCRIPTION = "steering_judges.json"
UNITS = "units.csv"  # per emotion, its neuron set beside its direction (causal.units)
STAGES = "stages.json"  # per reusable stage: the hash of its inputs and its files' hashes
ABLATION = "ablation.csv"
EFFECTS = "effects.csv"
SPECIFICITY = "specificity.csv"
CONFUSION = "confusion.csv"
DOSE = "dose.csv"
SWEEP = "sweep.csv"
METHODS_TABLE = "methods.csv"
SET_LEVEL = "setlevel.csv"  # each method's sets against many random sets (causal.setlevel)
SWEEP_SET_LEVEL = "sweep_setlevel.csv"  # parts of the sets with an effect, against random parts
FORMATS_SET_LEVEL = "formats_setlevel.csv"  # every method's sets asked in the other formats
PROBE = "probe.safetensors"  # the label-free probe, its description beside it (probe.json)
PROBE_DESCRIPTION = "probe.json"
PROBE_CONDITIONS = "probe_conditions.jsonl"  # the probe's share right after each set removed
# Each emotion's direction per residual layer, its description beside it (directions.json).
DIRECTIONS = "directions.safetensors"
DIRECTIONS_DESCRIPTION = "directions.json"
DIRECTIONS_SET_LEVEL = "directions_setlevel.csv"  # each direction against random directions
BASELINE_EXTRA = "baseline_extra.csv"  # the unchanged classifier on --baseline-data
DATA = "data"  # data/{fewshot,identify,eval}.jsonl: the run's splits
CARDS = "cards"
CARD_INDEX = "index.json"  # in a folder of neuron cards: each emotion's cards, best first
CARDS_INDEX = f"{CARDS}/{CARD_INDEX}"
SHUFFLED = "shuffled"
METHODS = "methods"
REPORT = "report.html"
FIGURES = "figures"
LOCK = "run.lock"
SPLITS = ("fewshot", "identify", "eval")
# In a comparison's folder (`emoneuron compare`, `series`): what marks the folder as one.
COMPARISON = "compare.json"
# Written from the files above and rewritten by `report`, so not part of the verified set.
OUTPUTS = (REPORT, FIGURES, LOCK)


def data_file(split: str) -> str:
    return f"{DATA}/{split}.jsonl"


def shuffled_file(seed: int) -> str:
    return f"{SHUFFLED}/neurons-seed{seed}.json"


def method_dir(method: str) -> str:
    """The folder of one compared method's files."""
    return f"{METHODS}/{method}"


def method_file(method: str, name: str) -> str:
    return f"{method_dir(method)}/{name}"


def attribution_file(site: str) -> str:
    return f"{METHODS}/attribution-{site}.safetensors"


def stability_beside(neurons: Path) -> Path:
    """Where ``identify`` writes the stability of the sets it writes to ``neurons``, unless
    told: stability.json beside a neurons.json (a run's layout), NAME.stability.json beside any
    other NAME.json, so a second set never replaces another's stability file."""
    return neurons.with_name(STABILITY if neurons.name == NEURONS
                             else f"{neurons.stem}.{STABILITY}")
