"""Mutation benchmark: inject faults into exported graphs and count how many difftest catches.

    python bench/mutants.py [--targets FILE ...] [--operators a,b] [--per-operator N | --all] [--cases SUBSTR]
                            [--out DIR] [--control DIR] [--with-hf] [--jobs N]
    make bench-mutants

Issue 21: a benign rule (noise, ties, nondeterminism, dtype, precision) must never be bought by the fault it
excuses. This benchmark applies mutation operators to the exported ONNX graphs of the zoo (suites/*.py) and of
the labelled corpora (bench/public_corpus.py, bench/classify_corpus.py) and runs every mutant through the real
pipeline, end to end: the mutant is a ``Case`` whose ``onnx_transform`` is the case's own transform (if any)
followed by the mutation, with ``expect=None``, declared in a generated suite file and run by ``difftest.run``
with ``torch,ort-cpu`` (worker export, probes, reruns, oracle, graph evidence, judge).

Phases:

1. control: the target cases, unmutated, through ``difftest.run`` (export cache used). A case is a target only
   when its unmutated candidate passes (a case that already fails, or is an expected failure, proves nothing),
   it has a PyTorch reference and a float64 oracle (``onnx_backend``'s recorded tests are left out) and its
   graph samples no random values.
2. plan: each operator is applied to each target's exported graph (read from the control run); an operator
   returns None when the graph has nothing it can mutate. By default at most ``--per-operator`` applicable
   mutants per operator are drawn (deterministically, spread over the suites); ``--all`` takes every one.
3. mutants: one run of the generated suite. The mutation transform saves the graph it was given (the
   unmutated export) beside the run, so phase 4 knows exactly what was mutated.
4. analysis, per mutant and probe, from the run's tables: the unmutated graph is run on the candidate's runtime
   (ORT CPU by default; ``--candidate``) on the probe inputs the mutant run recorded. A mutant is **must-kill**
   when on some probe an output differs from the unmutated graph's by more than the reference's own float64 error
   (max |eager - torch-fp64| on that probe and output, floored at 2 ulps of the output's scale); integers (and
   booleans) are must-kill where they differ at a position where eager equals the oracle. Otherwise it is
   **equivalent** and not counted. A mutant whose mutated graph cannot run (the runtime refuses it, the export
   fails) is **invalid** and not counted either.
   A must-kill mutant is **killed** when its candidate's outcome fails (not pass/xfail/waived/skipped).

Output: a table per operator (applicable, invalid, equivalent, must-kill, killed, kill rate), the total, every
surviving must-kill mutant with its label, ``accepted_by`` (the comparisons column naming the benign rule that
passed it) and the first line of the evidence; ``reports/mutants.json`` holds it all.

Localization and blame controls are off in both runs (``--localize-budget 0 --control-budget 0``): they decide
blame, never the verdict; ``--controls`` turns them on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

DEFAULT_TARGETS = [
    "suites/basics.py",
    "suites/models.py",
    "suites/ops.py",
    "suites/pitfalls.py",
    "bench/public_corpus.py",
    "bench/classify_corpus.py",
]
HF_TARGET = "suites/hf_transformers.py"
CANDIDATE = "ort-cpu"  # --candidate changes it for the whole run
NOT_KILLED = ("pass", "xfail", "waived", "skipped", "not_applicable")


# --------------------------------------------------------------------------------------------------------------
# Mutation operators: onnx.ModelProto -> onnx.ModelProto, or None when the graph has nothing to mutate.
# Each is deterministic (the same graph gives the same mutant), so the worker's fresh export mutates the same
# place the planner saw in the control run's export.
# --------------------------------------------------------------------------------------------------------------

FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
INT_TYPES = (2, 3, 4, 5, 6, 7, 12, 13)  # UINT8, INT8, UINT16, INT16, INT32, INT64, UINT32, UINT64


# (op, input index) pairs whose float input is a parameter of the op (resize scales, roi), not a weight
_PARAMETER_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def _parameters(model: Any) -> set[str]:
    """Names of values (and the Identity/Cast chains behind them) read as op parameters, not as data."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found = set()
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if (node.op_type, index) in _PARAMETER_INPUTS and name:
                while name and name not in found:
                    found.add(name)
                    producer = producers.get(name)
                    name = (
                        producer.input[0]
                        if producer is not None and producer.op_type in ("Identity", "Cast") and producer.input
                        else ""
                    )
    return found


def _float_constants(model: Any) -> list[tuple[str, Any]]:
    """(kind, proto) for every float initializer and Constant value with at least two elements that is a weight
    (not a Resize's scales or roi)."""
    import numpy as np

    skip = _parameters(model)
    found = []
    for init in model.graph.initializer:
        if init.data_type in FLOAT_TYPES and int(np.prod(init.dims)) >= 2 and init.name not in skip:
            found.append(("init", init))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] not in skip:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in FLOAT_TYPES and int(np.prod(attr.t.dims)) >= 2:
                    found.append(("const", attr.t))
    return found


def _replace_tensor(proto: Any, value: Any) -> None:
    from onnx import numpy_helper

    proto.CopyFrom(numpy_helper.from_array(value, proto.name))


