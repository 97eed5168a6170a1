"""The ``emoneuron`` command: a thin layer over the library API.

Every failure the user can fix (bad data, unknown model, unsupported architecture, ...) is a
:class:`~emoneuron.errors.UserError`: printed as one line, exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emoneuron.errors import UserError


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type[Any],
                           skip: Sequence[str] = ()) -> None:
    """One ``--option`` per dataclass field, so configs and the CLI cannot drift apart."""
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            continue
        flag = "--" + spec.name.replace("_", "-")
        hint = hints[spec.name]
        default = spec.default
        help_text = f"default: {default}"
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
    from emoneuron.run import RunConfig, run

    report = run(_dataclass_from(RunConfig, args), args.out, progress=not args.quiet)
    print(f"report: {report}")


def _cmd_synth(args: argparse.Namespace) -> None:
    from emoneuron.data.schema import write_records
    from emoneuron.data.synth import synthesize

    records = synthesize(args.per_emotion, args.seed, args.max_turns)
    write_records(args.out, records)
    print(f"wrote {len(records)} dialogues to {args.out}")


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
    from emoneuron.data.schema import read_records, records_hash
    from emoneuron.models.loading import load
    from emoneuron.record import record

    records = read_records(args.data)
    loaded = load(args.model, device=args.device)
    stats = record(loaded, records, args.token_policy, args.batch_size, site=args.site,
                   groups=args.groups)
    stats.save(args.out, {"model": args.model, "data_hash": records_hash(records)})
    print(f"wrote statistics of {int(stats.tokens.sum())} tokens at {stats.site} to {args.out}")


def _cmd_identify(args: argparse.Namespace) -> None:
    from emoneuron.identify import IdentifyConfig, identify
    from emoneuron.record import Recording
    from emoneuron.stability import StabilityConfig, write_stability

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
    from emoneuron.cards import format_card, neuron_card
    from emoneuron.data.schema import read_records
    from emoneuron.identify import NeuronSets
    from emoneuron.io import read_json
    from emoneuron.models.loading import load
    from emoneuron.record import Recording

    target = Path(args.target)
    stats, data, neurons = args.stats, args.data, args.neurons
    model = args.target
    if (target / "manifest.json").is_file():  # a run directory: its model, recording and data
        model = read_json(target / "manifest.json")["config"]["model"]
        stats = stats or target / "stats.safetensors"
        data = data or target / "data" / "identify.jsonl"
        neurons = neurons or target / "neurons.json"
    loaded = load(model, device=args.device)
    card = neuron_card(loaded, args.layer, args.index,
                       Recording.load(stats) if stats else None,
                       read_records(data) if data else (),
                       NeuronSets.load(neurons) if neurons else None, args.top)
    print(json.dumps(card.to_json(), indent=2) if args.json else format_card(card))


def _cmd_report(args: argparse.Namespace) -> None:
    from emoneuron.report import write_report

    print(f"report: {write_report(args.run_dir)}")


def build_parser() -> argparse.ArgumentParser:
    from emoneuron.identify import IdentifyConfig
    from emoneuron.models.adapters import DEFAULT_SITE
    from emoneuron.record import DEFAULT_GROUPS, TOKEN_POLICIES
    from emoneuron.run import RunConfig
    from emoneuron.scores import STATISTICS
    from emoneuron.stability import StabilityConfig

    parser = argparse.ArgumentParser(prog="emoneuron", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="the whole pipeline into one run directory")
    _add_dataclass_options(run, RunConfig)
    run.add_argument("--out", type=Path, required=True, help="run directory")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    data = commands.add_parser("data", help="data sets").add_subparsers(dest="data_command",
                                                                        required=True)
    synth = data.add_parser("synth", help="built-in synthetic dialogues, balanced and seeded")
    synth.add_argument("--per-emotion", type=int, default=40)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--max-turns", type=int, default=5)
    synth.add_argument("--out", type=Path, required=True)
    synth.set_defaults(func=_cmd_synth)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
