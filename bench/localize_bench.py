"""How often does `localize` name the node a fault was injected into? (top-1, top-3, time)

    python bench/localize_bench.py [--per-kind 2] [--suite suites/models.py suites/basics.py]

Faults are injected into each zoo model's exported graph with an onnx_transform: a Pad's begin/end swapped,
a Resize's coordinate mode changed, a normalization epsilon perturbed, a Transpose's permutation changed,
an intermediate value cast through float16. Each is localized against eager on ort-cpu.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Fault:
    """An onnx_transform that changes the ``index``-th node of ``op`` and remembers which nodes it touched."""

    def __init__(self, kind: str, op: str, index: int, change: Callable[[Any, Any], list[str] | None]):
        self.kind, self.op, self.index, self.change = kind, op, index, change
        self.injected: list[str] = []

    def __call__(self, model):
        nodes = [n for n in model.graph.node if n.op_type == self.op]
        if self.index >= len(nodes):
            raise LookupError(f"no {self.op} #{self.index}")
        touched = self.change(model, nodes[self.index])
        if not touched:
            raise LookupError(f"{self.op} #{self.index} cannot take a {self.kind} fault")
        self.injected = touched
        return model


def swap_pads(model, node):
    from difftest.suite.graph_edit import constant, fold_input, set_constant, swap_pad_begin_end

    name = fold_input(model, node, 1)
    pads = constant(model, name)
    swapped = swap_pad_begin_end(pads)
    if np.array_equal(pads, swapped):
        return None
    set_constant(model, name, swapped)
    return [node.name]


def resize_mode(model, node):
    from onnx import helper

    from difftest.suite.graph_edit import set_attribute

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    current = attrs.get("coordinate_transformation_mode", b"half_pixel")
    current = current.decode() if isinstance(current, bytes) else current
    set_attribute(node, "coordinate_transformation_mode", "asymmetric" if current != "asymmetric" else "half_pixel")
    return [node.name]


def epsilon(model, node):
    from difftest.suite.graph_edit import set_attribute

    set_attribute(node, "epsilon", 0.5)
    return [node.name]


def transpose(model, node):
    from onnx import helper

    from difftest.suite.graph_edit import set_attribute

    perm = list(helper.get_attribute_value(next(a for a in node.attribute if a.name == "perm")))
    from difftest.export.exporter import value_types

    types = value_types(model)
    source = types.get(node.input[0])
    if source is None or len(perm) < 2:
        return None
    dims = [d.dim_value for d in source.tensor_type.shape.dim]
    for i in range(len(perm) - 1, 0, -1):
        a, b = perm[i - 1], perm[i]
        if dims[a] and dims[a] == dims[b] and dims[a] > 1:
            perm[i - 1], perm[i] = b, a
            set_attribute(node, "perm", perm)
            return [node.name]
    return None


def cast_fp16(model, node):
    from onnx import TensorProto, helper

    from difftest.export.exporter import value_types

    value = node.output[0]
    kind = value_types(model).get(value)
    if kind is None or kind.tensor_type.elem_type != TensorProto.FLOAT:
        return None
    inner = f"{value}__before_fault"
    for other in model.graph.node:
        for i, name in enumerate(other.output):
            if name == value:
                other.output[i] = inner
    down, up = f"{value}__fp16_fault", f"{value}__fp32_fault"
    position = list(model.graph.node).index(node) + 1
    model.graph.node.insert(position, helper.make_node("Cast", [inner], [down], name=down, to=TensorProto.FLOAT16))
    model.graph.node.insert(position + 1, helper.make_node("Cast", [down], [value], name=up, to=TensorProto.FLOAT))
    return [down, up]


KINDS = [
    ("pad_swap", "Pad", swap_pads),
    ("resize_mode", "Resize", resize_mode),
    ("epsilon", "LayerNormalization", epsilon),
    ("epsilon", "BatchNormalization", epsilon),
    ("epsilon", "InstanceNormalization", epsilon),
    ("transpose", "Transpose", transpose),
    ("cast_fp16", "Conv", cast_fp16),
    ("cast_fp16", "MatMul", cast_fp16),
    ("cast_fp16", "Gemm", cast_fp16),
]


def run(suites: list[str], per_kind: int, echo=print) -> list[dict[str, Any]]:
    import torch

    from difftest.suite.cases import build
    from difftest.suite.discover import collect
    from difftest.localize.divergence import localize

    results = []
    for ref, definition in collect(suites):
        for kind, op, change in KINDS:
            for index in range(per_kind):
                torch.manual_seed(0)
                built = build(definition)
                if built.exporter not in (None, "dynamo") or built.onnx_transform is not None:
                    break
                fault = Fault(kind, op, index, change)
                built.onnx_transform = fault
                result = localize(ref, "ort-cpu", "torch", "base", budget_seconds=120, built=built)
                if not fault.injected:
                    break  # no (more) such node in this model, or the model does not export: nothing injected
                names = [s["name"] for s in result.suspects]
                row = {
                    "case": ref.id,
                    "kind": kind,
                    "op": op,
                    "index": index,
                    "injected": fault.injected,
                    "status": result.status,
                    "top1": bool(names[:1]) and names[0] in fault.injected,
                    "top3": any(n in fault.injected for n in names[:3]),
                    "seconds": result.seconds,
                    "culprit": names[0] if names else None,
                    "reason": result.reason,
                }
                results.append(row)
                echo(
                    f"{ref.id:<40} {kind:<12} {op}#{index}: {result.status:<14} top1={row['top1']!s:<5} "
                    f"top3={row['top3']!s:<5} {result.seconds:5.1f}s  {row['culprit']}"
                )
    return results


def summary(results: list[dict[str, Any]]) -> str:
    if not results:
        return "no faults injected"
    faults = [r for r in results if r["status"] != "no_divergence"]
    lines = [
        f"{len(results)} faults injected, {len(results) - len(faults)} changed nothing the reference could see "
        f"(no divergence: excluded), {len(faults)} scored"
    ]
    if faults:
        top1 = sum(r["top1"] for r in faults) / len(faults)
        top3 = sum(r["top3"] for r in faults) / len(faults)
        times = [r["seconds"] for r in faults]
        lines.append(
            f"top-1 {100 * top1:.0f}%, top-3 {100 * top3:.0f}%, time median {statistics.median(times):.1f} s, "
            f"max {max(times):.1f} s"
        )
        by_kind: dict[str, list[dict]] = {}
        for r in faults:
            by_kind.setdefault(r["kind"], []).append(r)
        for kind, rows in sorted(by_kind.items()):
            lines.append(
                f"  {kind:<12} {len(rows):>3} faults, top-1 {sum(r['top1'] for r in rows)}/{len(rows)}, "
                f"top-3 {sum(r['top3'] for r in rows)}/{len(rows)}"
            )
        misses = [r for r in faults if not r["top3"]]
        for r in misses:
            lines.append(
                f"  missed: {r['case']} {r['kind']} {r['op']}#{r['index']} ({r['status']}): {r['reason'][:160]}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--suite", nargs="+", default=[str(ROOT / "suites" / "models.py"), str(ROOT / "suites" / "basics.py")]
    )
    parser.add_argument("--per-kind", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(args.suite, args.per_kind)
    print(summary(results))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
