"""Distinct exit codes, so CI can tell a discrepancy from a broken invocation."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # nothing unexpected failed
    FAILURES = 1  # at least one failing verdict the case did not expect
    USAGE_ERROR = 2  # bad target, unknown backend, suite that does not import, ...
    INTERNAL_ERROR = 3  # a bug in difftest itself
    INTERRUPTED = 130  # stopped by SIGINT or SIGTERM; the finished cases are kept (resume with --resume)
