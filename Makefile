# difftest: `make suite` runs the zoo, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUITE ?= suites/
SUITE_ARGS ?=
# gpu-check uses the Python it is given (a GPU machine may have no network to build a venv with).
GPU_PYTHON ?= python3

.PHONY: suite test lint format setup bench bench-classify bench-mutants bench-report clean-reports gpu-check

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[cpu,openvino,transforms,dev,hf]'
	touch $(STAMP)

setup: $(STAMP)

suite: $(STAMP)
	$(BIN)/difftest run $(SUITE) $(SUITE_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff, configured in pyproject.toml: `make lint` checks (CI runs it before the tests), `make format` applies.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/speed.py
	$(BIN)/python bench/compare_speed.py

bench-report: $(STAMP)
	$(BIN)/python bench/report_bench.py reports/latest --cases 500

bench-classify: $(STAMP)
	$(BIN)/python bench/classify_bench.py

# Mutation benchmark (issue 21): faults injected into the exported graphs of the zoo and corpora; kill rate per
# operator. MUTANTS_ARGS="--all" runs every applicable mutant (long), "--operators a,b --cases ops::" a subset,
# "--candidate openvino" holds another runtime to the same mutants (ort-cpu by default).
MUTANTS_ARGS ?=
bench-mutants: $(STAMP)
	$(BIN)/python bench/mutants.py $(MUTANTS_ARGS)

gpu-check:
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(GPU_PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

clean-reports:
	rm -rf reports/2* reports/latest