def _scale_weights(factor: float) -> Callable[[Any], Any]:
    def mutate(model: Any) -> Any:
        import numpy as np
        from onnx import numpy_helper

        constants = _float_constants(model)
        if not constants:
            return None
        for _, proto in constants:
            array = numpy_helper.to_array(proto)
            _replace_tensor(proto, (array.astype(np.float64) * factor).astype(array.dtype))
        return model

    return mutate


def one_weight(model: Any) -> Any:
    """The middle element of the largest finite float constant moved by the constant's largest magnitude."""
    import numpy as np
    from onnx import numpy_helper

    best = None
    for _, proto in _float_constants(model):
        array = numpy_helper.to_array(proto)
        if np.isfinite(array.astype(np.float64)).all() and (best is None or array.size > best[1].size):
            best = (proto, array)
    if best is None:
        return None
    proto, array = best
    flat = array.astype(np.float64).reshape(-1).copy()
    k = flat.size // 2
    flat[k] += float(np.abs(flat).max()) or 1.0
    _replace_tensor(proto, flat.reshape(array.shape).astype(array.dtype))
    return model


def _insert_before(model: Any, target: Any, node: Any) -> None:
    nodes = list(model.graph.node)
    index = next(i for i, n in enumerate(nodes) if n is target)
    model.graph.node.insert(index, node)


def relu_before_rank(model: Any) -> Any:
    """A Relu on the values the first ArgMax/ArgMin/TopK ranks: a fault upstream that creates ties."""
    from onnx import helper

    types = _types(model)
    for node in model.graph.node:
        if node.op_type in ("ArgMax", "ArgMin", "TopK") and types.get(node.input[0]) in FLOAT_TYPES:
            inner = node.input[0]
            outer = f"{inner}_mutant_relu"
            _insert_before(model, node, helper.make_node("Relu", [inner], [outer], name="mutant_relu"))
            node.input[0] = outer
            return model
    return None


def topk_sorted_flip(model: Any) -> Any:
    from difftest.suite.graph_edit import set_attribute

    nodes = [n for n in model.graph.node if n.op_type == "TopK"]
    if not nodes:
        return None
    for node in nodes:
        current = next((a.i for a in node.attribute if a.name == "sorted"), 1)
        set_attribute(node, "sorted", 0 if current else 1)
    return model


def _inferred(model: Any) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - a graph shape inference cannot read just has no known shapes
        return model


def _types(model: Any) -> dict[str, int]:
    """name -> element type for every value whose type is known."""
    graph = _inferred(model).graph
    found = {
        i.name: i.type.tensor_type.elem_type
        for i in list(graph.value_info) + list(graph.input) + list(graph.output)
        if i.type.tensor_type.elem_type
    }
    found.update({i.name: i.data_type for i in graph.initializer})
    return found


def _shapes(model: Any) -> dict[str, list[Any]]:
    """name -> dims (int or None) for every value shape inference knows the rank of."""
    found = {}
    graph = _inferred(model).graph
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            found[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    for init in graph.initializer:
        found[init.name] = list(init.dims)
    return found


REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "Softmax", "LogSoftmax")


def _forget_shapes(model: Any) -> Any:
    """Drop the shapes the exporter declared (value_info, output shapes): a mutant that moves an axis changes them,
    and a runtime must infer them again rather than trust stale ones."""
    del model.graph.value_info[:]
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    return model


def reduction_axis(model: Any) -> Any:
    """The first reduction (ReduceSum/Mean/Max/Min, Softmax, LogSoftmax) over a rank >= 2 input reduces
    another axis (one of the same static size when there is one, so downstream shapes still fit)."""
    import numpy as np
    from difftest.suite import graph_edit

    shapes = _shapes(model)
    for node in model.graph.node:
        if node.op_type not in REDUCTIONS:
            continue
        dims = shapes.get(node.input[0])
        if not dims or len(dims) < 2:
            continue
        rank = len(dims)
        attr_axes = next((a for a in node.attribute if a.name in ("axis", "axes")), None)
        if node.op_type in ("Softmax", "LogSoftmax"):
            axes = [attr_axes.i if attr_axes is not None else -1]
        elif attr_axes is not None:
            axes = list(attr_axes.ints)
        elif len(node.input) > 1 and node.input[1]:
            try:
                name = graph_edit.fold_input(model, node, 1)
                axes = [int(a) for a in graph_edit.constant(model, name).reshape(-1)]
            except ValueError:
                continue
        else:
            continue  # reduces every axis: no other axis to pick
        if not axes:
            continue
        normal = [a % rank for a in axes]
        free = [a for a in range(rank) if a not in normal]
        if not free:
            continue
        moved = normal[-1]
        same = [a for a in free if dims[a] is not None and dims[a] == dims[moved]]
        new = (same or free)[0]
        new_axes = [a for a in normal if a != moved] + [new]
        if node.op_type in ("Softmax", "LogSoftmax"):
            graph_edit.set_attribute(node, "axis", new)
        elif attr_axes is not None:
            graph_edit.set_attribute(node, "axes", new_axes)
        else:
            graph_edit.set_constant(model, name, np.asarray(new_axes, dtype=np.int64))
        return _forget_shapes(model)
    return None


