from types import SimpleNamespace

import numpy as np

from difftest.judge.expectations import outcomes
from difftest.judge.verdicts import RunContext, judge_case
from difftest.record.tables import tensor_row

TASK = SimpleNamespace(run_id="r", ref=SimpleNamespace(id="s::c"))


def case_row(**extra):
    row = {"case": "s::c", "status": "ok", "stage": None, "message": None, "tolerances": {}, "expect": None}
    row.update(extra)
    return row


def ok(backend, values, probe="base", output="output"):
    return tensor_row(TASK, backend, probe, output=output, index=0, array=np.asarray(values, dtype=np.float32))


def judge(tensors, case=None, candidates=("ort-cpu",), skipped=None, oracle=None):
    context = RunContext("r", "torch", list(candidates), skipped or {}, oracle)
    return judge_case(case or case_row(), tensors, context)


def test_pairs_each_output_with_the_reference():
    rows = judge([ok("torch", [1, 2]), ok("ort-cpu", [1, 2])])
    assert [(r["probe"], r["output"], r["label"], r["passed"]) for r in rows] == [("base", "output", "exact", True)]


def test_export_failure_is_export_error_blamed_on_exporter():
    failed = tensor_row(TASK, "ort-cpu", "*", status="error", stage="export", message="TorchExportError: nope")
    (row,) = judge([ok("torch", [1]), failed])
    assert row["label"] == "export_error" and row["blame"] == "exporter" and "nope" in row["evidence"]


def test_session_failure_is_runtime_error_blamed_on_candidate():
    failed = tensor_row(TASK, "ort-cpu", "*", status="error", stage="session", message="bad node")
    (row,) = judge([ok("torch", [1]), failed])
    assert row["label"] == "runtime_error" and row["blame"] == "ort-cpu"


def test_skipped_backend_records_reason():
    (row,) = judge([ok("torch", [1])], candidates=["ort-cuda"], skipped={"ort-cuda": "no CUDA provider"})
    assert row["label"] == "skipped" and row["evidence"] == "no CUDA provider" and row["passed"]


def test_reference_failure_blames_the_reference():
    failed = tensor_row(TASK, "torch", "base", status="error", stage="run", message="boom")
    (row,) = judge([failed, ok("ort-cpu", [1])])
    assert row["label"] == "runtime_error" and row["blame"] == "torch"


def test_crashed_case_gives_every_candidate_a_crash():
    rows = judge([], case=case_row(status="crash", stage="export", message="SIGSEGV"), candidates=["a", "b"])
    assert [r["label"] for r in rows] == ["crash", "crash"]


def test_per_output_tolerance_is_used():
    tolerances = {"rtol": None, "atol": None, "per_output": {"output": [0.1, 0.1]}}
    (row,) = judge([ok("torch", [1.0]), ok("ort-cpu", [1.05])], case=case_row(tolerances=tolerances))
    assert row["label"] == "numeric" and row["atol"] == 0.1


def comparison(label, candidate="ort-cpu", probe="base"):
    from difftest.judge.classify import passes

    return {
        "case": "s::c",
        "candidate": candidate,
        "label": label,
        "passed": passes(label),
        "evidence": "e",
        "probe": probe,
    }


def test_outcome_statuses_follow_expectations():
    def status(expect, labels):
        cases = [{"case": "s::c", "expect": expect}]
        (o,) = outcomes(cases, [comparison(label) for label in labels])
        return o.status, o.label

    assert status(None, ["exact", "numeric"]) == ("pass", "numeric")
    assert status(None, ["exact", "mismatch"]) == ("fail", "mismatch")
    assert status("mismatch", ["mismatch"]) == ("xfail", "mismatch")
    assert status("mismatch", ["exact"]) == ("fail", "exact")  # strict: expected failure did not happen
    assert status({"ort-cpu": ["exact", "tie_break"]}, ["tie_break"]) == ("pass", "tie_break")
    assert status({"ort-cuda": "mismatch"}, ["mismatch"]) == ("fail", "mismatch")
    assert status({"*": "layout"}, ["layout"]) == ("xfail", "layout")
    assert status("mismatch", ["skipped"]) == ("skipped", "skipped")


def _inputs(probe, **arrays):
    return [
        tensor_row(TASK, "input", probe, output=name, index=i, array=np.asarray(a, dtype=np.float32))
        for i, (name, a) in enumerate(arrays.items())
    ]


def test_frozen_input_when_graph_dropped_a_changed_input():
    tensors = [
        ok("torch", [1, 2]),
        ok("ort-cpu", [1, 2]),
        ok("torch", [5, 6], probe="alt"),
        ok("ort-cpu", [3, 4], probe="alt"),
        *_inputs("base", x=[1, 2], mask=[1, 1]),
        *_inputs("alt", x=[3, 4], mask=[0, 1]),
    ]
    rows = {r["probe"]: r for r in judge(tensors, case=case_row(dropped_inputs=["mask"]))}
    assert rows["base"]["label"] == "exact"
    assert rows["alt"]["label"] == "frozen_input" and "dropped input(s) mask" in rows["alt"]["evidence"]
    assert rows["alt"]["blame"] == "exporter"


