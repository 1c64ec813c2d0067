"""Errors that are the user's to fix: the CLI prints them as one line, without a traceback."""


class MmolreError(Exception):
    """A problem with the user's input (an option, a config, a file); ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(MmolreError):
    """A malformed option or config value (exit code 2, like a command-line usage error)."""

    exit_code = 2


class DataError(MmolreError):
    """A data file that is missing, unreadable or inconsistent; the message names the file and field."""


class CheckpointError(MmolreError):
    """A checkpoint or run directory that cannot be used as asked."""


class TrainingError(MmolreError):
    """Training that cannot go on as configured (its loss is no longer a number)."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries often add pages of advice), or its class name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
