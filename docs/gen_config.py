"""Regenerate ``docs/config.md``, the reference of every config key, from ``mmolre_cli/config.py``.

    python docs/gen_config.py           # rewrite docs/config.md
    python docs/gen_config.py --check   # exit 1 when docs/config.md is stale or a key has no meaning

Keys, types and defaults come from the config dataclasses; a key's meaning is its comment in config.py,
``#: …`` lines just above the field or a ``# …`` comment after it on the same line. A name of a tuple in
config.py written in capitals (``one of SCHEDULES``) is replaced by its values. The option of ``mmolre
train`` that overrides a key is the option of the same name (``--epochs`` for ``train.epochs``).
``tests/test_docs.py`` runs the check, so a new key fails the tests until it has a meaning and the
reference is regenerated.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from pathlib import Path
from typing import Any

import yaml

from mmolre_cli import config as config_module
from mmolre_cli.config import RunConfig

CONFIG_MD = Path(__file__).with_name("config.md")
CONSTANT = re.compile(r"\b[A-Z][A-Z_]{2,}\b")
INTRO = """# Config keys

Generated from `mmolre_cli/config.py` by `python docs/gen_config.py`; `tests/test_docs.py` fails when
this page differs from the code. A YAML file given to `--config` holds any of these keys, nested as
below; keys left out keep their defaults, and a command-line option overrides the file:
defaults < `--config FILE.yaml` < options. An unknown key or a value of the wrong type is refused
with one line naming the file and the key. `mmolre train` writes the resolved config of every run to
`<run dir>/config.yaml`. The option column names the `mmolre train` option that sets a key (`ablate`
and `profile` take the same ones where they have them)."""


def comments(source: str) -> dict[int, str]:
    """Line number → the text of the comment on that line (``#:`` or ``#`` stripped)."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").removeprefix(":").strip()
    return found


def field_meanings(cls: type) -> dict[str, str]:
    """Field name → its comment in ``cls``'s source: ``#:`` lines just above it, else a comment after it."""
    source = textwrap.dedent(inspect.getsource(cls))
    notes = comments(source)
    lines = source.splitlines()
    node = ast.parse(source).body[0]
    meanings = {}
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign):
            continue
        above, line = [], statement.lineno - 1
        while line >= 1 and lines[line - 1].strip().startswith("#:"):
            above.insert(0, notes[line])
            line -= 1
        meanings[statement.target.id] = " ".join(above) or notes.get(statement.end_lineno, "")
    return meanings


def expand_constants(text: str) -> str:
    """``one of SCHEDULES`` → ``one of `constant`, `cosine`, `plateau```, for tuples of names in config.py."""

    def values(match: re.Match) -> str:
        value = getattr(config_module, match[0], None)
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            return ", ".join(f"`{v}`" for v in value)
        return match[0]

    return CONSTANT.sub(values, text)


def type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) if isinstance(kind, type) else str(kind).replace("typing.", "")


def rows(cls: type = RunConfig, prefix: str = "", instance: Any = None) -> list[dict[str, str]]:
    """One row per key of ``cls`` (nested groups flattened to dotted keys), in the order config.py lists them."""
    instance = instance if instance is not None else cls()
    hints = typing.get_type_hints(cls)
    meanings = field_meanings(cls)
    found = []
    for field in dataclasses.fields(cls):
        value, kind, key = getattr(instance, field.name), hints[field.name], prefix + field.name
        if dataclasses.is_dataclass(kind):
            found += rows(kind, f"{key}.", value)
            continue
        default = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False)
        default = default.removesuffix("...\n").strip()
        found.append(
            {"key": key, "type": type_name(kind), "default": default, "meaning": expand_constants(meanings[field.name])}
        )
    return found


def options_by_key() -> dict[str, str]:
    """Config key → the ``mmolre train`` option that sets it: the option named like the key, or ``--experts
    NAME=…`` for the keys of ``model.experts``."""
    import typer

    from mmolre_cli.cli.app import app
    from mmolre_cli.cli.help import settings_by_name

    root = typer.main.get_command(app)
    context = typer.Context(root, info_name="mmolre")
    train = root.get_command(context, "train")
    params = {p.name: p for p in train.get_params(typer.Context(train, info_name="train", parent=context))}
    found = {}
    for name, key in settings_by_name().items():
        if name in params and params[name].param_type_name == "option":
            found[key] = f"`{params[name].opts[0]}`"
    if "experts" in params:
        for field in dataclasses.fields(config_module.ExpertConfig):
            found[f"model.experts.{field.name}"] = f"`--experts {field.name}=…`"
    return found


def render() -> str:
    """The whole of ``config.md``."""
    options = options_by_key()
    lines = [INTRO, "", "| key | type | default | option | meaning |", "| --- | --- | --- | --- | --- |"]
    for row in rows():
        code = [f"`{row[column]}`" for column in ("key", "type", "default")]
        cells = [*code, options.get(row["key"], ""), row["meaning"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    defaults = yaml.safe_dump(RunConfig().to_dict(), sort_keys=False).strip()
    lines += ["", "Every default, as a config file:", "", "```yaml", defaults, "```"]
    return "\n".join(lines) + "\n"


def problems(text: str) -> list[str]:
    """Keys without a meaning in config.py, and a difference between ``text`` and the generated page."""
    found = [
        f"{row['key']}: no comment in mmolre_cli/config.py says what it means" for row in rows() if not row["meaning"]
    ]
    if text != render():
        found.append("docs/config.md differs from mmolre_cli/config.py; run `python docs/gen_config.py`")
    return found


def main(argv: list[str]) -> int:
    if "--check" in argv:
        found = problems(CONFIG_MD.read_text() if CONFIG_MD.exists() else "")
        for problem in found:
            print(f"docs/config.md: {problem}", file=sys.stderr)
        return 1 if found else 0
    CONFIG_MD.write_text(render())
    print(f"wrote {CONFIG_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
