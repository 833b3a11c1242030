"""PyTorch eager: the reference, and its CUDA and float64 variants."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, Control, Subject


class TorchEager(Backend):
    name = "torch"
    needs_onnx = False
    runs_the_model = True
    device = "cpu"
    description = "PyTorch eager on CPU (the reference)"

    def prepare(self, subject: Subject) -> Any:
        return subject

    def run(self, session: Subject, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        from ..suite.model_io import to_numpy

        # A copy per run: a forward that writes into its inputs must not change the probe for the next backend.
        tensors = [
            torch.from_numpy(np.array(feeds[n], copy=True, order="C")).to(self.device) for n in session.input_names
        ]
        pristine = getattr(session, "pristine", None)
        if pristine is not None:  # a copy this backend made: every run starts from it as it was made
            pristine.restore()
        with torch.inference_mode():
            outputs = session.call(*tensors)
        return [to_numpy(t) for t in outputs]


class Pristine:
    """The state of a model copy a backend made (the float64 oracle, a model moved to a device), put back before
    every run: a forward that updates its own buffers (running statistics, a counter) must not carry one probe's
    updates into the next. (The reference runs the factory's own model, which the worker's guard restores.)"""

    def __init__(self, module: Any):
        import torch

        self.module = module if isinstance(module, torch.nn.Module) else None
        self.training: dict[str, bool] = {}
        self.state: dict[str, tuple[Any, Any]] = {}
        if self.module is None:
            return
        self.training = {name: sub.training for name, sub in self.module.named_modules()}
        with torch.no_grad():
            for name, tensor in list(self.module.named_parameters(remove_duplicate=False)) + list(
                self.module.named_buffers(remove_duplicate=False)
            ):
                if tensor is not None and name not in self.state:
                    self.state[name] = (tensor, tensor.detach().clone())

    def restore(self) -> None:
        import torch

        if self.module is None:
            return
        for name, sub in self.module.named_modules():
            if name in self.training:
                sub.training = self.training[name]
        with torch.no_grad():
            for name, (tensor, saved) in self.state.items():
                owner_name, _, attr = name.rpartition(".")
                owner = self.module.get_submodule(owner_name) if owner_name else self.module
                store = owner._parameters if attr in owner._parameters else owner._buffers
                if store.get(attr) is not tensor:  # the forward replaced the tensor object: put the original back
                    store[attr] = tensor
                if tensor.shape != saved.shape:
                    tensor.data = saved.clone()
                else:
                    tensor.copy_(saved)


class TorchOnDevice(TorchEager):
    """PyTorch eager on another device, the way people run a model there: the module and every tensor the case
    passes (arguments, keyword arguments, nested containers, tensors a module keeps outside its parameters and
    buffers) moved to the device, and the forward run under it as the default device (tensors the forward
    creates without ``device=`` land there too). A model that still mixes devices fails with a message naming the
    op, recorded as a finding about the model (``ModelFault``)."""

    name = "torch-device"
    runs_the_model = False  # runs a copy moved to the device
    device = "meta"

    def prepare(self, subject: Subject) -> Any:
        import copy
        import dataclasses

        placed = copy.copy(subject)
        placed.module = place_module(copy.deepcopy(subject.module), self.device)
        call = subject.call.rebind(placed.module)
        constants = copy.deepcopy((call.signature.arg_constants, call.signature.kw_constants))
        call.signature = dataclasses.replace(
            call.signature,
            arg_constants=[to_device(c, self.device) for c in constants[0]],
            kw_constants={k: to_device(v, self.device) for k, v in constants[1].items()},
        )
        call.frozen = {k: to_device(v, self.device) for k, v in call.frozen.items()}
        placed.call = call
        placed.pristine = Pristine(placed.module)
        return placed

    def run(self, session: Subject, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        try:
            with torch.device(self.device), self.settings_applied():
                return super().run(session, feeds)
        except RuntimeError as exc:
            op = mixed_devices(str(exc))
            if op is None:
                raise
            raise ModelFault(
                f"the model mixes devices{op}: {str(exc).splitlines()[0]}. Every tensor the case passes was moved to "
                f"{self.device} and the forward ran with {self.device} as the default device, so a tensor the model "
                "creates on an explicit device, or keeps where moving the module does not reach it, stayed behind"
            ) from None

    def settings_applied(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


class TorchCuda(TorchOnDevice):
    name = "torch-cuda"
    device = "cuda"
    description = "PyTorch eager on CUDA"
    settings = ("tf32", "fastpath")
    setting_values = {"tf32": ("0", "1"), "fastpath": ("0", "1")}
    setting_defaults = {"tf32": "default"}
    localize_instead = (
        "torch-cuda runs the PyTorch model on CUDA, not an ONNX graph: there is no ONNX node to "
        "localize. Its controls (tf32=0, fastpath=0) say whether a precision mode makes the gap; "
        "to find the op, run the model under torch.cuda and compare submodule outputs with forward "
        "hooks against the CPU run"
    )

    @classmethod
    def declared_controls(cls, module: Any = None) -> list[Control]:
        tf32 = Control(
            "tf32",
            "0",
            f"does the gap close with TF32 off? ({cls.name} uses TF32 by default)",
            rule="tf32_control",
            closes="tf32",
            accepted=True,
        )
        if not _has_attention(module):
            return [tf32]
        return [
            tf32,
            Control(
                "fastpath",
                "0",
                "does the gap close with nn.MultiheadAttention's inference fast path off?",
                rule="fastpath_control",
                closes="attention fast path",
            ),
            Control(
                "fastpath",
                "0",
                "with both the attention fast path and TF32 off",
                rule="fastpath_control",
                closes="attention fast path",
                also=(("tf32", "0"),),
            ),
        ]

    def unavailable_reason(self) -> str | None:
        import torch

        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no usable GPU"
            )
            return f"torch {torch.__version__} is {build}: torch.cuda.is_available() is False"
        return None

    def settings_applied(self) -> Any:
        return cuda_settings(self.options)

    def providers(self, session: Any) -> list[str]:
        import torch

        return [f"cuda:{torch.cuda.get_device_name(0)}"]


class cuda_settings:
    """Apply a candidate's precision settings around a run and put the globals back after it:
    ``tf32`` (torch.backends.cuda.matmul / cudnn allow_tf32) and ``fastpath`` (the inference fast path of
    nn.MultiheadAttention and nn.TransformerEncoder, torch.backends.mha)."""

    def __init__(self, options: dict[str, str]):
        self.options = options

    def __enter__(self) -> None:
        import torch

        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, _fastpath_enabled())
        if "tf32" in self.options:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.options["tf32"] == "1"
        if "fastpath" in self.options:
            _set_fastpath(self.options["fastpath"] == "1")

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, fastpath = self.saved
        if fastpath is not None:
            _set_fastpath(fastpath)


def _fastpath_enabled() -> bool | None:
    import torch

    mha = getattr(torch.backends, "mha", None)
    return mha.get_fastpath_enabled() if mha is not None and hasattr(mha, "get_fastpath_enabled") else None


def _set_fastpath(enabled: bool) -> None:
    import torch

    mha = getattr(torch.backends, "mha", None)
    if mha is not None and hasattr(mha, "set_fastpath_enabled"):
        mha.set_fastpath_enabled(enabled)


def _has_attention(module: Any) -> bool:
    import torch

    kinds = (torch.nn.MultiheadAttention, torch.nn.TransformerEncoderLayer, torch.nn.TransformerDecoderLayer)
    return isinstance(module, torch.nn.Module) and any(isinstance(m, kinds) for m in module.modules())


class ModelFault(RuntimeError):
    """The model itself cannot run as asked (it mixes devices): a finding about the model, not the backend."""


_DEVICE_ERRORS = (
    "to be on the same device",
    "found at least two devices",
    "on the same device, but got",
    "Expected all tensors to be on",
    "is not on the expected device",
)


def mixed_devices(message: str) -> str | None:
    """For a device-mismatch error: " in <op>" (or "" when the op is not named); None for other errors."""
    import re

    if not any(marker in message for marker in _DEVICE_ERRORS):
        return None
    found = re.search(r"in method (?:wrapper_\w+?__)?(\w+)", message) or re.search(
        r"argument \w+ in method (\w+)", message
    )
    if found:
        return f" in {found.group(1)}"
    found = re.search(r"expected (\w+) and (\w+) to be on the same device", message)
    return f" (between {found.group(1)} and {found.group(2)})" if found else ""


def place_module(module: Any, device: str) -> Any:
    """``module.to(device)`` plus the tensors its submodules keep as plain attributes or in containers, and the
    tensors their functions read from module globals or closures (a constant index tensor a forward uses)."""
    import types

    import torch

    if not isinstance(module, torch.nn.Module):
        return to_device(module, device)
    module.to(device)
    for sub in module.modules():
        for name, value in list(vars(sub).items()):
            if name in ("_parameters", "_buffers", "_modules") or name.startswith("__"):
                continue
            moved = to_device(value, device)
            if moved is not value:
                object.__setattr__(sub, name, moved)
        forward = getattr(type(sub), "forward", None)
        if isinstance(forward, types.FunctionType) and not type(sub).__module__.startswith("torch."):
            moved_forward = relocated_function(forward, device)
            if moved_forward is not forward:  # on this copy only: the class (shared with the CPU runs) is untouched
                object.__setattr__(sub, "forward", types.MethodType(moved_forward, sub))
    return module


def relocated_function(fn: Any, device: str, depth: int = 0) -> Any:
    """``fn``, or a copy of it whose global, closure and default tensors are on ``device``."""
    import types

    names = set(fn.__code__.co_names)
    moved_globals = {
        name: to_device(fn.__globals__[name], device, depth + 1)
        for name in names
        if name in fn.__globals__ and not isinstance(fn.__globals__[name], (types.ModuleType, type))
    }
    changed = {k: v for k, v in moved_globals.items() if v is not fn.__globals__[k]}
    closure = fn.__closure__
    if closure:
        cells = []
        for cell in closure:
            try:
                content = cell.cell_contents
            except ValueError:
                cells.append(cell)
                continue
            moved = to_device(content, device, depth + 1)
            cells.append(cell if moved is content else types.CellType(moved))
        new_closure = tuple(cells)
        closure_changed = any(a is not b for a, b in zip(new_closure, closure))
    else:
        new_closure, closure_changed = closure, False
    defaults = fn.__defaults__
    new_defaults = tuple(to_device(d, device, depth + 1) for d in defaults) if defaults else defaults
    defaults_changed = bool(defaults) and any(a is not b for a, b in zip(new_defaults, defaults))
    if not (changed or closure_changed or defaults_changed):
        return fn
    copy = types.FunctionType(
        fn.__code__,
        {**fn.__globals__, **changed} if changed else fn.__globals__,
        fn.__name__,
        new_defaults,
        new_closure,
    )
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__dict__.update(fn.__dict__)
    copy.__qualname__ = fn.__qualname__
    return copy


def to_device(value: Any, device: str, depth: int = 0) -> Any:
    """``value`` with every tensor in it (containers, dataclasses and plain objects' attributes, in place) on
    ``device``; ``value`` itself when it holds none. Give it copies: objects are changed in place."""
    import functools
    import types

    import torch

    if depth > 8:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, torch.nn.Module):
        return place_module(value, device)
    if isinstance(value, (list, tuple)):
        items = [to_device(v, device, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(*items) if isinstance(value, tuple) and hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        moved = {k: to_device(v, device, depth + 1) for k, v in value.items()}
        if all(moved[k] is value[k] for k in value):
            return value
        try:
            return type(value)(moved)
        except TypeError:
            return moved
    if isinstance(value, types.FunctionType):
        return relocated_function(value, device, depth)
    if isinstance(value, functools.partial):
        func = to_device(value.func, device, depth + 1)
        args = tuple(to_device(a, device, depth + 1) for a in value.args)
        keywords = {k: to_device(v, device, depth + 1) for k, v in value.keywords.items()}
        if (
            func is value.func
            and all(a is b for a, b in zip(args, value.args))
            and all(keywords[k] is value.keywords[k] for k in keywords)
        ):
            return value
        return functools.partial(func, *args, **keywords)
    if isinstance(
        value, (type, types.ModuleType, types.MethodType, types.BuiltinFunctionType, str, bytes)
    ) or not hasattr(value, "__dict__"):
        return value
    for name, item in list(vars(value).items()):  # a cache object, a dataclass: its tensors, in place
        moved_item = to_device(item, device, depth + 1)
        if moved_item is not item:
            try:
                object.__setattr__(value, name, moved_item)
            except (AttributeError, TypeError):
                continue
    return value


class TorchFloat64(TorchEager):
    """The reference model in float64: the oracle that tells float noise from error."""

    name = "torch-fp64"
    runs_the_model = False  # runs a float64 copy
    description = "PyTorch eager on CPU in float64 (the oracle)"

    def prepare(self, subject: Subject) -> Any:
        import copy

        oracle = copy.copy(subject)
        oracle.module = copy.deepcopy(subject.module).double()
        oracle.call = subject.call.rebind(oracle.module)
        oracle.pristine = Pristine(oracle.module)
        return oracle

    def run(self, session: Subject, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        wide = {
            k: v.astype(np.float64) if v.dtype.kind == "f" or str(v.dtype) == "bfloat16" else v
            for k, v in feeds.items()
        }
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # tensors the forward creates itself follow
        try:
            return super().run(session, wide)
        finally:
            torch.set_default_dtype(previous)
