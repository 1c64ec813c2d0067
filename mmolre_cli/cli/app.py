"""The ``mmolre`` command line: thin commands over library functions, heavy imports inside them."""

from __future__ import annotations

from pathlib import Path

import typer

from mmolre_cli import __version__
from mmolre_cli.cli.ablate import ablate
from mmolre_cli.cli.common import global_options
from mmolre_cli.cli.data import data_app
from mmolre_cli.cli.evaluate import evaluate
from mmolre_cli.cli.export import export_app
from mmolre_cli.cli.plugins import plugins
from mmolre_cli.cli.prepare import prepare_app
from mmolre_cli.cli.profile import profile
from mmolre_cli.cli.train import train
from mmolre_cli.plugins.manager import PLUGINS_DIR_ENV

app = typer.Typer(
    name="mmolre",
    help="Multimodal Mixture of Low-Rank Experts for joint sentiment analysis and emotion recognition.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"mmolre {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Show the version."),
    plugins_dir: Path | None = typer.Option(
        None,
        "--plugins-dir",
        envvar=PLUGINS_DIR_ENV,
        exists=True,
        file_okay=False,
        help="Also load every *.py file in this directory as a plugin.",
    ),
) -> None:
    """Multimodal Mixture of Low-Rank Experts for joint sentiment analysis and emotion recognition."""
    global_options.plugins_dir = plugins_dir


app.add_typer(prepare_app, name="prepare")
app.add_typer(export_app, name="export")
app.add_typer(data_app, name="data")
app.command("train")(train)
app.command("eval")(evaluate)
app.command("plugins")(plugins)
app.command("profile")(profile)
app.command("ablate")(ablate)


def main() -> None:
    app(prog_name="mmolre")
