"""Regenerate ``docs/cli.md`` from the live ``mmolre`` app, or check it against ``--help``.

    python docs/gen_cli.py           # rewrite docs/cli.md
    python docs/gen_cli.py --check   # exit 1, listing every difference, when docs/cli.md is stale

``tests/test_docs.py`` runs the same check, so a new command or option fails the tests until documented.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer

CLI_MD = Path(__file__).with_name("cli.md")
PROG = "mmolre"
INTRO = """# `mmolre` command reference

Generated from `mmolre --help` by `python docs/gen_cli.py`; `tests/test_docs.py` fails when a
command or option here differs from the live `--help`. Every command also accepts `--help`.
Options of `mmolre` itself go before the command: `mmolre --plugins-dir ./my_plugins train …`.

Environment variables:

| variable | effect |
| --- | --- |
| `MMOLRE_PLUGINS_DIR` | the same as `--plugins-dir` |
| `MMOLRE_LOAD_PLUGINS` | comma-separated installed plugins to load (set but empty: none but the built-ins) |
| `MMOLRE_TRACE_PLUGINS=1` | print each plugin loaded, each hook call and what it registered, on stderr |
| `MMOLRE_CACHE_DIR` | where the built-in synthetic dataset is cached |
| `MLFLOW_TRACKING_URI` | default MLflow tracking server of `train`, `eval` and `ablate` |
"""
HEADING = re.compile(r"^#{2,} `(?P<path>[^`]+)`$")
ROW = re.compile(r"^\| `(?P<opts>[^`]+)` \| (?P<help>.*) \|$")


def walk(command, context) -> list:
    """Every visible command under ``command`` (itself first), depth-first, with its context."""
    found = [(command, context)]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                found += walk(sub, typer.Context(sub, info_name=name, parent=context))
    return found


def options(command, context) -> dict[str, tuple[str, str]]:
    """Option or argument name → (its usage, e.g. ``--data <path>``, its help text) as ``--help`` shows them."""
    rows = {}
    for param in command.get_params(context):
        record = None if getattr(param, "hidden", False) else param.get_help_record(context)
        if record is None or param.name == "help":
            continue
        usage, text = record
        rows[usage.split()[0].rstrip(",")] = (usage, " ".join(text.split()).replace("|", "\\|"))
    return rows


def reference(app: typer.Typer, prog: str = PROG) -> dict[str, dict]:
    """Command path → {"usage", "help", "options"} for the app and every command under it."""
    root = typer.main.get_command(app)
    entries = {}
    for command, context in walk(root, typer.Context(root, info_name=prog)):
        entries[context.command_path] = {
            "usage": " ".join([context.command_path, *command.collect_usage_pieces(context)]),
            "help": (command.help or "").strip(),
            "options": options(command, context),
        }
    return entries


def render(app: typer.Typer, prog: str = PROG) -> str:
    """The whole of ``cli.md`` for ``app``."""
    lines = [INTRO.rstrip()]
    for path, entry in reference(app, prog).items():
        level = "#" * min(2 + path.count(" "), 4)
        lines += ["", f"{level} `{path}`", "", f"Usage: `{entry['usage']}`"]
        if entry["help"]:
            lines += ["", entry["help"]]
        if entry["options"]:
            lines += ["", "| option | description |", "| --- | --- |"]
            lines += [f"| `{usage}` | {text} |" for usage, text in entry["options"].values()]
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Command path → option name → (usage, help), as ``cli.md`` documents them."""
    documented: dict[str, dict[str, tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        if heading := HEADING.match(line):
            current = documented.setdefault(heading["path"], {})
        elif (row := ROW.match(line)) and current is not None:
            current[row["opts"].split()[0].rstrip(",")] = (row["opts"], row["help"])
    return documented


def problems(app: typer.Typer, text: str, prog: str = PROG) -> list[str]:
    """Every difference between the commands and options of ``app`` and their documentation ``text``."""
    live = {path: entry["options"] for path, entry in reference(app, prog).items()}
    documented = parse(text)
    found = [f"`{path}` is in --help but not documented" for path in live if path not in documented]
    found += [f"`{path}` is documented but not in --help" for path in documented if path not in live]
    for path in live.keys() & documented.keys():
        have, doc = live[path], documented[path]
        found += [f"`{path}`: option `{name}` is in --help but not documented" for name in have if name not in doc]
        found += [f"`{path}`: option `{name}` is documented but not in --help" for name in doc if name not in have]
        found += [
            f"`{path}`: option `{name}` is documented as `{doc[name][0]}` | {doc[name][1]} "
            f"but --help says `{have[name][0]}` | {have[name][1]}"
            for name in have.keys() & doc.keys()
            if have[name] != doc[name]
        ]
    return sorted(found)


def main(argv: list[str]) -> int:
    from mmolre_cli.cli.app import app

    if "--check" in argv:
        found = problems(app, CLI_MD.read_text() if CLI_MD.exists() else "")
        for problem in found:
            print(f"docs/cli.md: {problem}", file=sys.stderr)
        return 1 if found else 0
    CLI_MD.write_text(render(app))
    print(f"wrote {CLI_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
