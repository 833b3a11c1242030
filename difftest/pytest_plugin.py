"""difftest inside a pytest suite (registered as the ``difftest`` pytest11 entry point; it does nothing unless used).

- the ``difftest`` fixture: :func:`difftest.check` bound to the session's options, naming the case after the test;
  ``difftest(model, (x,)).raise_for_failures()`` fails the test with the classified evidence;
- ``pytest --difftest``: the ``@case`` factories of the collected files (and of ``.py`` files given on the command
  line) become tests, one per case × candidate (``models.py::resnet[ort-cpu]``), so ``pytest -k resnet`` runs the
  cases ``difftest run -k resnet`` runs; an expected failure is an xfail, a candidate that cannot run here a skip;
- ``--difftest-report DIR``: one HTML report (with JUnit and summary.json) of every check and case of the session;
- ``--difftest-backends``, ``--difftest-probes``, ``--difftest-exporter``: the session's options.

JUnit comes from pytest's own ``--junitxml``; each difftest test adds its verdict and blame as properties.
Cases run in the pytest process (no workers, no timeouts: pytest-timeout applies as to any test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

STATE = pytest.StashKey["_SessionState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("difftest", "difftest: differential tests of PyTorch models deployed through ONNX")
    group.addoption("--difftest", action="store_true", default=False,
                    help="collect @case factories as tests, one per case × candidate")
    group.addoption("--difftest-backends", metavar="SPECS", default=None,
                    help="candidates to run (default: ort-cpu,ort-cuda), e.g. 'ort-cpu,ort-cpu[opt=disable]'")
    group.addoption("--difftest-probes", metavar="NAMES", default=None, help="probes to run (default: all)")
    group.addoption("--difftest-exporter", metavar="NAME", default=None,
                    help="dynamo or torchscript for every case (default: each case's own)")
    group.addoption("--difftest-report", metavar="DIR", default=None,
                    help="write one difftest HTML report of the session's checks and cases to DIR")


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
def difftest(request: pytest.FixtureRequest) -> "Checker":
    """``difftest.check`` with the session's options; the case is named after the test."""
    return Checker(request.config.stash[STATE], request.node)


class Checker:
    """The ``difftest`` fixture: call it like :func:`difftest.check`."""

    def __init__(self, state: "_SessionState", node: pytest.Item):
        self.state, self.node = state, node

    def __call__(self, module: Any, args: Any = (), kwargs: dict[str, Any] | None = None, *,
                 name: str | None = None, backends: Any = None, probes: Any = None, exporter: str | None = None,
                 **options: Any) -> Any:
        from .api import check

        name = name or _case_name(self.node.name)
        if backends is None and probes is None and exporter is None:  # the session's settings: in its report
            result = self.state.session().check(module, args, kwargs, name=name, source=str(self.node.path),
                                                **options)
        else:
            result = check(module, args, kwargs, backends=backends, probes=probes, exporter=exporter, name=name,
                           **options)
        for outcome in result.outcomes:
            self.node.user_properties.append((f"difftest {outcome.candidate}", f"{outcome.label} ({outcome.status})"))
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
        for definition in definitions:
            ref = CaseRef(str(self.path), definition.name)
            for candidate in state.candidates():
                yield DifftestItem.from_parent(self, name=f"{definition.name}[{candidate}]", definition=definition,
                                               ref=ref, candidate=candidate)


class DifftestItem(pytest.Item):
    def __init__(self, *, definition: Any, ref: Any, candidate: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.definition, self.ref, self.candidate = definition, ref, candidate
        self.extra_keyword_matches.update(definition.tags)  # -k matches a case's tags too

    def runtest(self) -> None:
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

            rows = [c for c in result.verdicts.to_dicts() if c["candidate"] == self.candidate]
            raise DifftestFailure("\n".join([f"{self.ref.id} [{self.candidate}]: {outcome.reason}",
                                             *candidate_evidence(outcome, rows, len(self.candidate))]))

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
        self._results: dict[str, Any] = {}
        self.report_line: str | None = None

    def candidates(self) -> list[str]:
        from .api import DEFAULT_CANDIDATES
        from .backends.candidates import parse_list

        specs = self.config.getoption("difftest_backends")
        return [c.name for c in parse_list(specs)] if specs else list(DEFAULT_CANDIDATES)

    def session(self) -> Any:
        if self._session is None:
            from .api import Session

            report = self.config.getoption("difftest_report")
            self._session = Session(report, backends=self.candidates(),
                                    probes=self.config.getoption("difftest_probes"),
                                    exporter=self.config.getoption("difftest_exporter"))
        return self._session

    def case_result(self, definition: Any, ref: Any) -> Any:
        """A collected case runs once, for all its candidates' tests."""
        if ref.id not in self._results:
            self._results[ref.id] = self.session().run_definition(definition, ref)
        return self._results[ref.id]

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
