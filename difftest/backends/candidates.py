"""Candidate specs: a backend plus variant settings, in one string used everywhere.

    ort-cpu                         the backend with its defaults
    ort-cpu[exporter=torchscript]   exported with the TorchScript exporter
    ort-cpu[opt=disable]            ORT graph optimizations off (disable | basic | extended | all)
    ort-cpu[threads=1]              ORT intra-op threads
    ort-cuda[tf32=0]                TF32 off (ORT's use_tf32; torch.backends.*.allow_tf32 for torch-cuda)
    torch-cuda[fastpath=0]          nn.MultiheadAttention's inference fast path off (torch.backends.mha)
    ort-cpu[transform=fp16]         a named post-export graph transform (see ``transforms``)
    openvino[precision=f32]         OpenVINO's inference precision (f32 | bf16 | f16)
    torch-compile[backend=aot_eager]   torch.compile's backend, mode and dynamic
    ort-cpu[exporter=torchscript,opt=disable]   settings combine

Which settings a backend takes, their legal values and what an absent one means are declared by the backend class
(``settings``, ``setting_values``, ``setting_defaults``); only the settings every ONNX backend shares (exporter,
transform, threads) are checked here.

The canonical form (settings in a fixed order, defaults kept as written) is the candidate's name in the
tables, the report, expectations and the command line. Settings that change the ONNX model (exporter,
transform) define an *export*; each distinct export is produced once per case and shared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

KEY_ORDER = ("exporter", "transform", "opt", "threads", "tf32", "fastpath")  # then each backend's own, as declared
EXPORT_KEYS = ("exporter", "transform")
USER_FILE = "file"  # the export name of a case's own ONNX file (``Case(onnx=...)``)
VALUES = {
    "exporter": ("dynamo", "torchscript", "file"),  # file: the case's own ONNX file (Case(onnx=...))
}


def key_order() -> tuple[str, ...]:
    """Every setting key in canonical order: the shared ones, then those registered backends add."""
    from . import REGISTRY

    keys = list(KEY_ORDER)
    for cls in REGISTRY.values():
        keys.extend(k for k in cls.settings if k not in keys)
    return tuple(keys)


def legal_values(backend: str, key: str) -> tuple[str, ...] | None:
    """The values ``backend`` accepts for ``key`` (None: not an enumerated setting)."""
    from . import REGISTRY

    return REGISTRY[backend].setting_values.get(key) or VALUES.get(key)


_SPEC = re.compile(r"^(?P<backend>[a-z0-9][a-z0-9-]*)(?:\[(?P<settings>[^\[\]]*)\])?$")


@dataclass(frozen=True)
class Candidate:
    backend: str
    settings: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        if not self.settings:
            return self.backend
        return f"{self.backend}[{','.join(f'{k}={v}' for k, v in self.settings)}]"

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.settings).get(key, default)

    def export_key(self, default_exporter: str) -> tuple[str, str | None]:
        """What identifies the ONNX model this candidate runs."""
        return (self.get("exporter") or default_exporter, self.get("transform"))

    def without(self, key: str) -> "Candidate":
        return Candidate(self.backend, tuple((k, v) for k, v in self.settings if k != key))

    def __str__(self) -> str:
        return self.name


def make(spec: "str | Candidate", threads: int | None = None) -> Any:
    """A backend from a name, a candidate spec string (``ort-cpu[opt=disable]``) or a Candidate."""
    from . import REGISTRY

    candidate = spec if isinstance(spec, Candidate) else parse(str(spec))
    return REGISTRY[candidate.backend](threads=threads, options=dict(candidate.settings))


def with_settings(candidate: Candidate, **changes: str) -> str:
    """The candidate's name with some settings changed or added, in canonical order."""
    settings = {**dict(candidate.settings), **changes}
    if not settings:
        return candidate.backend
    return parse(f"{candidate.backend}[{','.join(f'{k}={v}' for k, v in settings.items())}]").name


def export_name(key: tuple[str, str | None]) -> str:
    exporter, transform = key
    return exporter + (f"+{transform}" if transform else "")


def case_export_name(case: dict, candidate: str) -> str | None:
    """The name of the export (in the case's ``exports``) that ``candidate`` ran; None for eager backends."""
    from . import REGISTRY

    parsed = parse(candidate)
    if not REGISTRY[parsed.backend].needs_onnx:
        return None
    return export_name(parsed.export_key(case.get("exporter") or "dynamo"))


