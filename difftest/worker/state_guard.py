"""Keep the model under test in the state its factory made it, whatever a stage does to it.

Every stage of a case (the reference, the float64 oracle, each probe, each export) must see the model as the
factory built it. Exporters and backends can change it behind the harness's back: the TorchScript exporter
puts the module it is given in eval mode and afterwards restores *that module's* mode to every submodule
(difftest's adapter is a fresh module, in training mode, so a user's eval-mode BatchNorm came back in
training mode and every later eager run used batch statistics); a tracer or a model's own forward can write
into parameters and buffers (running statistics, counters, caches).

:class:`ModelGuard` records, before anything runs, the ``training`` flag of every submodule and a copy of
every parameter and buffer (persistent or not). :meth:`ModelGuard.check` compares the model with that
record after a stage, restores what changed and returns sentences naming the stage and what it touched;
the case row keeps them (``state_changes``) and the case page shows them. A model too large to keep a copy
of is compared by digest only; a change then cannot be undone and :class:`ModelStateError` fails the case
loudly instead of letting later stages run on a different model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

COPY_LIMIT_BYTES = 2 * 2**30  # keep copies for restoring up to this much state; above it, digests only


class ModelStateError(RuntimeError):
    """A stage changed the model and the change could not be undone."""


@dataclass
class _Tensor:
    kind: str  # "parameter" | "buffer"
    obj: Any  # the tensor object the module held
    copy: Any = None  # a detached clone, or None when only the digest is kept
    digest: str | None = None


@dataclass
class ModelGuard:
    module: Any
    training: dict[str, bool] = field(default_factory=dict)
    tensors: dict[str, _Tensor] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)

    @classmethod
    def record(cls, module: Any) -> "ModelGuard":
        import torch

        guard = cls(module)
        if not isinstance(module, torch.nn.Module):
            return guard
        guard.training = {name: sub.training for name, sub in module.named_modules()}
        total = sum(t.numel() * t.element_size() for t in _state_tensors(module).values())
        keep_copies = total <= COPY_LIMIT_BYTES
        for name, (kind, tensor) in _state_items(module).items():
            entry = _Tensor(kind, tensor)
            if keep_copies:
                with torch.no_grad():
                    entry.copy = tensor.detach().clone()
            else:
                entry.digest = _digest(tensor)
            guard.tensors[name] = entry
        return guard

    def check(self, stage: str) -> list[str]:
        """Compare the model with the record after ``stage``; restore it; return what was found (and keep it)."""
        import torch

        if not isinstance(self.module, torch.nn.Module):
            return []
        found: list[str] = []
        modes = {name: sub for name, sub in self.module.named_modules()}
        flipped = [name for name, sub in modes.items() if name in self.training and sub.training != self.training[name]]
        if flipped:
            for name in flipped:
                modes[name].training = self.training[name]
            now = "training" if not self.training[flipped[0]] else "eval"
            found.append(f"{stage} switched {len(flipped)} submodule(s) to {now} mode ({_names(flipped)}); restored")
        current = _state_items(self.module)
        written, replaced, lost = [], [], []
        for name, entry in self.tensors.items():
            if name not in current:
                lost.append(name)
                continue
            kind, tensor = current[name]
            if tensor is not entry.obj:
                replaced.append(name)
                _put_back(self.module, name, entry)
                tensor = entry.obj
            if not _same(entry, tensor):
                written.append((name, entry))
        for name in lost:
            _put_back(self.module, name, self.tensors[name])
        added = sorted(set(current) - set(self.tensors))
        if written:
            unrecoverable = [name for name, entry in written if entry.copy is None]
            details = ", ".join(
                f"{entry.kind} {name!r}{_change_size(entry, current[name][1])}" for name, entry in written[:4]
            )
            more = f" and {len(written) - 4} more" if len(written) > 4 else ""
            if unrecoverable:
                message = (
                    f"{stage} wrote into {details}{more}; the model is too large to keep a copy, so it cannot be "
                    "restored and the later stages would test a different model"
                )
                self.changes.append(message)
                raise ModelStateError(message)
            with torch.no_grad():
                for _, entry in written:
                    entry.obj.copy_(entry.copy)
            found.append(f"{stage} wrote into {details}{more}; restored")
        if replaced:
            found.append(f"{stage} replaced the tensor object of {_names(replaced)}; the original was put back")
        if lost:
            found.append(f"{stage} removed {_names(lost)}; put back")
        if added:
            found.append(f"{stage} added {_names(added)} to the model (left in place)")
        self.changes.extend(found)
        return found

    def summary(self) -> list[str]:
        """Each distinct finding once, with how many times it was seen (a model's forward that writes into its
        own buffers does so on every run)."""
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change] = counts.get(change, 0) + 1
        return [text if n == 1 else f"{text} (seen {n} times)" for text, n in counts.items()]


def _state_items(module: Any) -> dict[str, tuple[str, Any]]:
    items: dict[str, tuple[str, Any]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        items.setdefault(name, ("parameter", param))
    for name, buffer in module.named_buffers(remove_duplicate=False):  # non-persistent buffers included
        if buffer is not None:
            items.setdefault(name, ("buffer", buffer))
    return items


def _state_tensors(module: Any) -> dict[int, Any]:
    return {id(t): t for _, t in _state_items(module).values()}


def _same(entry: _Tensor, tensor: Any) -> bool:
    import torch

    if entry.copy is None:
        return _digest(tensor) == entry.digest
    if tensor.shape != entry.copy.shape or tensor.dtype != entry.copy.dtype:
        return False
    if tensor.is_floating_point() or tensor.is_complex():  # bitwise, so NaN == NaN and -0.0 != 0.0 count right
        a = tensor.detach().contiguous().reshape(-1)
        b = entry.copy.to(tensor.device).contiguous().reshape(-1)
        return bool(torch.equal(a.view(torch.uint8), b.view(torch.uint8))) if a.numel() else True
    return bool(torch.equal(tensor.detach(), entry.copy.to(tensor.device)))


def _digest(tensor: Any) -> str:
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return f"{tensor.dtype}{tuple(tensor.shape)}" + hashlib.blake2b(raw, digest_size=16).hexdigest()


def _change_size(entry: _Tensor, tensor: Any) -> str:
    if entry.copy is None or tensor.shape != entry.copy.shape or not tensor.is_floating_point():
        return ""
    import torch

    with torch.no_grad():
        diff = (tensor.detach().double().cpu() - entry.copy.double().cpu()).abs()
    return f" (max |Δ| {float(diff.max()):.3g})" if diff.numel() else ""


def _put_back(module: Any, name: str, entry: _Tensor) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if entry.kind == "parameter":
        owner._parameters[attr] = entry.obj
    else:
        owner._buffers[attr] = entry.obj


def _names(names: list[str]) -> str:
    shown = ", ".join(n or "(the root module)" for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
