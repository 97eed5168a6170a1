"""``emoneuron run``: the whole pipeline into one run directory.

data -> splits -> load model -> record (identification split) -> identify -> baseline, masked and
control evaluation (held-out split) -> sweep -> tables -> report. Each stage's wall time lands in
``manifest.json``; finished conditions are kept in ``conditions.jsonl`` so an interrupted run
resumes.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from emoneuron import __version__
from emoneuron.cache import cached_record
from emoneuron.data.schema import EMOTIONS, Record, read_records, records_hash, write_records
from emoneuron.data.split import Splits, split
from emoneuron.data.synth import synthesize
from emoneuron.errors import UserError
from emoneuron.evaluate import CHANCE, Classifier, order_shots
from emoneuron.identify import IdentifyConfig, NeuronSets, identify
from emoneuron.io import atomic_open, read_json, sha256_bytes, write_json
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.models.loading import DEFAULT_MODEL, LoadedModel, load
from emoneuron.record import DEFAULT_GROUPS, N_BINS
from emoneuron.report import write_report
from emoneuron.stability import write_stability
from emoneuron.sweep import DEFAULT_PROPORTIONS, ConditionStore, execute, grid
from emoneuron.tables import ablation_tables, sweep_table

PACKAGES = ("torch", "transformers", "safetensors", "numpy", "pandas", "matplotlib", "tqdm")


@dataclass
class RunConfig:
    model: str = DEFAULT_MODEL
    data: str | None = None  # JSONL file; None = built-in synthetic dialogues
    per_emotion: int = 40
    max_turns: int = 5
    seed: int = 0
    eval_fraction: float = 0.4
    token_policy: str = "dialogue"
    method: str = "lape"
    share: float = 0.01
    assignment: str = "argmax"
    control_seeds: tuple[int, ...] = (0, 1, 2)
    proportions: tuple[float, ...] = DEFAULT_PROPORTIONS
    sweep: bool = True
    sweep_eval: str = "self"
    calibrate: bool = True
    prompt: str = "auto"  # auto = chat template for instruct models, plain text otherwise
    batch_size: int = 16
    device: str = "cpu"
    threads: int | None = None


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        print(f"[{name}]", flush=True)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)


def _records(config: RunConfig) -> list[Record]:
    if config.data is None:
        return synthesize(config.per_emotion, config.seed, config.max_turns)
    return read_records(config.data)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "emoneuron": __version__}
    for package in PACKAGES:
        versions[package] = importlib.metadata.version(package)
    return versions


def _manifest(config: RunConfig, loaded: LoadedModel, splits: Splits, data_hash: str,
              truncated: int, classifier: Classifier,
              timings: dict[str, float]) -> dict[str, Any]:
    return {
        "emoneuron_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
        "model": {"name": config.model, "architecture": type(loaded.model).__name__,
                  "family": loaded.adapter.family, "n_layers": loaded.n_layers,
                  "width": loaded.width, "n_neurons": loaded.n_layers * loaded.width,
                  "site": DEFAULT_SITE, "dtype": str(loaded.model.dtype)},
        "data": {"hash": data_hash, "source": config.data or "synthetic (emoneuron data synth)",
                 "counts": splits.counts(), "truncated_to_context": truncated},
        "evaluation": {"description": classifier.description, "n_shot": len(classifier.shots),
                       "chance": CHANCE},
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "torch_threads": torch.get_num_threads()},
        "timings": timings,
    }


def run(config: RunConfig, out: str | Path, progress: bool = True) -> Path:
    """Run every stage into ``out`` and return the report path; re-running resumes."""
    out_dir = Path(out)
    _check_previous_run(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    timer = Timer()
    total_start = time.perf_counter()
    with timer.stage("data"):
        records = _records(config)
        data_hash = records_hash(records)
        splits = split(records, config.eval_fraction, config.seed,
                       source=config.data or "synthetic data")
    with timer.stage("load_model"):
        loaded = load(config.model, device=config.device)
    classifier = Classifier(loaded, order_shots(splits.fewshot, config.seed), config.batch_size,
                            config.calibrate, config.prompt)
    splits, truncated = _fit_to_context(splits, classifier)
    conditions = grid(config.control_seeds, config.proportions if config.sweep else (),
                      config.sweep_eval)
    _check_disk(out_dir, _output_bytes(loaded, len(conditions), len(splits.evaluate)))
    for name, part in (("fewshot", splits.fewshot), ("identify", splits.identify),
                       ("eval", splits.evaluate)):
        write_records(out_dir / "data" / f"{name}.jsonl", part)
    with timer.stage("record"):
        stats = cached_record(loaded, splits.identify, config.token_policy, config.batch_size,
                              progress)
        stats.save(out_dir / "stats.safetensors", {"model": config.model, "data_hash": data_hash})
    with timer.stage("identify"):
        identify_config = IdentifyConfig(method=config.method, share=config.share,
                                         assignment=config.assignment)
        sets = identify(stats, identify_config, config.model)
        sets.save(out_dir / "neurons.json")
        write_stability(stats, identify_config, out_dir / "stability.json", progress=progress)
    store = ConditionStore(out_dir / "conditions.jsonl",
                           _store_context(config, splits, sets, classifier))
    ablation_conditions = [c for c in conditions if c.kind != "mask"
                           or (c.layer_range, c.proportion) == ("all", 1.0)]
    with timer.stage("ablation"):
        execute(classifier, sets, splits.evaluate, ablation_conditions, store, progress)
    with timer.stage("sweep"):
        execute(classifier, sets, splits.evaluate, conditions, store, progress)
    with timer.stage("tables"):
        ablation, effects = ablation_tables(store, splits.evaluate, config.control_seeds)
        _write_csv(ablation, out_dir / "ablation.csv")
        _write_csv(effects, out_dir / "effects.csv")
        if config.sweep:
            _write_csv(sweep_table(store, splits.evaluate, conditions), out_dir / "sweep.csv")

    def write_manifest() -> None:
        write_json(out_dir / "manifest.json",
                   _manifest(config, loaded, splits, data_hash, truncated, classifier,
                             timer.seconds))

    timer.seconds["total_before_report"] = round(time.perf_counter() - total_start, 2)
    write_manifest()  # the report reads it
    with timer.stage("report"):
        report = write_report(out_dir)
    timer.seconds["total"] = round(time.perf_counter() - total_start, 2)
    write_manifest()
    print("time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in timer.seconds.items()))
    return report


REPORT_BYTES = 20 * 2**20  # figures as PNG and SVG plus the HTML that embeds them


def _output_bytes(loaded: LoadedModel, n_conditions: int, n_eval: int) -> int:
    """A generous estimate of what a run writes: statistics (float64 moments per group and
    int32 histograms, written once as safetensors), predictions per condition, tables and
    report."""
    statistics = ((3 * 8 * DEFAULT_GROUPS + 4 * N_BINS) * len(EMOTIONS)
                  * loaded.n_layers * loaded.width)
    return statistics + n_conditions * (n_eval * 4 + 1024) + REPORT_BYTES


def _check_disk(out_dir: Path, needed: int) -> None:
    """Refuse to start when the output disk cannot hold the run (twice the estimate: every
    file is written beside its old version before the rename)."""
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < 2 * needed:
        raise UserError(f"{existing}: {free / 2**20:.0f} MiB free, a run needs about "
                        f"{2 * needed / 2**20:.0f} MiB; free space or choose another --out")


def _fit_to_context(splits: Splits, classifier: Classifier) -> tuple[Splits, int]:
    identify_part, cut_identify = classifier.fit(splits.identify)
    evaluate_part, cut_evaluate = classifier.fit(splits.evaluate)
    truncated = cut_identify + cut_evaluate
    if truncated:
        print(f"truncated {truncated} of {len(identify_part) + len(evaluate_part)} dialogues to "
              f"the model's context ({classifier.loaded.context_length} tokens) by dropping "
              "their earliest words; they are marked \"truncated\" in data/*.jsonl")
    return Splits(splits.fewshot, identify_part, evaluate_part), truncated


def _check_previous_run(out_dir: Path) -> None:
    if (out_dir / "manifest.json").exists():
        previous = read_json(out_dir / "manifest.json")
        if previous.get("emoneuron_version") != __version__:
            raise UserError(f"{out_dir}: written by emoneuron {previous.get('emoneuron_version')}"
                            f", this is {__version__}; use a new --out directory")


def _store_context(config: RunConfig, splits: Splits, sets: NeuronSets,
                   classifier: Classifier) -> str:
    """Hash of what stored predictions depend on besides their condition."""
    context = {"eval": records_hash(splits.evaluate), "neurons": sets.to_json(),
               "model": config.model, "prompt": classifier.description,
               "shots": [shot.id for shot in classifier.shots]}
    return sha256_bytes(json.dumps(context, sort_keys=True).encode())


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_open(path) as handle:
        frame.to_csv(handle, index=False, float_format="%.6g")
