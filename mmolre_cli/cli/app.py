"""The ``mmolre`` command line: thin commands over library functions, heavy imports inside them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from mmolre_cli import __version__
from mmolre_cli.cli.ablate import ablate
from mmolre_cli.cli.common import fail, global_options, user_errors
from mmolre_cli.cli.data import data_app
from mmolre_cli.cli.evaluate import evaluate
from mmolre_cli.cli.export import export_app
from mmolre_cli.cli.help import App, Group
from mmolre_cli.cli.plugins import plugins
from mmolre_cli.cli.prepare import prepare_app
from mmolre_cli.cli.profile import profile
from mmolre_cli.cli.runs import runs
from mmolre_cli.cli.train import train
from mmolre_cli.cli.tune import tune
from mmolre_cli.errors import UsageError
from mmolre_cli.plugins.manager import PLUGINS_DIR_ENV


def usage_message(error: Exception) -> str:
    """A usage error of Typer's parser as one message that names the option at fault."""
    param, message = getattr(error, "param", None), getattr(error, "message", "").rstrip(".")
    if param is not None and message:  # a bad value of one option (a missing one has no message of its own)
        detail = message[:1].lower() + message[1:]
        if hasattr(error.__cause__, "errors"):  # Typer's (pydantic) conversion refused it: show the value
            detail = f"invalid value {error.__cause__.errors()[0]['input']!r} ({detail})"
        return f"{param.opts[0]}: {detail}"
    if getattr(error, "possibilities", None):  # an unknown option; the parser lists close matches best first
        return f"no such option {error.option_name} (did you mean {error.possibilities[0]}?)"
    return error.format_message()


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Typer's usage errors (bad, unknown or missing options) as one ``Error:`` line instead of a panel.

    They are told by what they have (``format_message`` and ``exit_code``): their classes belong to the
    Click that Typer bundles, which is not public. A NoArgsIsHelpError has shown the help already.
    """
    try:
        yield
    except Exception as error:
        if not hasattr(error, "format_message") or type(error).__name__ == "NoArgsIsHelpError":
            raise
        fail(usage_message(error), error.exit_code)


def empty_value(args: list[str]) -> str | None:
    """What an empty value in ``args`` was given to, for an error: no option of mmolre takes one (an empty
    path would mean the current directory, an empty list the defaults)."""
    for i, arg in enumerate(args):
        if arg.startswith("--") and arg.endswith("="):
            return f"{arg[:-1]}: empty value"
        if not arg.strip():
            before = args[i - 1] if i else "mmolre"
            return f"{before}: empty value" if before.startswith("-") else f"empty argument after {before!r}"
    return None


class OneLineErrors(Group):
    """The ``mmolre`` group: parsing and dispatch report usage errors in the project's one-line form."""

    def make_context(self, info_name, args, *rest, **kwargs):
        problem = empty_value(list(args))
        if problem:
            fail(problem, 2)
        with one_line_usage_errors():
            return super().make_context(info_name, args, *rest, **kwargs)

    def invoke(self, ctx):
        with one_line_usage_errors():
            return super().invoke(ctx)


app = App(
    name="mmolre",
    cls=OneLineErrors,
    help="Multimodal Mixture of Low-Rank Experts for joint sentiment analysis and emotion recognition.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"mmolre {__version__}")
        raise typer.Exit()


@user_errors
def plugins_directory(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> Path | None:
    """``--plugins-dir`` (or ``$MMOLRE_PLUGINS_DIR``) as a directory; an empty path (it would mean the current
    directory) or one that is no directory is a UsageError naming where the value came from."""
    if value is None:
        return None
    given = param.envvar if ctx.get_parameter_source(param.name).name == "ENVIRONMENT" else param.opts[0]
    path = Path(value)
    if not value.strip():
        raise UsageError(f"{given}: empty path")
    if not path.is_dir():
        raise UsageError(f"{given}: dir {value!r} {'is a file' if path.exists() else 'does not exist'}")
    return path


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Show the version."),
    plugins_dir: str | None = typer.Option(  # a Path once plugins_directory has checked it
        None,
        "--plugins-dir",
        envvar=PLUGINS_DIR_ENV,
        callback=plugins_directory,
        metavar="<dir>",
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
app.command("runs")(runs)
app.command("tune")(tune)


def main() -> None:
    app(prog_name="mmolre")