def ranked_source(case: dict, candidate: str) -> str | None:
    """The pseudo-backend whose rows hold the values behind ``candidate``'s index outputs."""
    from ..record.names import RANKED

    name = case_export_name(case, candidate)
    return f"{RANKED}:{name}" if name else None


def split_specs(text: str) -> list[str]:
    """Split ``a,b[x=1,y=2],c`` on the commas outside brackets."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse(spec: str) -> Candidate:
    """Parse and validate one spec; raises UsageError naming the bad part."""
    from . import REGISTRY

    match = _SPEC.match(spec.strip())
    if not match:
        raise UsageError(f"bad backend spec {spec!r}: write NAME or NAME[key=value,...], e.g. ort-cpu[opt=disable]")
    backend = match.group("backend")
    if backend not in REGISTRY:
        raise UsageError(f"unknown backend {backend!r} in {spec!r}; known: {', '.join(REGISTRY)}")
    settings: dict[str, str] = {}
    for item in (match.group("settings") or "").split(","):
        item = item.strip()
        if not item and match.group("settings") is not None and not match.group("settings").strip():
            raise UsageError(f"bad backend spec {spec!r}: empty [] - drop the brackets or add key=value")
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UsageError(f"bad setting {item!r} in {spec!r}: write key=value")
        if key not in key_order():
            raise UsageError(f"unknown setting {key!r} in {spec!r}; known: {', '.join(key_order())}")
        if key in settings:
            raise UsageError(f"setting {key!r} given twice in {spec!r}")
        _check_value(spec, backend, key, value)
        settings[key] = value
    ordered = tuple((k, settings[k]) for k in key_order() if k in settings)
    return Candidate(backend, ordered)


def _check_value(spec: str, backend: str, key: str, value: str) -> None:
    from ..export.transforms import TRANSFORMS
    from . import REGISTRY

    cls = REGISTRY[backend]
    if key not in cls.settings:
        raise UsageError(
            f"setting {key!r} does not apply to {backend!r} in {spec!r} "
            f"(it takes: {', '.join(cls.settings) or 'no settings'})"
        )
    legal = legal_values(backend, key)
    if legal is not None and value not in legal:
        raise UsageError(f"bad value {value!r} for {key!r} in {spec!r}; one of: {', '.join(legal)}")
    if key == "threads" and not (value.isdigit() and int(value) >= 1):
        raise UsageError(f"bad value {value!r} for 'threads' in {spec!r}: a whole number from 1")
    if key == "transform" and value not in TRANSFORMS:
        raise UsageError(f"unknown transform {value!r} in {spec!r}; registered: {', '.join(sorted(TRANSFORMS))}")


def parse_list(text: str) -> list[Candidate]:
    specs = split_specs(text)
    if not specs:
        raise UsageError("--backends is empty; name at least one candidate, e.g. --backends torch,ort-cpu")
    candidates = [parse(s) for s in specs]
    names = [c.name for c in candidates]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"--backends names {', '.join(duplicates)} twice")
    return candidates


def variant_findings(results: dict[str, tuple[str, bool]], defaults: dict[str, str] | None = None) -> list[str]:
    """Sentences like "fails only with exporter=torchscript" from candidate -> (label, passed).

    Compares every pair of candidates that differ in exactly one setting (a missing setting counts as its
    value in ``defaults``), so a reader sees at a glance which setting flips the verdict.
    """
    from . import REGISTRY

    parsed = {name: parse(name) for name in results}
    found = []
    for a, pa in parsed.items():
        for b, pb in parsed.items():
            if a >= b or pa.backend != pb.backend:
                continue
            keys = {k for k, _ in pa.settings} | {k for k, _ in pb.settings}
            differing = [k for k in keys if pa.get(k) != pb.get(k)]
            if len(differing) != 1 or results[a][1] == results[b][1]:
                continue
            key = differing[0]
            failing, passing = (a, b) if not results[a][1] else (b, a)
            known = {"threads": "auto", **REGISTRY[pa.backend].setting_defaults, **(defaults or {})}
            value = parsed[failing].get(key) or known.get(key, "default")
            other = parsed[passing].get(key) or known.get(key, "default")
            found.append(
                f"{parsed[failing].backend} fails only with {key}={value} ({failing}: "
                f"{results[failing][0]}); with {key}={other} it is {results[passing][0]} ({passing})"
            )
    return found
