"""The command pages of ``docs/cli``, generated from the ``emoneuron`` parser.

1. ``make docs-cli`` (``python -m emoneuron.clidocs``) rewrites the block between
   ``<!-- generated: cli COMMAND -->`` and ``<!-- end generated -->`` of each command's page
   ``docs/cli/COMMAND.md`` (``data synth``: ``data-synth.md``): its title, description, usage
   and every option with its help and default, in the parser's groups (:func:`reference`). The
   block ``cli`` alone (``docs/cli/index.md``) holds the global options and the commands.
2. Prose outside the blocks is kept; a command without a page gets one holding its block.
3. ``tests/test_clidocs.py`` renders every page again and fails on any difference, so an option
   added without ``make docs-cli`` fails the tests.

The parser imports no torch (:func:`emoneuron.cli.build_parser`), so neither does this.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from emoneuron.cli import build_parser
from emoneuron.errors import UserError
from emoneuron.io import rewrite
from emoneuron.reporting.published import rendered

PAGES = Path("docs/cli")
INDEX = "index.md"
KIND = "cli"
WIDTH = 100  # usage wrapped at a fixed width: the terminal's would make the pages differ
DEFAULT = re.compile(r" \(default: (.*)\)$")


def commands(parser: argparse.ArgumentParser | None = None,
             ) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Every command ("" for ``emoneuron`` itself, "data synth", ...), its parser and its one
    line, in the parser's order; a group of commands (``data``) is not a command of its own.

    >>> list(commands())[:3]
    ['', 'data synth', 'data load']
    """
    found: dict[str, tuple[argparse.ArgumentParser, str]] = {}

    def visit(parser: argparse.ArgumentParser, path: str, line: str) -> None:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not path or not groups:
            found[path] = (parser, line)
        for group in groups:
            lines = {choice.dest: choice.help or "" for choice in group._choices_actions}
            for name, sub in group.choices.items():
                visit(sub, f"{path} {name}".strip(), lines[name])

    visit(parser or build_parser(), "", "")
    return found


def page_of(command: str) -> str:
    """The page of ``command`` in ``docs/cli``.

    >>> page_of("data synth"), page_of("")
    ('data-synth.md', 'index.md')
    """
    return command.replace(" ", "-") + ".md" if command else INDEX


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: a bar would end the cell, ``<`` open HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _default(action: argparse.Action, help_text: str) -> tuple[str, str]:
    """The help without its trailing "(default: X)", and the default it names or the action
    holds (options whose default a preset or the selection method sets name it in their help)."""
    said = DEFAULT.search(help_text)
    if said:
        shown = said.group(1)
        if isinstance(action, argparse.BooleanOptionalAction):
            shown = {"True": "on", "False": "off"}.get(shown, shown)
        return help_text[:said.start()], shown
    if not action.option_strings:  # an argument: always given
        return help_text, ""
    if action.required:
        return help_text, "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return help_text, "on" if action.default not in (False, argparse.SUPPRESS) else "off"
    if action.default is None or action.default == argparse.SUPPRESS:
        return help_text, ""
    shown = action.default
    if isinstance(shown, str) and (not shown.isprintable() or shown != shown.strip()):
        return help_text, repr(shown)  # a line break or a space, visible
    return help_text, " ".join(map(str, shown)) if isinstance(shown, list | tuple) else str(shown)


def _table(actions: Sequence[argparse.Action], formatter: argparse.HelpFormatter) -> list[str]:
    lines = ["| argument | meaning |", "|---|---|"] if not actions[0].option_strings else [
        "| option | default | meaning |", "|---|---|---|"]
    for action in actions:
        help_text, default = _default(action, formatter._expand_help(action) if action.help
                                      else "")
        invocation = formatter._format_action_invocation(action)
        cells = [f"`{_cell(invocation)}`", *([_cell(default)] if action.option_strings else []),
                 _cell(help_text)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _commands_table(found: dict[str, tuple[argparse.ArgumentParser, str]]) -> list[str]:
    lines = ["| command | what it does |", "|---|---|"]
    lines += [f"| [`{command}`]({page_of(command)}) | {_cell(line)} |"
              for command, (_, line) in found.items() if command]
    return lines


def reference(command: str, found: dict[str, tuple[argparse.ArgumentParser, str]]) -> str:
    """The generated part of ``command``'s page: title, description, usage, and a table of
    options per argparse group (help and subcommand groups left out)."""
    parser, line = found[command]
    formatter = argparse.HelpFormatter(parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    usage = formatter.format_help().strip()
    lines = [*([f"# {parser.prog}", ""] if command else []),  # the index has its own title
             parser.description or line, "", "```sh", usage, "```"]
    for group in parser._action_groups:
        shown = [action for action in group._group_actions
                 if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))]
        if shown:
            title = group.title or "options"
            lines += ["", f"## {title[:1].upper()}{title[1:]}", "", *_table(shown, formatter)]
    if not command:
        lines += ["", "## Commands", "", *_commands_table(found)]
    return "\n".join(lines) + "\n"


def render(spec: str, found: dict[str, tuple[argparse.ArgumentParser, str]]) -> str:
    """The body of the generated block ``spec`` ("cli COMMAND", or "cli" for the top level)."""
    kind, _, command = spec.partition(" ")
    if kind != KIND or command not in found:
        raise UserError(f"generated block {spec!r} in {PAGES}: give cli and one of the "
                        f"commands ({', '.join(c for c in found if c)}), or cli alone")
    return reference(command, found)


def pages(root: Path = Path(), parser: argparse.ArgumentParser | None = None,
          ) -> dict[Path, str]:
    """Each command's page under ``root`` as it should read: its blocks rendered again, or,
    for a command without a page, only its block."""
    found = commands(parser)
    result = {}
    for command in found:
        path = root / PAGES / page_of(command)
        text = (path.read_text(encoding="utf-8") if path.exists() else
                f"<!-- generated: {KIND} {command} -->\n<!-- end generated -->\n")
        result[path] = rendered(text, lambda spec: render(spec, found))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m emoneuron.clidocs",
        description=f"rewrite the generated blocks of the command pages in {PAGES} from the "
                    "emoneuron parser").parse_args(argv)
    try:
        changed = [path for path, text in pages().items() if rewrite(path, text)]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(f"rewrote {path}" for path in changed) or "every command page is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