def _first_output(model: Any, types: tuple[int, ...]) -> int | None:
    for i, output in enumerate(model.graph.output):
        if output.type.tensor_type.elem_type in types:
            return i
    return None


def _numpy_type(elem_type: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(elem_type)


def _rewire(model: Any, types: tuple[int, ...], make: Callable[[str, str, int], list[Any]]) -> Any:
    """Insert ``make(inner, outer, elem_type)`` between the first output of one of ``types`` and its producer (as
    graph_edit.rewire_output does, with a name of its own: a case's own rewrite may have used that one)."""
    index = _first_output(model, types)
    if index is None:
        return None
    output = model.graph.output[index]
    outer = output.name
    inner = f"{outer}_before_mutant"
    from difftest.suite.graph_edit import rename_value

    rename_value(model, outer, inner)
    if any(i.name == outer for i in model.graph.input) or any(i.name == outer for i in model.graph.initializer):
        return None  # an output that is a graph input or a constant: leave it alone
    model.graph.node.extend(make(inner, outer, output.type.tensor_type.elem_type))
    output.type.tensor_type.ClearField("shape")
    return model


def _scalar(name: str, value: float, elem: int) -> Any:
    import numpy as np
    from onnx import helper, numpy_helper

    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=_numpy_type(elem)), name)
    )


def add_constant(model: Any) -> Any:
    """+1e-3 on every element of the first float output."""
    from onnx import helper

    return _rewire(
        model,
        FLOAT_TYPES,
        lambda inner, outer, elem: [
            _scalar("mutant_c", 1e-3, elem),
            helper.make_node("Add", [inner, "mutant_c"], [outer]),
        ],
    )


def flip_signs(model: Any) -> Any:
    """The sign of every element of the first float output smaller in magnitude than the output's mean
    magnitude is flipped (the small values: a tensor's large elements must not excuse them)."""
    from onnx import helper

    return _rewire(
        model,
        FLOAT_TYPES,
        lambda inner, outer, elem: [
            helper.make_node("Abs", [inner], ["mutant_abs"]),
            helper.make_node("ReduceMean", ["mutant_abs"], ["mutant_mean"], keepdims=1),
            helper.make_node("Less", ["mutant_abs", "mutant_mean"], ["mutant_small"]),
            helper.make_node("Neg", [inner], ["mutant_neg"]),
            helper.make_node("Where", ["mutant_small", "mutant_neg", inner], [outer]),
        ],
    )


def random_noise(model: Any) -> Any:
    """y * (1 + N(0, 1e-3)) on the first float output, drawn afresh on every run (RandomNormalLike, no seed)."""
    from onnx import helper

    return _rewire(
        model,
        FLOAT_TYPES,
        lambda inner, outer, elem: [
            helper.make_node("RandomNormalLike", [inner], ["mutant_noise"], scale=1e-3),
            helper.make_node("Mul", [inner, "mutant_noise"], ["mutant_scaled_noise"]),
            helper.make_node("Add", [inner, "mutant_scaled_noise"], [outer]),
        ],
    )


def narrowing_cast(model: Any) -> Any:
    """float32 -> float16 -> float32 on the first float32 output (else int64 -> int32 -> int64)."""
    from onnx import TensorProto, helper

    for source, narrow in ((TensorProto.FLOAT, TensorProto.FLOAT16), (TensorProto.INT64, TensorProto.INT32)):
        if _first_output(model, (source,)) is not None:
            return _rewire(
                model,
                (source,),
                lambda inner, outer, elem, narrow=narrow, source=source: [
                    helper.make_node("Cast", [inner], ["mutant_narrow"], to=narrow),
                    helper.make_node("Cast", ["mutant_narrow"], [outer], to=source),
                ],
            )
    return None


def swap_outputs(model: Any) -> Any:
    """The first two graph outputs of one dtype and one (static) shape exchange their values."""
    from onnx import helper

    shapes = _shapes(model)
    outputs = list(model.graph.output)
    for i, a in enumerate(outputs):
        for b in outputs[i + 1 :]:
            ta, tb = a.type.tensor_type, b.type.tensor_type
            da, db = shapes.get(a.name), shapes.get(b.name)
            if ta.elem_type != tb.elem_type or da is None or da != db or None in da:
                continue
            renamed = {a.name: f"{a.name}_mutant_before_swap", b.name: f"{b.name}_mutant_before_swap"}
            for node in model.graph.node:
                for k, name in enumerate(node.output):
                    if name in renamed:
                        node.output[k] = renamed[name]
                for k, name in enumerate(node.input):
                    if name in renamed:
                        node.input[k] = renamed[name]
            for init in model.graph.initializer:
                if init.name in renamed:
                    return None  # an output that is a constant: leave such graphs alone
            if any(i.name in renamed for i in model.graph.input):
                return None
            model.graph.node.extend(
                [
                    helper.make_node("Identity", [renamed[b.name]], [a.name]),
                    helper.make_node("Identity", [renamed[a.name]], [b.name]),
                ]
            )
            return model
    return None


