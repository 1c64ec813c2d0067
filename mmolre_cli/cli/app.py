"""The ``mmolre`` command line: thin commands over library functions, heavy imports inside them."""

from __future__ import annotations

import typer

from mmolre_cli import __version__
from mmolre_cli.cli.evaluate import evaluate
from mmolre_cli.cli.plugins import plugins
from mmolre_cli.cli.prepare import prepare_app
from mmolre_cli.cli.train import train

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
) -> None:
    """Multimodal Mixture of Low-Rank Experts for joint sentiment analysis and emotion recognition."""


app.add_typer(prepare_app, name="prepare")
app.command("train")(train)
app.command("eval")(evaluate)
app.command("plugins")(plugins)


def main() -> None:
    app(prog_name="mmolre")
