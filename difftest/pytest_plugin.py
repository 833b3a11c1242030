"""difftest inside a pytest suite (registered as the ``difftest`` pytest11 entry point; it does nothing unless used).

- the ``difftest`` fixture: :func:`difftest.check` bound to the session's options, naming the case after the test;
  ``difftest(model, (x,)).raise_for_failures()`` fails the test with the classified evidence;
- ``pytest --difftest``: the ``@case`` factories of the collected files (and of ``.py`` files given on the command
  line) become tests, one per case × candidate (``models.py::resnet[ort-cpu]``), so ``pytest -k resnet`` runs the
  cases ``difftest run -k resnet`` runs; an expected failure is an xfail, a candidate that cannot run here a skip;
- ``--difftest-report DIR``: one HTML report (with JUnit and summary.json) of every check and case of the session;
- ``--difftest-backends``, ``--difftest-probes``, ``--difftest-exporter``: the session's options.

JUnit comes from pytest's own ``--junitxml``; each difftest test adds its verdict and blame as properties.
Each case (a fixture call, a collected ``@case``, whose factory runs there too) runs in a child forked from the
pytest process, as :func:`difftest.check` does, so nothing one case does reaches another test; each starts from the
process state as it was when the session's first difftest test began. ``--difftest-in-process`` runs them in the
pytest process instead (for a debugger), putting back the process state each changes. No timeouts: pytest-timeout
applies as to any test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

STATE = pytest.StashKey["_SessionState"]()
# backends.DEFAULT_CHECK_CANDIDATES, spelled for the option's help without importing the backends into every pytest
# session the plugin is installed in (tests/test_pytest_plugin.py holds the two together).
CHECK_CANDIDATES_TEXT = "ort-cpu,ort-cuda"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("difftest", "difftest: differential tests of PyTorch models deployed through ONNX")
    group.addoption(
        "--difftest",
        action="store_true",
        default=False,
        help="collect @case factories as tests, one per case × candidate",
    )
    group.addoption(
        "--difftest-backends",
        metavar="SPECS",
        default=None,
        help=f"candidates to run (default: {CHECK_CANDIDATES_TEXT}), e.g. 'ort-cpu,ort-cpu[opt=disable]'",
    )
    group.addoption("--difftest-probes", metavar="NAMES", default=None, help="probes to run (default: all)")
    group.addoption(
        "--difftest-exporter",
        metavar="NAME",
        default=None,
        help="dynamo or torchscript for every case (default: each case's own)",
    )
    group.addoption(
        "--difftest-report",
        metavar="DIR",
        default=None,
        help="write one difftest HTML report of the session's checks and cases to DIR",
    )
    group.addoption(
        "--difftest-in-process",
        action="store_true",
        default=False,
        help="run each case in the pytest process (for debugging) instead of a forked child of it",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE] = _SessionState(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not parent.config.getoption("difftest") or file_path.suffix != ".py":
        return None
    try:
        text = file_path.read_text(errors="replace")
    except OSError:
        return None
    if "difftest" not in text or "case" not in text:  # cheap: only files that can declare cases are imported
        return None
    return DifftestFile.from_parent(parent, path=file_path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is not None:
        state.finish()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.report_line:
        terminalreporter.write_line(state.report_line)


@pytest.fixture
def difftest(request: pytest.FixtureRequest) -> Any:
    """``difftest.check`` with the session's options; the case is named after the test. A result the test never
    looked at (``raise_for_failures()``, ``passed``, ``failures``, ``verdicts``) is a warning at teardown."""
    from .api import process_baseline

    process_baseline()  # before the first difftest test's body: what every case starts from
    checker = Checker(request.config.stash[STATE], request.node)
    yield checker
    for result in checker.results:
        if not result.checked:
            verdict = "it FAILED" if not all(o.status in PASSING for o in result.outcomes) else "it passed"
            request.node.warn(
                pytest.PytestWarning(
                    f"difftest: the result of {result.title} was never checked ({verdict}); call "
                    ".raise_for_failures() on it, or assert on .passed"
                )
            )


PASSING = ("pass", "xfail", "waived", "skipped", "not_applicable")


class Checker:
    """The ``difftest`` fixture: call it like :func:`difftest.check`. Every call is a case of the session's run
    (its ``--difftest-report``), whatever ``backends``, ``probes`` or ``exporter`` it gives."""

    def __init__(self, state: "_SessionState", node: pytest.Item):
        self.state, self.node = state, node
        self.results: list[Any] = []

    def __call__(
        self,
        module: Any,
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        backends: Any = None,
        probes: Any = None,
        exporter: str | None = None,
        **options: Any,
    ) -> Any:
        __tracebackhide__ = True
        name = name or _case_name(self.node.name)
        if probes is not None:  # the case's own options: the session's run holds every call
            options["probes"] = [p.strip() for p in probes.split(",")] if isinstance(probes, str) else list(probes)
        if exporter is not None:
            options["exporter"] = exporter
        try:
            result = self.state.session().check(
                module, args, kwargs, name=name, source=str(self.node.path), backends=backends, **options
            )
        except TypeError as exc:  # the caller's own mistake (an unknown option): said without our frames
            raise TypeError(str(exc)) from None
        result.more_hint = self.state.more_hint()
        result.report_hint = self.state.report_hint()
        self.results.append(result)
        for outcome in result.outcomes:
            self.node.user_properties.append((f"difftest {outcome.candidate}", f"{outcome.label} ({outcome.status})"))
        if result.outcomes and not result.compared:
            result.checked = True
            pytest.skip(f"difftest: nothing was compared: {result.skip_reason}")
        return result

    check = __call__


class DifftestFailure(Exception):
    """A case × candidate that failed unexpectedly; its message is the classified evidence."""


class DifftestFile(pytest.File):
    def collect(self):
        from .errors import UsageError
        from .suite.cases import CaseRef
        from .suite.discover import load_suite

        try:
            definitions = load_suite(self.path)
        except UsageError as exc:  # SuiteLoadError: the file, the line and what to do, without our frames
            raise self.CollectError(str(exc)) from None
        state = self.config.stash[STATE]
        other = state.suites.setdefault(self.path.stem, self.path)
        if other != self.path:  # as `difftest run` refuses it: case ids are '<file name>::<case>'
            raise self.CollectError(
                f"two suite files share the name {self.path.stem!r}: {other} and {self.path}. Case ids are "
                "'<file name>::<case>', so their cases (and results) would collide; rename one of the files or run "
                "them in separate pytest sessions"
            )
        for definition in definitions:
            ref = CaseRef(str(self.path), definition.name)
            for candidate in state.candidates():
                yield DifftestItem.from_parent(
                    self, name=f"{definition.name}[{candidate}]", definition=definition, ref=ref, candidate=candidate
                )


class DifftestItem(pytest.Item):
    def __init__(self, *, definition: Any, ref: Any, candidate: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.definition, self.ref, self.candidate = definition, ref, candidate
        self.extra_keyword_matches.update(definition.tags)  # -k matches a case's tags too

    def runtest(self) -> None:
        __tracebackhide__ = True
        result = self.config.stash[STATE].case_result(self.definition, self.ref)
        outcome = next(o for o in result.outcomes if o.candidate == self.candidate)
        self.user_properties.extend([("verdict", outcome.label), ("status", outcome.status)])
        if outcome.blame:
            self.user_properties.append(("blame", outcome.blame))
        if outcome.status in ("skipped", "not_applicable"):
            pytest.skip(f"{self.candidate}: {outcome.evidence}")
        if outcome.status == "xfail":
            pytest.xfail(f"{outcome.label}, as the case expects ({outcome.scope or outcome.reason})")
        if outcome.status == "fail":
            from .api import candidate_evidence

            state = self.config.stash[STATE]
            rows = [c for c in result.verdicts.to_dicts() if c["candidate"] == self.candidate]
            raise DifftestFailure(
                "\n".join(
                    [
                        f"{self.ref.id} [{self.candidate}]: {outcome.reason}",
                        *candidate_evidence(outcome, rows, len(self.candidate), state.more_hint()),
                        state.report_hint(),
                    ]
                )
            )

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, DifftestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"difftest {self.ref.id} [{self.candidate}]"


class _SessionState:
    """One difftest session per pytest session, made when first needed (a run without difftest tests makes none)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self._session: Any = None
        self._results: dict[tuple[str, str], Any] = {}  # (suite file, case name): a case runs once
        self.suites: dict[str, Path] = {}  # file stem -> the suite file collected under it
        self.report_line: str | None = None

    def candidates(self) -> list[str]:
        from .backends import DEFAULT_CHECK_CANDIDATES
        from .backends.candidates import parse_list

        specs = self.config.getoption("difftest_backends")
        return [c.name for c in parse_list(specs)] if specs else list(DEFAULT_CHECK_CANDIDATES)

    def more_hint(self) -> str:
        report = self.config.getoption("difftest_report")
        return f"the session's report in {report} has them all" if report else "--difftest-report DIR writes them all"

    def report_hint(self) -> str:
        report = self.config.getoption("difftest_report")
        if report:
            return f"the full evidence: {Path(report) / 'index.html'} (written at the end of the session)"
        return "the full evidence: run pytest with --difftest-report DIR for the HTML report of every check"

    def session(self) -> Any:
        if self._session is None:
            from .api import Session

            report = self.config.getoption("difftest_report")
            self._session = Session(
                report,
                backends=self.candidates(),
                probes=self.config.getoption("difftest_probes"),
                exporter=self.config.getoption("difftest_exporter"),
                isolate="none" if self.config.getoption("difftest_in_process") else "case",
            )
        return self._session

    def case_result(self, definition: Any, ref: Any) -> Any:
        """A collected case runs once, for all its candidates' tests."""
        key = (str(ref.path), ref.name)
        if key not in self._results:
            self._results[key] = self.session().run_definition(definition, ref)
        return self._results[key]

    def finish(self) -> None:
        if self._session is None:
            return
        try:
            if self.config.getoption("difftest_report"):
                run = self._session.finish()
                self.report_line = f"difftest report: {run.run_dir / 'index.html'}"
        finally:
            self._session.cleanup()


def _case_name(test_name: str) -> str:
    """A test's name as a case name: ``test_resnet[cpu]`` -> ``test_resnet-cpu``."""
    return test_name.replace("[", "-").replace("]", "").replace("::", "-")
