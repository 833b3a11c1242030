"""What eager's own index ops ranked: the evidence that decides tie-breaking, taken from the reference.

Whether two different indices are a tie is a question about the values they point at, and only the reference
may answer it: values evaluated from the candidate's graph would let a fault upstream of an ArgMax create the
very ties that excuse it, and a graph's ``sorted=0`` would let a graph excuse its own order. So, on the probes
where a candidate differs from the reference, the model is run once more in eager under a dispatch mode that
records every ArgMax/ArgMin/TopK/Sort/max(dim)/min(dim) call (its input values, dimension, keepdim and sorted
flags and its results) and every gather-like op (index, gather, index_select, take_along_dim, embedding)
whose index is one of those results. A model output that is one of those tensors (the tensor itself, a view
or a dtype-converted copy of it) is recorded under the pseudo-backend ``eager-ranked``:

- an *index* output: the row holds the values eager ranked, the message the op, axis, keepdims and sorted;
- a *values* output (the scores TopK/Sort/max returned): an empty row whose message says so;
- a *gathered* output (rows taken by eager's indices: boxes ordered by score): for rows gathered by a top-k
  index, the row holds the source rows whose score ties with the last one kept (the rows a candidate may hold at
  the top-k cut instead); otherwise an empty row.

The judge (``judge.verdicts``) reads these rows; nothing here comes from the candidate.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..export.exporter import describe_exception
from ..record.names import EAGER_RANKED
from ..record.tables import tensor_row
from .task import Task, enter_stage, seed

EMPTY = np.zeros((0,), dtype=np.float32)


def record_eager_ranked(
    task: Task,
    subject: Any,
    probes: dict[str, dict[str, np.ndarray]],
    tensors: list[dict[str, Any]],
    after_run: Callable[[str], Any] | None = None,
) -> None:
    """Run the model in eager on each probe with the index ops watched; append ``eager-ranked`` rows."""
    import torch

    for probe, feeds in probes.items():
        enter_stage(f"eager index evidence (probe {probe})")
        seed()  # as the reference's own run: a model that samples draws the same values
        inputs = [torch.from_numpy(np.array(feeds[n], copy=True, order="C")) for n in subject.input_names]
        watch = IndexWatch()
        try:
            with torch.inference_mode(), watch:
                outputs = subject.call(*inputs)
        except Exception as exc:
            tensors.append(
                tensor_row(
                    task, EAGER_RANKED, probe, status="error", stage="eager-ranked", message=describe_exception(exc)
                )
            )
            continue
        finally:
            if after_run is not None:
                after_run("the eager index-evidence run")
        # A row per probe watched, whatever it found: a run that looked and found no index op is told apart from
        # one recorded before difftest looked at all (see ``judge.verdicts.eager_index_outputs``).
        tensors.append(tensor_row(task, EAGER_RANKED, probe, about={"watched": len(watch.tracked)}))
        for name, output in zip(subject.output_names, outputs):
            found = watch.explain(output)
            if found is None:
                continue
            info, values = found
            array = values.detach().cpu().numpy() if values is not None else EMPTY
            tensors.append(
                tensor_row(
                    task,
                    EAGER_RANKED,
                    probe,
                    output=name,
                    array=array,
                    about=info,
                    max_bytes=task.max_tensor_bytes,
                )
            )


def _ops() -> dict[Any, str]:
    import torch

    aten = torch.ops.aten
    return {
        aten.argmax.default: "ArgMax",
        aten.argmin.default: "ArgMin",
        aten.topk.default: "TopK",
        aten.sort.default: "Sort",
        aten.sort.stable: "Sort",
        aten.argsort.default: "Sort",
        aten.argsort.stable: "Sort",
        aten.max.dim: "ArgMax",
        aten.min.dim: "ArgMin",
    }


def _gathers() -> set[Any]:
    import torch

    aten = torch.ops.aten
    return {
        aten.index.Tensor,
        aten.gather.default,
        aten.index_select.default,
        aten.take_along_dim.default,
        aten.embedding.default,
        aten.take.default,
    }


def _copies() -> set[Any]:
    import torch

    aten = torch.ops.aten
    return {
        aten._to_copy.default,
        aten.to.dtype,
        aten.to.dtype_layout,
        aten.to.other,
        aten.to.device,
        aten.clone.default,
        aten.alias.default,
        aten.detach.default,
        aten.contiguous.default,
        aten.lift_fresh.default,
        aten.lift_fresh_copy.default,
    }


def _bound(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The op's arguments by schema name, defaults filled in."""
    bound: dict[str, Any] = {}
    positional = list(args)
    for argument in func._schema.arguments:
        if argument.kwarg_only:
            if argument.name in kwargs:
                bound[argument.name] = kwargs[argument.name]
            elif argument.has_default_value():
                bound[argument.name] = argument.default_value
        elif positional:
            bound[argument.name] = positional.pop(0)
        elif argument.name in kwargs:
            bound[argument.name] = kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
    return bound