def test_alt_mismatch_without_frozen_evidence_stays_mismatch():
    tensors = [
        ok("torch", [1, 2]),
        ok("ort-cpu", [1, 2]),
        ok("torch", [5, 6], probe="alt"),
        ok("ort-cpu", [3, 4], probe="alt"),
        *_inputs("base", x=[1, 2]),
        *_inputs("alt", x=[3, 4]),
    ]
    rows = {r["probe"]: r for r in judge(tensors)}
    assert rows["alt"]["label"] == "mismatch"


def test_shape_specialized_when_only_the_other_shape_fails():
    failed = tensor_row(TASK, "ort-cpu", "shape", status="error", stage="run", message="Got invalid dimensions")
    tensors = [
        ok("torch", [1, 2]),
        ok("ort-cpu", [1, 2]),
        ok("torch", [1, 2, 3], probe="shape"),
        failed,
        *_inputs("base", x=[1, 2]),
        *_inputs("shape", x=[1, 2, 3]),
    ]
    rows = {r["probe"]: r for r in judge(tensors)}
    assert rows["shape"]["label"] == "shape_specialized"
    assert "x[3]" in rows["shape"]["evidence"] and "Got invalid dimensions" in rows["shape"]["evidence"]


def index(backend, values, probe):
    return tensor_row(TASK, backend, probe, output="output", index=0, array=np.asarray(values, dtype=np.int64))


def test_ties_probe_mismatch_confirmed_by_ramp_is_tie_break():
    tensors = [
        index("torch", [1], "base"),
        index("ort-cpu", [1], "base"),
        index("torch", [0], "ties"),
        index("ort-cpu", [2], "ties"),
        index("torch", [1], "ramp"),
        index("ort-cpu", [1], "ramp"),
    ]
    # Eager's own evidence says the output was gathered by one of its top-k indices.
    eager = tensor_row(
        TASK,
        "eager-ranked",
        "ties",
        output="output",
        array=np.zeros(0, np.float32),
        about={"kind": "gathered", "op": "TopK", "by": "index.Tensor"},
    )
    rows = {r["probe"]: r for r in judge(tensors + [eager])}
    assert rows["ties"]["label"] == "tie_break" and "tie-free ramp" in rows["ties"]["evidence"]
    # Without eager saying so, an integer that differs only on tie-rich inputs is just wrong (a count, a class),
    # in a run that gathered eager's evidence (every such run reruns eager with another seed)...
    reseeded = [index("reseeded", values, probe) for values, probe in (([1], "base"), ([0], "ties"), ([1], "ramp"))]
    rows = {r["probe"]: r for r in judge(tensors + reseeded)}
    assert rows["ties"]["label"] == "mismatch"
    # ...while a run recorded before that evidence existed re-judges as it was judged then, and says so.
    rows = {r["probe"]: r for r in judge(tensors)}
    assert rows["ties"]["label"] == "tie_break" and "predates eager's index evidence" in rows["ties"]["evidence"]


def test_float_output_wrong_on_ties_only_is_not_a_tie():
    tensors = [
        ok("torch", [1.0]),
        ok("ort-cpu", [1.0]),
        ok("torch", [100.0], probe="ties"),
        ok("ort-cpu", [99.99], probe="ties"),
        ok("torch", [1.0], probe="ramp"),
        ok("ort-cpu", [1.0], probe="ramp"),
    ]
    rows = {r["probe"]: r for r in judge(tensors)}
    assert rows["ties"]["label"] == "mismatch"


def test_blame_exporter_when_two_runtimes_agree_with_each_other():
    tensors = [ok("torch", [1.0, 2.0]), ok("ort-cpu", [1.5, 2.0]), ok("ort-cuda", [1.5, 2.0])]
    rows = {r["candidate"]: r for r in judge(tensors, candidates=["ort-cpu", "ort-cuda"])}
    assert rows["ort-cpu"]["blame"] == rows["ort-cuda"]["blame"] == "exporter"


def test_blame_the_provider_that_alone_disagrees():
    tensors = [ok("torch", [1.0, 2.0]), ok("ort-cpu", [1.0, 2.0]), ok("ort-cuda", [1.5, 2.0])]
    rows = {r["candidate"]: r for r in judge(tensors, candidates=["ort-cpu", "ort-cuda"])}
    assert rows["ort-cuda"]["blame"] == "ort-cuda"
    assert "ort-cpu ran the same ONNX graph" in rows["ort-cuda"]["blame_reason"]


def test_blame_eager_when_it_is_farther_from_the_oracle():
    oracle = tensor_row(TASK, "torch-fp64", "base", output="output", index=0, array=np.array([1.0, 2.0]))
    tensors = [ok("torch", [1.5, 2.0]), ok("ort-cpu", [1.0, 2.0]), oracle]
    (row,) = judge(tensors, oracle="torch-fp64")
    assert row["label"] == "mismatch" and row["blame"] == "torch"


