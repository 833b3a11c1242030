"""One flat signature for every runtime: named tensor inputs in, named tensors out.

A case's ``args`` and ``kwargs`` may mix tensors with Python values, containers of tensors (tuples, lists,
dicts, dataclasses, objects such as a transformers ``DynamicCache``), and its module may return any of those.
Every backend (and the exporter) sees the same :class:`FlatModule`: tensor inputs in a fixed order with fixed
names (a tensor inside a container is an input named after its path: ``cache_layers_0_keys``), the
containers rebuilt around them on every call from a private copy, plain values held as constants, outputs
flattened in order the same way. ONNX graph inputs are then fed by name whatever names the exporter would
have chosen.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import OutputError


Path = tuple  # steps into a container: ("item", index) | ("key", key) | ("attr", name)


@dataclass
class Signature:
    """Where each flat tensor input comes from."""

    names: list[str]  # flat tensor input names, in order
    arg_slots: list[int | None]  # for each positional arg: index into names, or None (constant)
    arg_constants: list[Any]
    kw_slots: dict[str, int | None] = field(default_factory=dict)
    kw_constants: dict[str, Any] = field(default_factory=dict)
    baked: list[str] = field(default_factory=list)  # tensor kwargs exported as constants
    # Constant arguments that hold tensors: where each tensor goes, as (path, index into names).
    arg_holes: dict[int, list[tuple[Path, int]]] = field(default_factory=dict)
    kw_holes: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)


def signature_of(
    module: Any, args: tuple, kwargs: dict | None, bake_kwargs: bool = False
) -> tuple[Signature, list[torch.Tensor]]:
    """Name the tensor inputs after the forward signature and collect them in order; tensors inside containers
    are inputs too, named after their path."""
    params = _parameter_names(module)
    names: list[str] = []
    tensors: list[torch.Tensor] = []
    arg_slots: list[int | None] = []
    signature = Signature(names=names, arg_slots=arg_slots, arg_constants=list(args))

    def holes(base: str, value: Any) -> list[tuple[Path, int]]:
        found = []
        for path, tensor in tensor_leaves(value):
            found.append((path, len(names)))
            names.append(_unique(_safe(f"{base}_{path_text(path)}"), names))
            tensors.append(tensor)
        return found

    for position, value in enumerate(args):
        base = params[position] if position < len(params) else f"arg{position}"
        if isinstance(value, torch.Tensor):
            arg_slots.append(len(names))
            names.append(_unique(_safe(base), names))
            tensors.append(value)
        else:
            arg_slots.append(None)
            found = holes(base, value)
            if found:
                signature.arg_holes[position] = found
    for key, value in (kwargs or {}).items():
        if isinstance(value, torch.Tensor):
            signature.kw_slots[key] = len(names)
            names.append(_unique(_safe(key), names))
            tensors.append(value)
            if bake_kwargs:
                signature.baked.append(names[-1])
        else:
            signature.kw_slots[key] = None
            signature.kw_constants[key] = value
            found = holes(key, value)
            if found:
                signature.kw_holes[key] = found
                if bake_kwargs:
                    signature.baked.extend(names[index] for _, index in found)
    return signature, tensors


_OPAQUE = (str, bytes, bool, int, float, complex, type(None), torch.dtype, torch.device)


def tensor_leaves(value: Any, limit: int = 8) -> list[tuple[Path, torch.Tensor]]:
    """(path, tensor) for every tensor inside a container or object, in a stable order (insertion order)."""
    import types

    found: list[tuple[Path, torch.Tensor]] = []
    seen: set[int] = set()

    def visit(item: Any, path: Path) -> None:
        if isinstance(item, torch.Tensor):
            found.append((path, item))
            return
        if len(path) >= limit or isinstance(item, _OPAQUE) or id(item) in seen:
            return
        if isinstance(item, (torch.nn.Module, type, types.ModuleType, types.FunctionType, types.MethodType)):
            return
        seen.add(id(item))
        if isinstance(item, (tuple, list)):
            for i, sub in enumerate(item):
                visit(sub, path + (("item", i),))
        elif isinstance(item, dict):
            for key, sub in item.items():
                visit(sub, path + (("key", key),))
        elif hasattr(item, "__dict__"):
            for name, sub in vars(item).items():
                if not name.startswith("__"):
                    visit(sub, path + (("attr", name),))

    visit(value, ())
    return found


def path_text(path: Path) -> str:
    return "_".join(str(step[1]) for step in path) or "value"


def put(root: Any, path: Path, value: Any) -> Any:
    """``root`` with ``value`` at ``path`` (tuples rebuilt, lists, dicts and objects set in place)."""
    if not path:
        return value
    (kind, step), rest = path[0], path[1:]
    if kind == "item":
        child = put(root[step], rest, value)
        if isinstance(root, tuple):
            items = list(root)
            items[step] = child
            return type(root)(*items) if hasattr(root, "_fields") else type(root)(items)
        root[step] = child
        return root
    if kind == "key":
        root[step] = put(root[step], rest, value)
        return root
    object.__setattr__(root, step, put(getattr(root, step), rest, value))
    return root


class FlatModule(torch.nn.Module):
    """``forward(*tensors) -> tuple(tensors)`` around the case's module.

    With ``frozen`` given, those inputs are not taken from the call but held as
    the constants ``frozen`` maps them to: the graph an exporter traces then has
    them baked in, as ``functools.partial(model, mask=m)`` would.
    """

    def __init__(
        self,
        module: Any,
        signature: Signature,
        frozen: dict[str, torch.Tensor] | None = None,
        copy_each_call: bool = True,
    ):
        super().__init__()
        self.inner = module
        self.signature = signature
        self.frozen = dict(frozen or {})
        self.copy_each_call = copy_each_call
        self.live_names = [n for n in signature.names if n not in self.frozen]
        # Mirror the wrapped model's mode without touching its submodules: the TorchScript exporter restores
        # the mode of the module it is given, recursively, after exporting (see state_guard).
        self.training = bool(getattr(module, "training", False))

    def rebind(self, module: Any) -> "FlatModule":
        return FlatModule(module, self.signature, self.frozen, self.copy_each_call)

    def for_export(self) -> "FlatModule":
        """A copy for an exporter: its constant arguments are copied once, now, outside the trace (copying inside
        a trace meets fake tensors), and the exporter's writes into them touch nothing anyone else uses."""
        import dataclasses

        signature = dataclasses.replace(
            self.signature,
            arg_constants=[_fresh(c) for c in self.signature.arg_constants],
            kw_constants={k: _fresh(v) for k, v in self.signature.kw_constants.items()},
        )
        return FlatModule(self.inner, signature, self.frozen, copy_each_call=False)

    def call_inner(self, *live: torch.Tensor) -> Any:
        """The wrapped model's own result for these flat inputs. Non-tensor arguments are deep-copied on every
        call, so a container the model appends to (a cache) is the factory's on every stage."""
        values = dict(zip(self.live_names, live))
        for name, tensor in self.frozen.items():
            values[name] = tensor.to(live[0].device) if live else tensor
        sig = self.signature
        fresh = _fresh if self.copy_each_call else (lambda value: value)

        def filled(template: Any, holes: list[tuple[Path, int]] | None) -> Any:
            value = fresh(template)
            for path, index in holes or ():
                value = put(value, path, values[sig.names[index]])
            return value

        args = [
            filled(sig.arg_constants[i], sig.arg_holes.get(i)) if slot is None else values[sig.names[slot]]
            for i, slot in enumerate(sig.arg_slots)
        ]
        kwargs = {
            key: filled(sig.kw_constants[key], sig.kw_holes.get(key)) if slot is None else values[sig.names[slot]]
            for key, slot in sig.kw_slots.items()
        }
        return self.inner(*args, **kwargs)

    def forward(self, *live: torch.Tensor):
        return tuple(flatten_outputs(self.call_inner(*live))[1])


