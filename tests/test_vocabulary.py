"""The verdict vocabulary is one table: every label, status and blame rule the code can emit is declared in it, and
the judge, triage, JUnit and the templates read it (a new label cannot be misfiled silently)."""

import ast
import re
from pathlib import Path

from difftest.judge import vocabulary

PACKAGE = Path(__file__).resolve().parent.parent / "difftest"


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _strings(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def _emitted_labels():
    """(label, where) for every label the code writes: Verdict("x", ...), Verdict(label="x"), ``.label = "x"`` (also
    in tuple assignments), and the label table of case failures."""
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Verdict":
                values = node.args[:1] + [k.value for k in node.keywords if k.arg == "label"]
                for value in values:
                    found += [(s, f"{path.name}:{node.lineno}") for s in _strings(value)]
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = []
                    if isinstance(target, ast.Attribute) and target.attr == "label":
                        pairs = [(target, node.value)]
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts))
                    for t, v in pairs:
                        if isinstance(t, ast.Attribute) and t.attr == "label":
                            found += [(s, f"{path.name}:{node.lineno}") for s in _strings(v)]
    found += [(label, "vocabulary.CASE_FAILURE_LABELS") for label in vocabulary.CASE_FAILURE_LABELS.values()]
    for entry in vocabulary.STAGE_TABLE:  # the verdicts a failure at a stage gets
        found += [
            (failure[0], f"vocabulary.STAGE_TABLE[{entry.name}]") for failure in (entry.case, entry.run) if failure
        ]
    found += [(vocabulary.CASE_FAILURE_ELSEWHERE[0], "vocabulary"), (vocabulary.RUN_FAILURE_ELSEWHERE[0], "vocabulary")]
    return found


def test_every_label_the_code_can_emit_is_in_the_table():
    emitted = _emitted_labels()
    assert len({label for label, _ in emitted}) >= 15  # the scan sees the judge's labels at all
    unknown = [(label, where) for label, where in emitted if label not in vocabulary.LABELS]
    assert not unknown, f"labels emitted but not declared in judge.vocabulary: {unknown}"


def test_every_label_in_the_table_is_emitted_styled_and_known_to_the_judge():
    from difftest.judge.classify import LABELS, passes, severity

    emitted = {label for label, _ in _emitted_labels()}
    assert set(vocabulary.LABELS) <= emitted  # no label is declared that nothing can give
    assert set(LABELS) == set(vocabulary.LABELS)
    for entry in vocabulary.LABEL_TABLE:
        assert passes(entry.name) == (entry.outcome != "fails") and severity(entry.name) == entry.severity
    css = (PACKAGE / "report" / "templates" / "base.html").read_text()
    unstyled = [name for name in vocabulary.LABELS if f".l-{name}" not in css]
    assert not unstyled, f"labels without a pill style in base.html: {unstyled}"


def test_families_partition_the_labels_and_triage_reads_them():
    from difftest.report import triage

    assert triage.DISCREPANCY == set(vocabulary.in_family("discrepancy"))
    assert triage.COULD_NOT_RUN == set(vocabulary.in_family("could_not_run"))
    assert vocabulary.WRONG_VALUES <= vocabulary.DISCREPANCY
    assert all(
        entry.family in ("agreement", "benign", "warning", "discrepancy", "could_not_run", "not_judged")
        for entry in vocabulary.LABEL_TABLE
    )


def test_every_status_the_code_sets_is_in_the_table():
    statuses = set()
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    names = target.elts if isinstance(target, ast.Tuple) else [target]
                    values = (
                        node.value.elts
                        if isinstance(node.value, ast.Tuple) and isinstance(target, ast.Tuple)
                        else [node.value]
                    )
                    for t, v in zip(names, values):
                        name = getattr(t, "id", getattr(t, "attr", None))
                        if name == "status" and path.parent.name in ("judge",):
                            statuses.update(_strings(v))
    assert {"pass", "fail", "xfail", "skipped", "not_applicable", "waived"} <= statuses
    assert statuses <= set(vocabulary.STATUSES), statuses - set(vocabulary.STATUSES)
    template = (PACKAGE / "report" / "templates" / "index.html").read_text()
    assert "vocabulary.CARD_ORDER" in template and set(vocabulary.CARD_ORDER) == set(vocabulary.STATUSES)


def test_every_blame_rule_the_code_sets_is_in_the_table():
    rules = set()
    blame = ast.parse((PACKAGE / "judge" / "blame.py").read_text())
    value_rules = [  # _value_blame and the rules it asks in turn: their returns are (who, rule, why)
        f
        for f in ast.walk(blame)
        if isinstance(f, ast.FunctionDef) and f.returns is not None and "Blamed" in ast.unparse(f.returns)
    ]
    assert len(value_rules) >= 5
    for function in value_rules:
        for node in ast.walk(function):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 3:
                rules.update(_strings(node.value.elts[1]))
    for node in ast.walk(blame):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = (
                    node.value.elts
                    if isinstance(node.value, ast.Tuple) and isinstance(target, ast.Tuple)
                    else [node.value]
                )
                for t, v in zip(names, values):
                    if getattr(t, "attr", None) == "blame_rule":
                        rules.update(_strings(v))
    assert len(rules) >= 10
    assert rules <= set(vocabulary.BLAME_RULES), rules - set(vocabulary.BLAME_RULES)