def gather_shift(model: Any) -> Any:
    """The first Gather with constant indices over an axis of known size > 1 reads index + 1 (mod size)."""
    import numpy as np
    from difftest.suite import graph_edit

    shapes = _shapes(model)
    for node in model.graph.node:
        if node.op_type != "Gather":
            continue
        dims = shapes.get(node.input[0])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if not dims:
            continue
        size = dims[axis % len(dims)]
        if not size or size < 2:
            continue
        try:
            name = graph_edit.fold_input(model, node, 1)
            indices = graph_edit.constant(model, name)
        except ValueError:
            continue
        if indices.dtype.kind not in "iu" or indices.size == 0:
            continue
        shifted = ((indices.astype(np.int64) % size) + 1) % size
        graph_edit.set_constant(model, name, shifted.astype(indices.dtype))
        return _forget_shapes(model)
    return None


def integer_plus_one(model: Any) -> Any:
    """+1 on every element of the first integer output."""
    from onnx import helper

    return _rewire(
        model,
        INT_TYPES,
        lambda inner, outer, elem: [
            _scalar("mutant_one", 1, elem),
            helper.make_node("Add", [inner, "mutant_one"], [outer]),
        ],
    )


OPERATORS: dict[str, Callable[[Any], Any]] = {
    "weights_x1.001": _scale_weights(1 + 1e-3),
    "weights_x1.01": _scale_weights(1 + 1e-2),
    "one_weight": one_weight,
    "relu_before_rank": relu_before_rank,
    "topk_sorted_flip": topk_sorted_flip,
    "reduction_axis": reduction_axis,
    "add_constant": add_constant,
    "flip_signs": flip_signs,
    "random_noise": random_noise,
    "narrowing_cast": narrowing_cast,
    "swap_outputs": swap_outputs,
    "gather_shift": gather_shift,
    "integer_plus_one": integer_plus_one,
}


