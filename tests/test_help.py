"""``--help`` shows each option's default and no ``<bool>`` on flags or ``{arg}`` in usage lines."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.cli.help import App, as_option, setting_default, settings_by_name
from mmolre_cli.config import RunConfig


def commands(group: typer.Typer = app) -> list[list[str]]:
    """The argument lists that reach every command and group of ``group`` (the app itself first)."""
    root = typer.main.get_command(group)
    found: list[list[str]] = []

    def walk(command, path: list[str]) -> None:
        found.append(path)
        context = typer.Context(command, info_name=path[-1] if path else "mmolre")
        for name in getattr(command, "list_commands", lambda _: [])(context):
            walk(command.get_command(context, name), [*path, name])

    walk(root, [])
    return found


def help_of(path: list[str], group: typer.Typer = app) -> str:
    result = CliRunner().invoke(group, [*path, "--help"], env={"COLUMNS": "200"}, prog_name="mmolre")
    assert result.exit_code == 0, result.output
    return result.output


def test_every_help_shows_flags_without_a_type_and_arguments_without_braces():
    paths = commands()
    assert ["eval"] in paths and ["prepare", "mmsa"] in paths
    for path in paths:
        text = help_of(path)
        assert "<bool>" not in text, path
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage and "}" not in usage, usage
    assert "Usage: mmolre eval [OPTIONS] RUN " in help_of(["eval"])


def option_rows(text: str) -> dict[str, str]:
    """Option name → its row of a rich ``--help`` panel, continuation lines joined."""
    rows: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        cells = line.strip("│ ").split()
        if cells and cells[0].startswith("--"):
            current = cells[0]
        if current and line.startswith("│"):
            rows[current] = " ".join([rows.get(current, ""), *cells]).strip()
    return rows


def test_train_help_shows_the_default_of_every_setting_it_overrides():
    rows = option_rows(help_of(["train"]))
    config = RunConfig()
    for option, value in {
        "--epochs": config.train.epochs,
        "--lr": config.train.lr,
        "--patience": config.train.patience,
        "--d-model": config.model.d_model,
        "--batch-size": config.train.batch_size,
        "--tasks": "sa,er",
        "--tune-thresholds": "off",
    }.items():
        assert rows[option].endswith(f"Default: {value}."), rows[option]


def test_every_option_that_overrides_a_setting_shows_its_default():
    """Options named like a setting (``--encoder-lr`` for ``train.encoder_lr``) get its default with no more code."""
    names = settings_by_name()
    checked = 0
    for path in commands():
        command = typer.main.get_command(app)
        context = typer.Context(command, info_name="mmolre")
        for name in path:
            command = command.get_command(context, name)
            context = typer.Context(command, info_name=name, parent=context)
        for param in command.get_params(context):
            if param.param_type_name == "option" and param.name in names and param.default in (None, []):
                default = setting_default(names[param.name])
                shown = f"Default: {as_option(default)}." in (param.help or "")
                assert shown or "default" in (param.help or "").lower() or default is None, (path, param.name)
                checked += 1
    assert checked > 30  # train, ablate and profile override most model and training settings


def test_a_new_option_named_like_a_setting_shows_its_default():
    made_up = App()

    @made_up.command()
    def fit(
        patience: int | None = typer.Option(None, help="Epochs to wait."),
        note: str | None = typer.Option(None, help="Free text."),
        loud: bool = typer.Option(False, "--loud", help="Shout."),
    ) -> None:
        """Fit."""

    text = help_of([], made_up)
    assert f"Epochs to wait. Default: {RunConfig().train.patience}." in text
    assert "Free text. " in text and "Free text. Default" not in text
    assert "<bool>" not in text


@pytest.mark.parametrize(("value", "shown"), [(True, "on"), (["sa", "er"], "sa,er"), ({"a": 1, "b": 0.5}, "a=1,b=0.5")])
def test_setting_values_read_as_option_values(value, shown):
    assert as_option(value) == shown
