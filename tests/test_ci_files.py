"""The files CI reads: GitHub workflows (schema-checked), JUnit (schema-checked), summary.json, .ci/run."""

import json
import subprocess
import sys
from pathlib import Path

import xmlschema
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_workflows_match_githubs_schema():
    check = Path(sys.executable).with_name("check-jsonschema")
    out = subprocess.run(
        [str(check), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert {w.name for w in WORKFLOWS} == {"ci.yml", "nightly-gpu.yml"}


def test_nightly_workflow_does_what_the_job_needs():
    nightly = YAML(typ="safe").load(ROOT / ".github" / "workflows" / "nightly-gpu.yml")
    triggers = nightly["on"]
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    shard = nightly["jobs"]["shard"]
    assert "self-hosted" in shard["runs-on"] and "gpu" in shard["runs-on"]
    steps = "\n".join(step.get("run", "") for job in nightly["jobs"].values() for step in job["steps"])
    assert "pip install onnxruntime-gpu" in steps
    assert "pip install onnxruntime\n" not in steps and "[cpu" not in steps  # never the CPU package beside it
    assert "--shard" in steps and "difftest merge" in steps and "--baseline" in steps
    uses = [step.get("uses", "") for job in nightly["jobs"].values() for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
    assert any("junit" in u for u in uses)


def test_junit_matches_the_schema(tiny_run):
    _, out = tiny_run
    schema = xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd"))
    schema.validate(str(out / "junit.xml"))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["labels"]) <= {"exact", "numeric", "mismatch", "export_error", "runtime_error", "skipped"}
    assert summary["exit_code"] == 1 and summary["cases"] == 8


def test_ci_script_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make test" in script
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "suite"], ["make", "test"]]


def test_nightly_pins_a_working_cuda_pair_and_requires_the_gpu_candidates():
    nightly = YAML(typ="safe").load(ROOT / ".github" / "workflows" / "nightly-gpu.yml")
    steps = "\n".join(step.get("run", "") for job in nightly["jobs"].values() for step in job["steps"])
    assert "constraints-gpu.txt" in steps and "cu130" in nightly["env"]["TORCH_INDEX"]
    assert '--require "$REQUIRE"' in steps and nightly["env"]["REQUIRE"] == "ort-cuda,torch-cuda"
    assert "CUDAExecutionProvider" in steps  # the provider is checked to load before the run
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints-gpu.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == "2.11.0" and pins["onnxruntime-gpu"] == "1.31.1"