def mutate(model: Any, operator: str) -> Any:
    """A mutated copy of ``model`` (None when the operator does not apply)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return OPERATORS[operator](copy)


class NotApplicable(ValueError):
    """The operator found nothing to mutate in the graph the worker exported (the planner's graph differed)."""


class MutantTransform:
    """A mutant's onnx_transform: the case's own transform, then the mutation. The graph the mutation got is
    saved to ``save`` (the unmutated export), the mutated graph beside it."""

    def __init__(self, own: Callable[[Any], Any] | None, operator: str, save: str | None):
        self.own, self.operator, self.save = own, operator, save
        self.__name__ = f"mutant_{operator}"

    def __call__(self, model: Any) -> Any:
        if self.own is not None:
            model = self.own(model)
        if self.save:
            Path(self.save).parent.mkdir(parents=True, exist_ok=True)
            Path(self.save).write_bytes(model.SerializeToString())
        mutated = mutate(model, self.operator)
        if mutated is None:
            raise NotApplicable(f"mutation operator {self.operator} found nothing to mutate in the export")
        return mutated


def mutant_factory(entry: dict[str, Any]) -> Callable[[], Any]:
    """The factory of one mutant case (called in the worker): the source case with expect=None and the
    mutation appended to its onnx_transform."""

    def factory() -> Any:
        from difftest.suite.cases import build
        from difftest.suite.discover import load_suite

        definitions = {d.name: d for d in load_suite(Path(entry["source_path"]))}
        built = build(definitions[entry["source_name"]])
        built.expect = None
        if entry["operator"] != "none":
            built.onnx_transform = MutantTransform(built.onnx_transform, entry["operator"], entry.get("save"))
        built.description = f"mutant {entry['operator']} of {entry['source']}"
        return built

    factory.__name__ = entry["name"]
    factory.__doc__ = f"mutant {entry['operator']} of {entry['source']}"
    return factory


SUITE_TEMPLATE = '''"""Generated by bench/mutants.py: the mutant cases of {plan}. Do not edit."""
# operators: sha256 {digest} (in the file, so the export cache never serves a mutant made by other operators)
import importlib.util as _util
import json as _json
import sys as _sys
from pathlib import Path as _Path

from difftest import case as _case

_NAME = "difftest_bench_mutants"
if _NAME not in _sys.modules:
    _spec = _util.spec_from_file_location(_NAME, {mutants!r})
    _module = _util.module_from_spec(_spec)
    _sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
_mutants = _sys.modules[_NAME]

for _entry in _json.loads(_Path({plan!r}).read_text()):
    _case(name=_entry["name"], tags=["mutant", _entry["operator"]])(_mutants.mutant_factory(_entry))
'''


# --------------------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------------------


def _run(targets: list[str], out: Path, jobs: int, controls: bool) -> Any:
    import difftest

    budget = 60.0 if controls else 0.0
    started = time.perf_counter()
    result = difftest.run(
        targets, backends=["torch", CANDIDATE], out=str(out), jobs=jobs, localize_budget=budget, control_budget=budget
    )
    print(f"  {out}: {len(result.outcomes)} outcomes in {time.perf_counter() - started:.0f}s", flush=True)
    return result


def _tables(run_dir: Path, tensor_columns: list[str] | None = None) -> dict[str, Any]:
    """cases and comparisons as rows; tensors as a polars frame (``tensor_columns`` only, when given)."""
    from difftest.record.tables import read_table, row_dicts

    tensors = read_table(run_dir, "tensors")
    return {
        "cases": row_dicts(read_table(run_dir, "cases"), "cases"),
        "comparisons": read_table(run_dir, "comparisons").to_dicts(),
        "tensors": tensors.select(tensor_columns) if tensor_columns else tensors,
    }


def _outcomes(tables: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    from difftest.judge.expectations import outcomes

    return {o.case: o for o in outcomes(tables["cases"], tables["comparisons"]) if o.candidate == CANDIDATE}


def _is_random(case_row: dict[str, Any], tensors: list[dict[str, Any]]) -> bool:
    exports = case_row.get("exports") or {}
    if any(info.get("random_ops") for info in exports.values()):
        return True
    mine = [t for t in tensors if t["status"] == "ok" and not t["rerun"]]
    eager = {(t["probe"], t["output"]): t["digest"] for t in mine if t["backend"] == "torch"}
    return any(
        eager.get((t["probe"], t["output"])) not in (None, t["digest"]) for t in mine if t["backend"] == "reseeded"
    )


def control_targets(control: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The cases of the control run that can be mutated, with their exported graph; and why the others cannot."""
    tables = _tables(control, ["case", "probe", "backend", "rerun", "output", "status", "digest"])
    grouped: dict[str, list[dict[str, Any]]] = {}
    for t in tables["tensors"].to_dicts():
        grouped.setdefault(t["case"], []).append(t)
    results = _outcomes(tables)
    targets, excluded = [], {}
    for row in tables["cases"]:
        outcome = results.get(row["case"])
        if row.get("onnx_path") is None or outcome is None:
            reason = "no export"
        elif outcome.status != "pass":
            reason = f"unmutated {outcome.status}"
        elif _is_random(row, grouped.get(row["case"], [])):
            reason = "random model"
        else:
            reason = None
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        targets.append(
            {"case": row["case"], "path": row["path"], "name": row["name"], "onnx": str(control / row["onnx_path"])}
        )
    return targets, excluded


def plan(targets: list[dict[str, Any]], operators: list[str], per_operator: int | None) -> list[dict[str, Any]]:
    """Every applicable (case, operator), or at most ``per_operator`` per operator drawn round-robin over suites."""
    import onnx

    applicable: dict[str, list[dict[str, Any]]] = {op: [] for op in operators}
    for target in targets:
        model = onnx.load(target["onnx"], load_external_data=False)
        for op in operators:
            try:
                mutated = mutate(model, op)
            except Exception as exc:  # noqa: BLE001 - an operator that trips on a graph just does not apply
                print(f"  {op} on {target['case']}: {type(exc).__name__}: {exc}", file=sys.stderr)
                mutated = None
            if mutated is not None and mutated.SerializeToString() != model.SerializeToString():
                applicable[op].append(target)
    chosen = []
    for op in operators:
        found = applicable[op]
        if per_operator is not None and len(found) > per_operator:
            rng = random.Random(f"mutants:{op}")
            by_suite: dict[str, list[dict[str, Any]]] = {}
            for t in found:
                by_suite.setdefault(t["case"].split("::")[0], []).append(t)
            for group in by_suite.values():
                rng.shuffle(group)
            picked: list[dict[str, Any]] = []
            while len(picked) < per_operator:
                for suite in sorted(by_suite):
                    if by_suite[suite] and len(picked) < per_operator:
                        picked.append(by_suite[suite].pop())
            found = picked
        for t in found:
            chosen.append(
                {
                    "operator": op,
                    "source": t["case"],
                    "source_path": t["path"],
                    "source_name": t["name"],
                    "control_onnx": t["onnx"],
                    "applicable_total": len(applicable[op]),
                }
            )
    return chosen


def _mutant_name(entry: dict[str, Any]) -> str:
    suite, name = entry["source"].split("::", 1)
    return f"{suite}__{name}__{entry['operator']}"


def write_suite(entries: list[dict[str, Any]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        entry["name"] = _mutant_name(entry)
        digest = hashlib.sha1(entry["name"].encode()).hexdigest()[:16]
        entry["save"] = str(folder / "unmutated" / f"{digest}.onnx")
    plan_file = folder / "plan.json"
    plan_file.write_text(json.dumps(entries, indent=1))
    suite = folder / "mutant_cases.py"
    source = Path(__file__).resolve()
    suite.write_text(
        SUITE_TEMPLATE.format(
            plan=str(plan_file), mutants=str(source), digest=hashlib.sha256(source.read_bytes()).hexdigest()
        )
    )
    return suite


def _session(onnx_file: str) -> Any:
    """The unmutated graph on the candidate's own runtime (ORT CPU by default, single-threaded), so a mutant is
    must-kill only where it changes what that runtime computes (another runtime breaking ties its own way is not
    the mutant's doing)."""
    import onnx

    from difftest.backends import Subject
    from difftest.backends.candidates import make, parse

    backend = make(parse(CANDIDATE), threads=1)
    graph = onnx.load(onnx_file)
    inputs = [i.name for i in graph.graph.input if i.name not in {t.name for t in graph.graph.initializer}]
    outputs = [o.name for o in graph.graph.output]
    subject = Subject(None, inputs, outputs, None, onnx_bytes=graph.SerializeToString(), graph_inputs=inputs)
    return backend, backend.prepare(subject), inputs, outputs


def _ort_outputs(session: Any, feeds: dict[str, Any]) -> dict[str, Any]:
    backend, prepared, inputs, outputs = session
    values = backend.run(prepared, {k: v for k, v in feeds.items() if k in inputs})
    return dict(zip(outputs, values))


def _float_distance(a: Any, b: Any) -> float:
    import numpy as np

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    same_nan = np.isnan(a64) & np.isnan(b64)
    with np.errstate(all="ignore"):
        diff = np.where(same_nan | (a64 == b64), 0.0, np.abs(a64 - b64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max()) if diff.size else 0.0


def _probes_of(rows: list[dict[str, Any]]) -> set[str]:
    """The probes the inputs were recorded for (a candidate row of another probe, ``*``, is its session's)."""
    return {t["probe"] for t in rows if t["backend"] == "input"}


def must_kill(entry: dict[str, Any], tensors: list[dict[str, Any]]) -> tuple[str, str]:
    """('must_kill' | 'equivalent' | 'invalid' | 'unknown', why) for one mutant from its run's tensors."""
    import numpy as np
    from difftest.record.tables import decode

    case_id = f"mutant_cases::{entry['name']}"
    rows = [t for t in tensors if t["case"] == case_id]
    graph = entry["save"] if Path(entry["save"]).exists() else entry["control_onnx"]
    candidate = [t for t in rows if t["backend"] == CANDIDATE]
    if not candidate:
        return "invalid", "the candidate did not run (export or transform failed)"
    session_failed = [t for t in candidate if t["status"] != "ok" and t["probe"] not in _probes_of(rows)]
    if session_failed:
        return "invalid", f"the mutated graph does not load in {CANDIDATE} ({session_failed[0].get('stage')} failed)"
    reference = {(t["probe"], t["output"]): t for t in rows if t["backend"] == "torch" and not t["rerun"]}
    oracle = {(t["probe"], t["output"]): t for t in rows if t["backend"] == "torch-fp64" and not t["rerun"]}
    probes = sorted({t["probe"] for t in candidate})
    try:
        session = _session(graph)
    except Exception as exc:  # noqa: BLE001
        return "unknown", f"the unmutated graph does not load in {CANDIDATE}: {exc}"
    invalid_runs, found = 0, None
    for probe in probes:
        inputs = {
            t["output"]: decode(t)
            for t in rows
            if t["backend"] == "input" and t["probe"] == probe and t["status"] == "ok" and not t["sampled"]
        }
        ref_rows = [r for (p, _), r in reference.items() if p == probe]
        if not ref_rows or any(r["status"] != "ok" for r in ref_rows):
            continue  # the reference rejects this probe (invalid_probe): not judged, not used
        try:
            unmutated = _ort_outputs(session, inputs)
        except Exception:  # noqa: BLE001 - the unmutated graph cannot take this probe either
            continue
        for t in candidate:
            if t["probe"] != probe:
                continue
            if t["status"] != "ok":
                invalid_runs += 1
                continue
            if t["sampled"] or t["output"] not in unmutated:
                continue
            mutant, base = decode(t), np.asarray(unmutated[t["output"]])
            where = f"{probe}/{t['output']}" + (f" (rerun {t['rerun']})" if t["rerun"] else "")
            if mutant.shape != base.shape:
                found = found or f"{where}: shape {list(mutant.shape)} vs unmutated {list(base.shape)}"
                continue
            ref, orc = reference.get((probe, t["output"])), oracle.get((probe, t["output"]))
            have_oracle = (
                ref is not None
                and orc is not None
                and orc["status"] == "ok"
                and not ref["sampled"]
                and not orc["sampled"]
                and decode(ref).shape == decode(orc).shape == base.shape
            )
            if mutant.dtype.kind in "biu" and base.dtype.kind in "biu":
                differ = mutant.astype(object) != base.astype(object) if mutant.size < 1_000_000 else mutant != base
                differ = np.asarray(differ, dtype=bool)
                if have_oracle:
                    r, o = decode(ref), decode(orc)
                    if r.dtype.kind in "biu" and o.dtype.kind in "biu":
                        differ &= np.asarray(r.astype(object) == o.astype(object), dtype=bool)
                    else:
                        differ &= r.astype(np.float64) == o.astype(np.float64)
                if differ.any():
                    found = found or f"{where}: {int(differ.sum())} integers differ where eager == fp64"
                continue
            if mutant.dtype.kind not in "fc" or base.dtype.kind not in "fc":
                if _float_distance(mutant.astype(np.float64), base.astype(np.float64)) > 0:
                    found = found or f"{where}: values differ ({mutant.dtype} vs {base.dtype})"
                continue
            distance = _float_distance(mutant, base)
            error = _float_distance(decode(ref), decode(orc)) if have_oracle else 0.0
            finite = np.abs(base[np.isfinite(base)].astype(np.float64))
            eps = float(np.finfo(base.dtype if base.dtype.kind == "f" else np.float32).eps)
            floor = 2 * eps * (float(finite.max()) if finite.size else 0.0)
            if distance > max(error, floor):
                found = found or (
                    f"{where}: max |mutant - unmutated| {distance:.3g} > eager's float64 error "
                    f"{error:.3g}" + ("" if have_oracle else " (no oracle)")
                )
    if invalid_runs:  # a mutant some run cannot even execute proves nothing about the judge's benign rules
        return "invalid", f"the mutated graph failed on {invalid_runs} run(s) where the unmutated one did not"
    if found:
        return "must_kill", found
    return "equivalent", "every output within the reference's own float64 error of the unmutated graph's"


def analyse(entries: list[dict[str, Any]], run_dir: Path) -> list[dict[str, Any]]:
    tables = _tables(run_dir)
    results = _outcomes(tables)
    by_case = {
        key[0] if isinstance(key, tuple) else key: frame
        for key, frame in tables["tensors"].partition_by("case", as_dict=True).items()
    }
    comparisons: dict[str, list[dict[str, Any]]] = {}
    for c in tables["comparisons"]:
        if c["candidate"] == CANDIDATE:
            comparisons.setdefault(c["case"], []).append(c)
    rows = []
    for entry in entries:
        case_id = f"mutant_cases::{entry['name']}"
        outcome = results.get(case_id)
        frame = by_case.get(case_id)
        kind, why = must_kill(entry, frame.to_dicts() if frame is not None else [])
        status = outcome.status if outcome else "missing"
        passed = [c for c in comparisons.get(case_id, []) if c["passed"] and c["label"] != "exact"]
        rules = sorted({f"{c['label']}:{c['accepted_by']}" if c.get("accepted_by") else c["label"] for c in passed})
        beyond = [c for c in passed if c["label"] != "numeric" or c.get("accepted_by")]
        rows.append(
            {
                "passed_by": ("a benign rule" if beyond else "the tolerance") if status in NOT_KILLED else None,
                "mutant": entry["name"],
                "case": entry["source"],
                "operator": entry["operator"],
                "kind": kind,
                "why": why,
                "status": status,
                "killed": status not in NOT_KILLED,
                "label": outcome.label if outcome else None,
                "accepted_by": (outcome.accepted_by if outcome else []) or [],
                "benign_rows": rules,
                "evidence": ((outcome.evidence or "") if outcome else "").splitlines()[0:1],
                "probe": outcome.probe if outcome else None,
            }
        )
    return rows


def summarize(rows: list[dict[str, Any]], operators: list[str], planned: dict[str, int]) -> dict[str, Any]:
    table = []
    for op in operators:
        mine = [r for r in rows if r["operator"] == op]
        kill = [r for r in mine if r["kind"] == "must_kill"]
        killed = [r for r in kill if r["killed"]]
        table.append(
            {
                "operator": op,
                "applicable": planned.get(op, 0),
                "run": len(mine),
                "invalid": sum(r["kind"] == "invalid" for r in mine),
                "equivalent": sum(r["kind"] == "equivalent" for r in mine),
                "must_kill": len(kill),
                "killed": len(killed),
                "kill_rate": len(killed) / len(kill) if kill else None,
            }
        )
    kill = [r for r in rows if r["kind"] == "must_kill"]
    killed = sum(r["killed"] for r in kill)
    by_tolerance = sum(not r["killed"] and r["passed_by"] == "the tolerance" for r in kill)
    return {
        "operators": table,
        "total": {
            "run": len(rows),
            "must_kill": len(kill),
            "killed": killed,
            "kill_rate": killed / len(kill) if kill else None,
            "survivors_within_tolerance": by_tolerance,
            "survivors_by_benign_rule": len(kill) - killed - by_tolerance,
            "kill_rate_beyond_tolerance": killed / (len(kill) - by_tolerance) if len(kill) > by_tolerance else None,
            "equivalent": sum(r["kind"] == "equivalent" for r in rows),
            "invalid": sum(r["kind"] == "invalid" for r in rows),
            "equivalent_but_failed": sum(r["kind"] == "equivalent" and r["killed"] for r in rows),
        },
        "survivors": [r for r in kill if not r["killed"]],
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"{'operator':<18}{'applic.':>8}{'run':>6}{'invalid':>8}{'equiv.':>7}{'must-kill':>10}{'killed':>7}{'rate':>8}"
    ]
    for r in summary["operators"]:
        rate = f"{100 * r['kill_rate']:.0f}%" if r["kill_rate"] is not None else "-"
        lines.append(
            f"{r['operator']:<18}{r['applicable']:>8}{r['run']:>6}{r['invalid']:>8}{r['equivalent']:>7}"
            f"{r['must_kill']:>10}{r['killed']:>7}{rate:>8}"
        )
    t = summary["total"]
    rate = f"{100 * t['kill_rate']:.1f}%" if t["kill_rate"] is not None else "-"
    lines.append(
        f"{'total':<18}{'':>8}{t['run']:>6}{t['invalid']:>8}{t['equivalent']:>7}{t['must_kill']:>10}"
        f"{t['killed']:>7}{rate:>8}"
    )
    lines.append(
        f"equivalent mutants (not counted): {t['equivalent']} (of which difftest failed anyway: "
        f"{t['equivalent_but_failed']}); invalid (the mutated graph does not run): {t['invalid']}"
    )
    rate = t["kill_rate_beyond_tolerance"]
    lines.append(
        f"survivors: {t['survivors_by_benign_rule']} passed by a benign rule, {t['survivors_within_tolerance']} "
        "within the case's plain tolerance (numeric, no rule); kill rate without the latter: "
        + (f"{100 * rate:.1f}%" if rate is not None else "-")
    )
    if summary["survivors"]:
        lines.append("")
        lines.append("surviving must-kill mutants (case, operator: status label, accepted_by; evidence):")
        for r in sorted(summary["survivors"], key=lambda r: r["passed_by"] != "a benign rule"):
            rules = ", ".join(r["accepted_by"]) or "-"
            lines.append(
                f"  {r['case']}  {r['operator']}: {r['status']} {r['label']} accepted_by={rules} "
                f"rows={'; '.join(r['benign_rows']) or '-'} (passed by {r['passed_by']})"
            )
            lines.append(f"      must-kill because {r['why']}")
            if r["evidence"]:
                lines.append(f"      evidence [{r['probe']}]: {r['evidence'][0][:300]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="*", help=f"suite files (default: {' '.join(DEFAULT_TARGETS)})")
    parser.add_argument("--with-hf", action="store_true", help=f"also {HF_TARGET} (slow: minutes per model)")
    parser.add_argument("--operators", help=f"comma-separated subset of: {', '.join(OPERATORS)}")
    parser.add_argument("--cases", help="only source cases whose id contains this substring")
    parser.add_argument(
        "--per-operator",
        type=int,
        default=20,
        help="at most N applicable mutants per operator, spread over the suites (default 20)",
    )
    parser.add_argument("--all", action="store_true", help="every applicable mutant (the whole zoo: long)")
    parser.add_argument(
        "--out", default=str(ROOT / "reports" / "mutants"), help="work folder (default reports/mutants)"
    )
    parser.add_argument("--control", help="reuse this control run (the unmutated targets) instead of running one")
    parser.add_argument("--json", default=str(ROOT / "reports" / "mutants.json"), help="summary file")
    parser.add_argument(
        "--candidate",
        default=CANDIDATE,
        help=f"the ONNX candidate a mutant must fail on (default {CANDIDATE}; e.g. openvino, whose bf16 default must "
        "not let a mutant through as reduced_precision)",
    )
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: the CPUs)")
    parser.add_argument("--controls", action="store_true", help="keep difftest's localization and blame controls")
    parser.add_argument(
        "--reanalyse",
        action="store_true",
        help="run nothing: analyse the mutant run already in --out (its suite/plan.json)",
    )
    args = parser.parse_args(argv)
    globals()["CANDIDATE"] = args.candidate

    operators = args.operators.split(",") if args.operators else list(OPERATORS)
    unknown = [op for op in operators if op not in OPERATORS]
    if unknown:
        parser.error(f"unknown operator(s) {', '.join(unknown)}; known: {', '.join(OPERATORS)}")
    targets = [str((ROOT / t).resolve()) for t in (args.targets or DEFAULT_TARGETS)]
    if args.with_hf:
        targets.append(str(ROOT / HF_TARGET))
    out = Path(args.out).resolve()
    started = time.perf_counter()

    if args.reanalyse:
        entries = json.loads((out / "suite" / "plan.json").read_text())
        return report(entries, out / "mutants", operators, args, started, targets, None, {}, out / "control")
    if args.control:
        control = Path(args.control).resolve()
        print(f"control: reusing {control}", flush=True)
    else:
        control = out / "control"
        print(f"control: the unmutated cases of {len(targets)} suite files", flush=True)
        if control.exists():
            import shutil

            shutil.rmtree(control)
        _run(targets, control, args.jobs, args.controls)
    wanted = {Path(t).stem for t in targets}
    mutable, excluded = control_targets(control)
    mutable = [t for t in mutable if t["case"].split("::")[0] in wanted and (not args.cases or args.cases in t["case"])]
    print(f"targets: {len(mutable)} cases (excluded: {excluded})", flush=True)

    entries = plan(mutable, operators, None if args.all else args.per_operator)
    planned = {e["operator"]: e["applicable_total"] for e in entries}
    print(f"mutants: {len(entries)} of " + ", ".join(f"{op} {planned.get(op, 0)}" for op in operators), flush=True)
    work = out / "mutants"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    suite = write_suite(entries, out / "suite")
    _run([str(suite)], work, args.jobs, args.controls)
    return report(entries, work, operators, args, started, targets, len(mutable), excluded, control)


def report(
    entries: list[dict[str, Any]],
    work: Path,
    operators: list[str],
    args: Any,
    started: float,
    targets: list[str],
    cases: int | None,
    excluded: dict[str, int],
    control: Path,
) -> int:
    planned = {e["operator"]: e["applicable_total"] for e in entries}
    rows = analyse(entries, work)
    summary = summarize(rows, operators, planned)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["targets"] = {
        "suites": [Path(t).name for t in targets],
        "cases": cases,
        "excluded": excluded,
        "hf_transformers": args.with_hf,
        "onnx_backend": "not a target (no eager reference)",
    }
    summary["mutants"] = rows
    summary["runs"] = {"control": str(control), "mutants": str(work)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=1, default=str))
    print()
    print(render(summary))
    print(f"\n{summary['seconds']:.0f}s; summary: {args.json}; mutant run: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