def test_blame_kinds_cover_what_the_judge_blames():
    assert vocabulary.blame_kind("torch") == "reference"
    assert vocabulary.blame_kind("ort-cpu") == "runtime"
    assert vocabulary.blame_kind("exporter:dynamo") == vocabulary.blame_kind("transform:fp16") == "graph"
    assert vocabulary.blame_kind("ort-cpu or exporter") == "ambiguous"
    assert vocabulary.blame_kind("none (undefined behaviour)") == "undefined"
    assert vocabulary.blame_kind("difftest") == vocabulary.blame_kind("case") == "setup"
    assert vocabulary.blame_kind("tf32") == "precision_mode" and vocabulary.blame_kind("ort-optimizer") == "optimizer"
    assert set(vocabulary.BLAME_KINDS) >= {
        vocabulary.blame_kind(b)
        for b in ("torch", "ort-cpu", "exporter", "tf32", "case", "none", "a or b", "ort-optimizer")
    }


def test_the_report_reads_blame_from_columns_not_from_the_evidence():
    """No regular expression over the evidence recovers who is blamed or why."""
    for path in (PACKAGE / "report").glob("*.py"):
        text = path.read_text()
        assert "Blame:" not in text, f"{path.name} parses the blame out of the evidence"
    for path in (PACKAGE / "judge").glob("*.py"):
        assert not re.search(r"evidence \+= f?\"[^\"]*Blame:", path.read_text()), path.name


def test_every_localization_status_the_code_sets_is_in_the_table():
    """The statuses localization and the worker write (``result.status = "x"``, also in tuple assignments,
    ``Localization("x", ...)`` and ``{"status": "x"}``) are the table's, and each has its meaning on the case page."""
    found = set()
    for path, tree in _sources():
        localizing = path.parent.name == "localize" or path.name == "auto_localize.py"
        if not localizing:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Localization" and node.args:
                found.update(_strings(node.args[0]))
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value == "status" and localizing:
                        found.update(_strings(value))
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = []
                    if isinstance(target, ast.Attribute) and target.attr == "status":
                        pairs = [(target, node.value)]
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts))
                    for t, v in pairs:
                        if isinstance(t, ast.Attribute) and t.attr == "status" and localizing:
                            found.update(_strings(v))
    assert {"found", "no_divergence", "not_found", "unsupported", "error"} <= found  # the scan sees them at all
    assert found <= set(vocabulary.LOCALIZATION_STATUSES), found - set(vocabulary.LOCALIZATION_STATUSES)
    from difftest.report.case_view import localization_meaning

    for status in vocabulary.LOCALIZATION_STATUSES:
        assert not localization_meaning(status).startswith("localization status")
    assert "onnx-ref" in localization_meaning("no_divergence", "onnx-ref")


def _written(*keys, calls=()):
    """(value, where) for every constant string the code writes under ``keys``: a keyword argument, a dict
    entry, an attribute assignment; and the first argument of the functions named in ``calls``."""
    found = []
    for path, tree in _sources():
        declarations = {  # a table's column declarations (``tables._CASES_COLUMNS``: name -> kind) write nothing
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "").endswith("_COLUMNS")
        }
        for node in ast.walk(tree):
            values = []
            if id(node) in declarations:
                continue
            if isinstance(node, ast.keyword) and node.arg in keys:
                values = [node.value]
            elif isinstance(node, ast.Dict):
                values = [v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value in keys]
            elif isinstance(node, ast.Assign):
                values = [node.value for t in node.targets if isinstance(t, ast.Attribute) and t.attr in keys]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in calls and node.args:
                values = [node.args[0]]
            found += [(s, path) for v in values for s in _strings(v)]
    return found


def test_every_stage_the_code_writes_is_in_the_table_and_decides_the_verdict_there():
    """A stage is written as a constant (``stage="session"``, ``row.stage = "load"``) and the judge turns a failure
    there into a verdict through the table alone (``vocabulary.case_failure`` and ``run_failure``)."""
    stages = {s for s, path in _written("stage", calls=("enter_stage",)) if path.name != "vocabulary.py"}
    assert {"build", "load", "reference", "session", "outputs", "harness"} <= stages  # the scan sees them at all
    assert all(vocabulary.is_stage(s) for s in stages), [s for s in stages if not vocabulary.is_stage(s)]
    assert vocabulary.case_failure("build")[:2] == ("export_error", "case")
    assert vocabulary.case_failure("session") == vocabulary.CASE_FAILURE_ELSEWHERE  # difftest's own failure
    assert vocabulary.run_failure("transform:fp16")[0] == "export_error"
    assert vocabulary.run_failure(None) == vocabulary.RUN_FAILURE_ELSEWHERE
    verdicts = (PACKAGE / "judge" / "verdicts.py").read_text()
    assert 'stage == "' not in verdicts, "the judge decides a verdict by a stage name instead of reading the table"


def test_every_case_and_row_status_the_run_writes_is_in_the_table():
    written = {
        s
        for s, path in _written("status")
        if path.parent.name in ("worker", "record", "nightly") or path.name in ("runner.py", "api.py")
        if path.name != "auto_localize.py"  # a localization's status (its own table)
    }
    assert {"ok", "error", "skipped"} <= written
    assert written <= set(vocabulary.CASE_STATUSES) | set(vocabulary.ROW_STATUSES), written
    assert set(vocabulary.FAILURE_KINDS.values()) <= set(vocabulary.CASE_STATUSES)
    assert set(vocabulary.CASE_FAILURE_LABELS) <= set(vocabulary.CASE_STATUSES)


def test_every_failure_kind_and_control_kind_the_code_writes_is_in_the_table():
    kinds = {s for s, path in _written(calls=("Failure",)) if path.name == "pool.py"}
    assert kinds == set(vocabulary.FAILURE_KINDS)
    controls = {s for s, path in _written("kind") if path.name in ("controls.py", "export_control.py")}
    assert controls == set(vocabulary.CONTROL_KINDS)
