"""Exceptions that map to difftest's exit codes."""


class UsageError(Exception):
    """The user asked for something that cannot be done (exit code 2).

    The message names the problem and what to do; it is printed without a traceback.
    """


class RunDataError(UsageError):
    """A run directory or one of its tables is missing or unreadable."""


class Interrupted(Exception):
    """The run was asked to stop (SIGINT or SIGTERM): what finished is kept (exit code 130)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class OutputError(TypeError):
    """A model output difftest cannot compare (it holds no tensors): a problem of the case's definition."""
