"""The ``emoneuron`` command: a thin layer over the library API.

Every failure the user can fix (bad data, unknown model, unsupported architecture, ...) is a
:class:`~emoneuron.errors.UserError`: printed as one line, exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emoneuron.errors import UserError


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type[Any],
                           skip: Sequence[str] = (), only_given: bool = False) -> None:
    """One ``--option`` per dataclass field, so configs and the CLI cannot drift apart.
    ``only_given``: an option not on the command line leaves no attribute (a preset fills it)."""
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            continue
        flag = "--" + spec.name.replace("_", "-")
        hint = hints[spec.name]
        default = spec.default
        help_text = f"default: {default}"
        if only_given:
            default = argparse.SUPPRESS
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif typing.get_origin(hint) is tuple:
            parser.add_argument(flag, nargs="+", type=args[0], default=default, help=help_text)
        elif typing.get_origin(hint) in (typing.Union, types.UnionType):
            parser.add_argument(flag, type=args[0], default=default, help=help_text)
        else:
            parser.add_argument(flag, type=hint, default=default, help=help_text)


def _dataclass_from(cls: type[Any], namespace: argparse.Namespace) -> Any:
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)
              if hasattr(namespace, f.name)}
    for f in dataclasses.fields(cls):
        if isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def _cmd_run(args: argparse.Namespace) -> None:
    from emoneuron.run import RunConfig, preset_config, run

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
             if hasattr(args, f.name) and f.name != "preset"}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    report = run(preset_config(getattr(args, "preset", ""), **options), args.out,
                 progress=not args.quiet)
    print(f"report: {report}")


def _cmd_ablate(args: argparse.Namespace) -> None:
    from emoneuron.causal.methods import evaluate_sets
    from emoneuron.reporting.report import write_report
    from emoneuron.rundir import REPORT, RunDir
    from emoneuron.selection.identify import NeuronSets

    sets = NeuronSets.load(args.neurons)
    table = evaluate_sets(args.run_dir, sets, args.name or args.neurons.stem,
                          progress=not args.quiet)
    print(f"method comparison: {table}")
    if RunDir(args.run_dir).exists(REPORT):
        print(f"report: {write_report(args.run_dir)}")


def _cmd_synth(args: argparse.Namespace) -> None:
    from emoneuron.data.schema import write_records
    from emoneuron.data.synth import synthesize

    records = synthesize(args.per_emotion, args.seed, args.max_turns, args.keyword_free)
    write_records(args.out, records)
    print(f"wrote {len(records)} dialogues to {args.out}")


def _cmd_data_load(args: argparse.Namespace) -> None:
    from emoneuron.data.loaders import LoadOptions, load
    from emoneuron.data.schema import write_records

    options = LoadOptions(**{name: getattr(args, name) for name in (
        "split", "context", "text_column", "label_column", "id_column", "speaker_column",
        "dialogue_column", "turn_separator")})
    loaded = load(args.format, args.path, options)
    write_records(args.out, loaded.records)
    print("\n".join(loaded.report.lines()))
    print(f"wrote {len(loaded.records)} records to {args.out}")


def _cmd_data_stats(args: argparse.Namespace) -> None:
    import json

    from emoneuron.data.schema import read_records
    from emoneuron.data.summary import describe, format_table

    summary = describe(read_records(args.file))
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))


def _cmd_data_overlap(args: argparse.Namespace) -> None:
    import json

    from emoneuron.data.dedup import overlap
    from emoneuron.data.schema import read_records

    first, second = read_records(args.first), read_records(args.second)
    found = overlap(first, second, args.threshold)
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
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
    from emoneuron.data.generate import GenerateConfig, generate

    summary = generate(_dataclass_from(GenerateConfig, args), args.out, progress=not args.quiet)
    print(f"{summary.done_now} items done now ({summary.done_before} before); "
          f"{summary.kept} dialogues kept in {summary.records}; agreement: {summary.sidecar}")


def _cmd_models_list(_: argparse.Namespace) -> None:
    from emoneuron.models.loading import DEFAULT_MODEL, EMBEDDED, cached_directory

    print(f"{'name':<14} {'layers':>6} {'neurons/layer':>13} {'neurons':>8}  cached  description")
    for name, model in EMBEDDED.items():
        cached = "yes" if (cached_directory(name) / "config.json").is_file() else "no"
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:<14} {model.n_layers:>6} {model.width:>13} {model.n_layers * model.width:>8}"
              f"  {cached:<6}  {model.description}{default}")


def _cmd_models_export(args: argparse.Namespace) -> None:
    from emoneuron.models.loading import export

    print(f"exported to {export(args.name, args.dir)}")


def _cmd_record(args: argparse.Namespace) -> None:
    from emoneuron.data.schema import read_records, records_hash, select_classes
    from emoneuron.executors import ExecutorConfig, executor_for
    from emoneuron.models.loading import ModelSpec, load
    from emoneuron.recording.recorder import record_sharded, shard_count

    records, _ = select_classes(read_records(args.data), include_neutral=False)
    loaded = load(args.model, device=args.device)
    with executor_for(_dataclass_from(ExecutorConfig, args)) as executor:
        worker_model = ModelSpec.on_gpus(args.model, executor.gpus_per_worker)
        stats = record_sharded(executor, loaded, records, shard_count(executor, args.shards),
                               worker_model.load,
                               args.token_policy, args.batch_size, site=args.site,
                               groups=args.groups)
    stats.save(args.out, {"model": args.model, "data_hash": records_hash(records)})
    print(f"wrote statistics of {int(stats.tokens.sum())} tokens at {stats.site} to {args.out}")


def _cmd_identify(args: argparse.Namespace) -> None:
    from emoneuron.recording.statistics import Recording
    from emoneuron.selection.identify import IdentifyConfig, identify
    from emoneuron.selection.stability import StabilityConfig, write_stability

    recording = Recording.load(args.stats)
    config = _dataclass_from(IdentifyConfig, args)
    sets = identify(recording, config, args.model_name)
    sets.save(args.out)
    print(", ".join(f"{e} {len(n)}" for e, n in sets.emotions.items()) + f" -> {args.out}")
    stability_out = args.stability_out or args.out.with_name("stability.json")
    report = write_stability(recording, config, stability_out,
                             _dataclass_from(StabilityConfig, args), progress=False)
    for emotion, row in report["emotions"].items():
        boot = row.get("bootstrap_jaccard_to_full", {}).get("mean", "n/a")
        null = row.get("null_count", {}).get("mean", "n/a")
        print(f"  {emotion:<10} {row['count']:>5} neurons, bootstrap Jaccard {boot}, "
              f"null count {null}")
    print(f"stability -> {stability_out}")


def _cmd_neuron(args: argparse.Namespace) -> None:
    from emoneuron.data.schema import read_records
    from emoneuron.io import read_json
    from emoneuron.models.loading import load
    from emoneuron.recording.statistics import Recording
    from emoneuron.reporting.cards import format_card, neuron_card
    from emoneuron.rundir import MANIFEST, NEURONS, RunDir, check_neurons
    from emoneuron.selection.identify import NeuronSets

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
    loaded = load(run_dir.manifest()["config"]["model"] if in_run else args.target,
                  device=args.device)
    shape = (loaded.n_layers, loaded.width)
    if args.neurons:
        check_neurons(read_json(args.neurons), args.neurons, *shape)
    elif in_run:
        sets = run_dir.neurons(shape=shape)
    card = neuron_card(loaded, args.layer, args.index, recording, records, sets, args.top)
    print(json.dumps(card.to_json(), indent=2) if args.json else format_card(card))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from emoneuron.causal.prompts import VariantsConfig, prompt_variants
    from emoneuron.data.schema import read_records
    from emoneuron.data.synth import synthesize
    from emoneuron.models.loading import load

    records = (read_records(args.data) if args.data
               else synthesize(args.per_emotion, args.seed, args.max_turns))
    table = prompt_variants(load(args.model, device=args.device), records,
                            _dataclass_from(VariantsConfig, args),
                            source=str(args.data or "synthetic data"))
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if args.out:
        from emoneuron.io import atomic_open

        with atomic_open(args.out) as handle:
            table.to_csv(handle, index=False, float_format="%.4f")


def _cmd_report(args: argparse.Namespace) -> None:
    from emoneuron.reporting.report import write_report

    print(f"report: {write_report(args.run_dir)}")


def _add_data_parsers(data: Any) -> None:
    from emoneuron.data.dedup import NEAR_THRESHOLD
    from emoneuron.data.loaders import DEFAULT_CONTEXT, FORMATS

    load = data.add_parser("load", help="a real corpus (or your own file) into records")
    load.add_argument("path", type=Path, help="corpus file or folder")
    load.add_argument("--format", required=True, choices=list(FORMATS))
    load.add_argument("--split", help="split to read when PATH is a folder")
    load.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                      help="utterance-level corpora: turns kept before the target utterance")
    for column, default in (("text", "text"), ("label", "emotion"), ("id", None),
                            ("speaker", None), ("dialogue", None)):
        load.add_argument(f"--{column}-column", default=default,
                          help=f"jsonl/csv: the {column} column (default: {default})")
    load.add_argument("--turn-separator", default="\n",
                      help="jsonl/csv, one dialogue per row: splits the text into turns")
    load.add_argument("--out", type=Path, required=True, help="records .jsonl to write")
    load.set_defaults(func=_cmd_data_load)

    stats = data.add_parser("stats", help="records per emotion and source, and their lengths")
    stats.add_argument("file", type=Path)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=_cmd_data_stats)

    both = data.add_parser("overlap", help="exact and near-duplicate records in two files")
    both.add_argument("first", type=Path)
    both.add_argument("second", type=Path)
    both.add_argument("--threshold", type=float, default=NEAR_THRESHOLD,
                      help="word 3-gram Jaccard similarity for near duplicates")
    both.add_argument("--json", action="store_true", help="machine-readable output")
    both.set_defaults(func=_cmd_data_overlap)


def _cmd_compare(args: argparse.Namespace) -> None:
    from emoneuron.reporting.compare import write_comparison

    print(f"comparison: {write_comparison(args.run_dirs, args.out)}")


def build_parser() -> argparse.ArgumentParser:
    from emoneuron.causal.prompts import VariantsConfig
    from emoneuron.data.generate import GenerateConfig
    from emoneuron.executors import ExecutorConfig
    from emoneuron.models.adapters import DEFAULT_SITE
    from emoneuron.recording.statistics import DEFAULT_GROUPS, TOKEN_POLICIES
    from emoneuron.run import PRESETS, RunConfig
    from emoneuron.selection.identify import IdentifyConfig
    from emoneuron.selection.scores import STATISTICS
    from emoneuron.selection.stability import StabilityConfig

    parser = argparse.ArgumentParser(prog="emoneuron", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="the whole pipeline into one run directory")
    _add_dataclass_options(run, RunConfig, skip=("preset",), only_given=True)
    run.add_argument("--preset", choices=list(PRESETS), default=argparse.SUPPRESS,
                     help="demo (about 15 min on 2 CPU cores) or study (at least 60 held-out "
                          "dialogues per emotion); options given explicitly override it")
    run.add_argument("--out", type=Path, required=True, help="run directory")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    ablate = commands.add_parser("ablate", help="evaluate a neurons.json in a finished run's "
                                                "context and add it to its method comparison")
    ablate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ablate.add_argument("--neurons", type=Path, required=True, help="neurons.json to evaluate")
    ablate.add_argument("--name", help="method name (default: the file's name without .json); "
                                       "results go to RUN_DIR/methods/NAME/")
    ablate.add_argument("--quiet", action="store_true", help="no progress bars")
    ablate.set_defaults(func=_cmd_ablate)

    data = commands.add_parser("data", help="data sets").add_subparsers(dest="data_command",
                                                                        required=True)
    synth = data.add_parser("synth", help="built-in synthetic dialogues, balanced and seeded")
    synth.add_argument("--per-emotion", type=int, default=40)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--max-turns", type=int, default=5)
    synth.add_argument("--keyword-free", action="store_true",
                       help="no emotion word of the lexicon in any dialogue")
    synth.add_argument("--out", type=Path, required=True)
    synth.set_defaults(func=_cmd_synth)
    _add_data_parsers(data)

    lexical = data.add_parser("lexical", help="share of dialogues that name their emotion")
    lexical.add_argument("file", type=Path)
    lexical.add_argument("--json", action="store_true", help="machine-readable output")
    lexical.set_defaults(func=_cmd_lexical)
    kw_free = data.add_parser("keyword-free", help="a variant without emotion words")
    kw_free.add_argument("file", type=Path)
    kw_free.add_argument("--out", type=Path, required=True)
    kw_free.add_argument("--mode", choices=("drop", "rewrite"), default="drop",
                         help="drop dialogues with emotion words, or remove those sentences")
    kw_free.set_defaults(func=_cmd_keyword_free)
    gen = data.add_parser("generate", help="LLM-written dialogues, kept by judge majority")
    _add_dataclass_options(gen, GenerateConfig)
    gen.add_argument("--out", type=Path, required=True, help="records .jsonl (resumable)")
    gen.add_argument("--quiet", action="store_true", help="no progress bars")
    gen.set_defaults(func=_cmd_generate)

    models = commands.add_parser("models", help="embedded models").add_subparsers(
        dest="models_command", required=True)
    models.add_parser("list", help="embedded models and their sizes").set_defaults(
        func=_cmd_models_list)
    export = models.add_parser("export", help="write a plain Hugging Face model directory")
    export.add_argument("name")
    export.add_argument("dir", type=Path)
    export.set_defaults(func=_cmd_models_export)

    rec = commands.add_parser("record", help="per-emotion neuron statistics of a data set")
    rec.add_argument("--model", default="smollm2-135m")
    rec.add_argument("--data", required=True, type=Path)
    rec.add_argument("--token-policy", choices=TOKEN_POLICIES, default="dialogue")
    rec.add_argument("--batch-size", type=int, default=16)
    rec.add_argument("--site", default=DEFAULT_SITE,
                     help=f"neuron tensor to record (default {DEFAULT_SITE}; also "
                          "mlp.activation, mlp.pre_activation)")
    rec.add_argument("--groups", type=int, default=DEFAULT_GROUPS,
                     help="dialogue groups per emotion, for the bootstrap and the null")
    rec.add_argument("--device", default="cpu")
    rec.add_argument("--out", type=Path, required=True, help="statistics .safetensors file")
    _add_dataclass_options(rec, ExecutorConfig)
    rec.add_argument("--shards", type=int, default=0,
                     help="dialogue shards, each a task (default: 4 per Ray worker)")
    rec.set_defaults(func=_cmd_record)

    ident = commands.add_parser("identify", help="select emotion neurons from statistics")
    ident.add_argument("stats", type=Path)
    ident.add_argument("--statistic", "--method", dest="method", choices=STATISTICS,
                       default="lape", help="default: lape")
    _add_dataclass_options(ident, IdentifyConfig, skip=("method",))
    _add_dataclass_options(ident, StabilityConfig)
    ident.add_argument("--model-name", default="unknown", help="model name for neurons.json")
    ident.add_argument("--out", type=Path, required=True, help="neurons.json to write")
    ident.add_argument("--stability-out", type=Path, default=None,
                       help="stability.json to write (bootstrap, null, agreement); "
                            "default: beside --out")
    ident.set_defaults(func=_cmd_identify)

    evaluate = commands.add_parser(
        "evaluate", help="baseline accuracy under each prompt variant (shots, plain/chat, "
        "calibration)")
    evaluate.add_argument("--model", default="smollm2-135m")
    evaluate.add_argument("--data", type=Path, help="JSONL data (default: synthetic)")
    evaluate.add_argument("--per-emotion", type=int, default=40, help="synthetic data size")
    evaluate.add_argument("--max-turns", type=int, default=5, help="synthetic data turns")
    evaluate.add_argument("--device", default="cpu")
    _add_dataclass_options(evaluate, VariantsConfig)
    evaluate.add_argument("--out", type=Path, help="also write the table as CSV")
    evaluate.set_defaults(func=_cmd_evaluate)

    neuron = commands.add_parser("neuron", help="one neuron's card: top activations, vocab")
    neuron.add_argument("target", help="run directory, or a model (vocabulary projection only "
                                       "unless --stats and --data are given)")
    neuron.add_argument("layer", type=int)
    neuron.add_argument("index", type=int)
    neuron.add_argument("--stats", type=Path, help="recording (.safetensors) for top activations")
    neuron.add_argument("--data", type=Path, help="the recorded JSONL, to show tokens in context")
    neuron.add_argument("--neurons", type=Path, help="neurons.json, to show set membership")
    neuron.add_argument("--top", type=int, default=10, help="tokens promoted / suppressed")
    neuron.add_argument("--device", default="cpu")
    neuron.add_argument("--json", action="store_true", help="print the card as JSON")
    neuron.set_defaults(func=_cmd_neuron)

    report = commands.add_parser("report", help="(re)write report.html of a run directory")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(func=_cmd_report)

    compare = commands.add_parser("compare", help="compare runs of different models side by side")
    compare.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    compare.add_argument("--out", type=Path, required=True, help="directory for compare.html")
    compare.set_defaults(func=_cmd_compare)
    return parser


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so files being written are cleaned up."""


def _terminate(_signal: int, _frame: object) -> None:
    raise _Terminated


def _resume_hint(args: argparse.Namespace) -> str:
    """How to go on after an interruption: a run resumes from its finished conditions."""
    from emoneuron.rundir import CONDITIONS

    store = Path(getattr(args, "out", None) or ".") / CONDITIONS
    if args.command == "run" and store.is_file():
        finished = store.read_bytes().count(b"\n")
        return f"; rerun the same command to resume from {finished} finished conditions"
    return "; rerun the same command to resume" if args.command == "run" else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_term = signal.signal(signal.SIGTERM, _terminate)
    # A process started in the background by a non-interactive shell inherits an ignored
    # SIGINT; Ctrl-C or `kill -INT` should still stop it cleanly.
    on_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args.func(args)
    except UserError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
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