def _fresh(value: Any) -> Any:
    """A private copy of a constant argument (plain Python values are returned as they are)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.dtype, torch.device)):
        return value
    import copy

    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is passed as it is (and the guard watches the model)
        return value


def flatten_outputs(result: Any, prefix: str = "output") -> tuple[list[str], list[torch.Tensor]]:
    """Flatten a module's result into (names, tensors); nested containers and objects that hold tensors (a
    transformers ``ModelOutput`` or ``DynamicCache``) name their paths: ``output_cache_layers_0_keys``. Names are
    unique, as input names are: keys that sanitize alike (``a-b`` and ``a_b``) get ``_1``, ``_2`` suffixes."""
    names: list[str] = []
    tensors: list[torch.Tensor] = []

    def visit(value: Any, path: str) -> None:
        if isinstance(value, torch.Tensor):
            names.append(_unique(path, names))
            tensors.append(value)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                visit(item, f"{path}_{i}" if path else str(i))
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}_{_safe(str(key))}" if path else _safe(str(key)))
        elif value is None:
            return
        elif isinstance(value, (bool, int, float)):
            names.append(_unique(path, names))
            tensors.append(torch.tensor(value))
        else:
            leaves = tensor_leaves(value)
            if not leaves:
                raise OutputError(
                    f"output at {path!r} is a {type(value).__name__} holding no tensors, which cannot be compared; "
                    "return tensors, or containers and objects that hold them (drop this output in the factory, "
                    "e.g. with a wrapper module)"
                )
            for leaf_path, tensor in leaves:
                names.append(_unique(f"{path}_{_safe(path_text(leaf_path))}", names))
                tensors.append(tensor)

    if isinstance(result, (tuple, list)) and len(result) == 1:
        result = result[0]
    if isinstance(result, torch.Tensor):
        return [prefix], [result]
    visit(result, prefix)
    return names, tensors


def to_feeds(names: list[str], tensors: list[torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: to_numpy(t) for name, t in zip(names, tensors)}


def _parameter_names(module: Any) -> list[str]:
    target = module.forward if isinstance(module, torch.nn.Module) else module
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name) or "input"


def _unique(name: str, taken: list[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    return candidate


def to_numpy(tensor: Any) -> np.ndarray:
    """A detached CPU numpy copy; bfloat16 goes through ml_dtypes so no value changes."""
    import torch

    tensor = tensor.detach().to("cpu")
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.resolve_conj().resolve_neg().numpy().copy()
