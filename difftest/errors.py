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


_DISK_FULL_TEXT = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")


def disk_full(exc: BaseException) -> bool:
    """Whether an exception says the disk (or the quota) is full: an ``OSError`` with ENOSPC/EDQUOT, or a library's
    own error wrapping one (polars raises ``ComputeError: ... No space left on device (os error 28)``)."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(exc).lower() for text in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