class IndexWatch:
    """A dispatch mode that remembers eager's index results, the values they ranked, and what they gathered."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        watch = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                result = func(*args, **kwargs)
                try:
                    watch._saw(func, args, kwargs, result)
                except Exception:  # evidence gathering never changes what the model computes
                    pass
                return result

        self.mode = _Mode()
        self.ops, self.gathers, self.copies = _ops(), _gathers(), _copies()
        self.tracked: list[tuple[Any, dict[str, Any], Any]] = []  # (tensor, info, ranked values or None)

    def __enter__(self) -> "IndexWatch":
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mode.__exit__(*exc)

    def _saw(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        import torch

        if func in self.ops:
            op = self.ops[func]
            bound = _bound(func, args, kwargs)
            values = bound["self"]
            dim = bound.get("dim")
            if dim is None:  # argmax over the flattened tensor
                values, axis, keepdims = values.reshape(-1), 0, False
            else:
                axis = int(dim) % max(values.dim(), 1)
                keepdims = bool(bound.get("keepdim", True)) if op in ("ArgMax", "ArgMin") else True
            info = {
                "op": op,
                "axis": axis,
                "keepdims": keepdims,
                "sorted": bool(bound.get("sorted", True)) if op == "TopK" else True,
            }
            indices = result[1] if isinstance(result, (tuple, list)) else result
            self.tracked.append((indices, {**info, "kind": "index"}, values.detach().clone()))
            if isinstance(result, (tuple, list)):
                self.tracked.append((result[0], {**info, "kind": "values"}, None))
            return
        tensors = [
            a
            for a in list(args) + list(kwargs.values())
            for a in (a if isinstance(a, (list, tuple)) else [a])
            if isinstance(a, torch.Tensor)
        ]
        if not isinstance(result, torch.Tensor):
            return
        if func in self.gathers:
            for tensor in tensors[1:] if func is not torch.ops.aten.embedding.default else tensors[1:2]:
                known = self._find(tensor)
                if known is not None and known[1]["kind"] == "index":
                    info = {"kind": "gathered", "op": known[1]["op"], "by": func.__name__}
                    self.tracked.append((result, info, _cut_candidates(func, args, tensor, known, info)))
                    return
        elif func in self.copies and tensors:
            known = self._find(tensors[0])
            if known is not None and tuple(result.shape) == tuple(known[0].shape):
                self.tracked.append((result, known[1], known[2]))

    def _find(self, tensor: Any) -> tuple[Any, dict[str, Any], Any] | None:
        for entry in reversed(self.tracked):
            if _same_tensor(tensor, entry[0]):
                return entry
        return None

    def explain(self, output: Any) -> tuple[dict[str, Any], Any] | None:
        """(info, ranked values or None) for a model output that is one of eager's index results, their values, or
        rows gathered by them; None otherwise."""
        for tensor, info, values in reversed(self.tracked):
            if _same_tensor(output, tensor):
                return info, values
            if (
                info["kind"] == "index"
                and info["op"] in ("ArgMax", "ArgMin")
                and info["keepdims"]
                and _squeezed_view(output, tensor, info["axis"])
            ):
                return {**info, "keepdims": False}, values
        return None


def _cut_candidates(func: Any, args: tuple, index: Any, known: tuple, info: dict[str, Any]) -> Any:
    """For rows gathered along dim 0 by a 1-D top-k index over 1-D scores (``boxes[scores.topk(k).indices]``): the
    source rows whose eager score ties with the last one kept. Which of several such rows survive the top-k cut is
    arbitrary, and these are the only rows a candidate may hold in their place. None where that does not apply."""
    import torch

    _, index_info, scores = known
    source = args[0]
    along_first = (func is torch.ops.aten.index.Tensor and len(args[1]) == 1) or (
        func is torch.ops.aten.index_select.default and int(args[1]) == 0
    )
    if (
        not along_first
        or scores is None
        or scores.dim() != 1
        or index.dim() != 1
        or index.numel() == 0
        or index_info["op"] not in ("TopK", "Sort")
    ):
        return None
    last = scores[index[-1]]
    tied = torch.nonzero(scores == last).reshape(-1)
    info["cut_score"] = float(last)
    return source.index_select(0, tied).detach().clone()


def _same_tensor(a: Any, b: Any) -> bool:
    """The same tensor, or a view of the same memory with the same shape and layout."""
    if a is b:
        return True
    try:
        return (
            tuple(a.shape) == tuple(b.shape)
            and a.dtype == b.dtype
            and a.stride() == b.stride()
            and a.storage_offset() == b.storage_offset()
            and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        )
    except (RuntimeError, NotImplementedError):
        return False


def _squeezed_view(output: Any, indices: Any, axis: int) -> bool:
    """``output`` is ``indices`` (computed with keepdim=True) with its size-1 ``axis`` squeezed away."""
    try:
        shape = list(indices.shape)
        if axis >= len(shape) or shape[axis] != 1:
            return False
        del shape[axis]
        return (
            tuple(output.shape) == tuple(shape)
            and output.dtype == indices.dtype
            and output.untyped_storage().data_ptr() == indices.untyped_storage().data_ptr()
            and output.storage_offset() == indices.storage_offset()
        )
    except (RuntimeError, NotImplementedError):
        return False
