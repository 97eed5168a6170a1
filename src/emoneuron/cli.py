"""The ``emoneuron`` command: a thin layer over the library API.

Every failure the user can fix (bad data, unknown model, unsupported architecture, ...) is a
:class:`~emoneuron.errors.UserError`: printed as one line, exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    stats = record(loaded, records, args.token_policy, args.batch_size)
    stats.save(args.out, {"model": args.model, "data_hash": records_hash(records)})
    print(f"wrote statistics of {int(stats.tokens.sum())} tokens to {args.out}")


def _cmd_identify(args: argparse.Namespace) -> None:
    from emoneuron.identify import IdentifyConfig, identify
    from emoneuron.record import ActivationStats

    stats = ActivationStats.load(args.stats)
    sets = identify(stats, _dataclass_from(IdentifyConfig, args), args.model_name)
    sets.save(args.out)
    print(", ".join(f"{e} {len(n)}" for e, n in sets.emotions.items()) + f" -> {args.out}")


def _cmd_report(args: argparse.Namespace) -> None:
    from emoneuron.report import write_report

    print(f"report: {write_report(args.run_dir)}")


def _cmd_compare(args: argparse.Namespace) -> None:
    from emoneuron.compare import write_comparison

    print(f"comparison: {write_comparison(args.run_dirs, args.out)}")


def build_parser() -> argparse.ArgumentParser:
    from emoneuron.identify import IdentifyConfig
    from emoneuron.record import TOKEN_POLICIES
    from emoneuron.run import RunConfig

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
    rec.add_argument("--device", default="cpu")
    rec.add_argument("--out", type=Path, required=True, help="statistics .safetensors file")
    rec.set_defaults(func=_cmd_record)

    ident = commands.add_parser("identify", help="select emotion neurons from statistics")
    ident.add_argument("stats", type=Path)
    _add_dataclass_options(ident, IdentifyConfig)
    ident.add_argument("--model-name", default="unknown", help="model name for neurons.json")
    ident.add_argument("--out", type=Path, required=True, help="neurons.json to write")
    ident.set_defaults(func=_cmd_identify)

    report = commands.add_parser("report", help="(re)write report.html of a run directory")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(func=_cmd_report)

    compare = commands.add_parser("compare", help="compare runs of different models side by side")
    compare.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    compare.add_argument("--out", type=Path, required=True, help="directory for compare.html")
    compare.set_defaults(func=_cmd_compare)
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