def test_generated_probe_the_reference_rejects_is_not_judged(tmp_path, data_dir):
    import polars as pl

    from difftest.cli import main

    out = tmp_path / "run"
    assert (
        main(["run", str(data_dir / "probe_contract_suite.py"), "--backends", "torch,ort-cpu", "--out", str(out)]) == 0
    )
    rows = pl.read_parquet(out / "comparisons.parquet").to_dicts()
    shape = [r for r in rows if r["case"].endswith("declared_dynamic_but_fixed") and r["probe"] == "shape"]
    assert shape and all(r["label"] == "invalid_probe" for r in shape)
    assert "not dynamic in the model" in shape[0]["evidence"] and "expects 12 frames" in shape[0]["evidence"]
    alt = [r for r in rows if r["case"].endswith("needs_positive_scale") and r["probe"] == "alt"]
    assert alt and alt[0]["label"] == "invalid_probe" and "scale must be positive" in alt[0]["evidence"]
    page = (out / "cases").glob("probe_contract_suite__declared_dynamic_but_fixed-*.html")
    assert "Probes not judged" in next(page).read_text()


def test_outputs_stored_under_one_name_are_results_lost():
    """Two reference outputs under one name (dict keys that sanitized alike, in a run from before names were made
    unique): one of them was never judged, so the candidate cannot pass on what remained."""
    tensors = [
        ok("torch", [1, 2], output="output_a_b"),
        ok("torch", [5, 6], output="output_a_b"),
        ok("ort-cpu", [1, 2], output="output_a_b"),
        ok("ort-cpu", [5, 6], output="output_a_b"),
    ]
    rows = judge(tensors, case=case_row(outputs=["output_a_b", "output_a_b"]))
    (row,) = rows
    assert row["label"] == "crash" and not row["passed"] and row["stage"] == "judge"
    assert row["evidence"].startswith("results lost") and "output_a_b" in row["evidence"]


def test_a_probe_the_candidate_never_recorded_is_results_lost():
    tensors = [ok("torch", [1, 2]), ok("torch", [3, 4], probe="alt"), ok("ort-cpu", [1, 2])]
    rows = {r["probe"]: r for r in judge(tensors)}
    assert rows["base"]["label"] == "exact"
    assert rows["alt"]["label"] == "crash" and "results lost" in rows["alt"]["evidence"]


def test_every_output_judged_once_is_not_results_lost():
    tensors = [
        ok("torch", [1, 2], output="a"),
        ok("torch", [3], output="b"),
        ok("ort-cpu", [1, 2], output="a"),
        ok("ort-cpu", [3], output="b"),
    ]
    assert [r["label"] for r in judge(tensors, case=case_row(outputs=["a", "b"]))] == ["exact", "exact"]


def _draws(seed, n=400, shift=0.0):
    return (np.random.default_rng(seed).random(n) + shift).astype(np.float32)


def test_an_output_eager_changes_under_another_seed_is_judged_by_distribution():
    tensors = [ok("torch", _draws(0)), ok("reseeded", _draws(1)), ok("ort-cpu", _draws(2))]
    (row,) = judge(tensors)
    assert row["label"] == "nondeterministic" and row["passed"], row["evidence"]
    assert "another seed" in row["evidence"] and "mean" in row["evidence"] and "std" in row["evidence"]


def test_a_sampled_output_from_another_distribution_is_a_mismatch():
    tensors = [ok("torch", _draws(0)), ok("reseeded", _draws(1)), ok("ort-cpu", _draws(2) * 1.5)]
    (row,) = judge(tensors)
    assert row["label"] == "mismatch" and "not one of the same distribution" in row["evidence"]
    assert "std" in row["evidence"].split("not one of the same distribution")[1].split("(agreeing")[0]


def test_the_candidates_own_spread_is_not_evidence_of_randomness():
    """Eager gives the same output under another seed: a candidate that varies from run to run is not excused
    by the distribution rule (its own reruns are what is under test)."""
    same = _draws(0)
    tensors = [ok("torch", same), ok("reseeded", same), ok("ort-cpu", _draws(2))]
    rerun = ok("ort-cpu", _draws(3))
    rerun["rerun"] = 1
    (row,) = judge(tensors + [rerun])
    assert "The model samples" not in row["evidence"]


def test_a_sampled_output_whose_full_shape_differs_is_a_shape_verdict():
    """An output too large to store whole, whose full tensor has another shape than the reference's: the worker's
    full comparison stops at the shapes (no element counts), and the verdict says so instead of failing."""
    from difftest.judge.classify import Verdict
    from difftest.judge.verdicts import judge_sampled

    ref_row = {"digest": "a", "dtype": "float32", "shape": [4, 1024], "data": b"\0" * 64, "sampled": True}
    cand_row = {
        "digest": "b",
        "dtype": "float32",
        "shape": [4, 1000],
        "data": b"\0" * 64,
        "sampled": True,
        "full": {"against": "reference", "count": 4000, "rtol": 1e-5, "atol": 1e-5, "identical": False,
                 "shape": [4, 1024]},
    }  # fmt: skip
    verdict = judge_sampled(Verdict("numeric", "on the sample"), ref_row, cand_row)
    assert verdict.label == "shape" and not verdict.passed
    assert "[4, 1024]" in verdict.evidence and "[4, 1000]" in verdict.evidence
