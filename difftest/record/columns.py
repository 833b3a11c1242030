"""Structured columns: the parquet types of the columns that hold nested records, and the conversion between the
Python values the stages pass around and those types.

The stages hand each other plain Python values: a case row's ``exports`` is a dict keyed by export, its
``controls`` a dict keyed by control name, a tensors row's ``full`` a dict. Parquet stores them in its own types
(polars writes and reads them natively): a record is a struct, a mapping keyed by name a list of structs with the
key in a field of its own (parquet has no map of free keys that polars reads), a value that is one of several
kinds (an ONNX attribute, a dimension that is a size or a name) a struct with one field per kind.

``encode`` turns the Python value into the stored one and refuses a field its type does not declare, so a new
field is declared here, in one place, or the run stops in the test that writes it; ``decode`` gives back the
Python value. Runs made before these types held the same values as JSON text: ``from_json_text`` reads that text
(the old layout's reader, used by ``tables.read_table``), leaving out fields this difftest no longer knows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


class ColumnValueError(ValueError):
    """A value that does not fit its column's declared type (a field the type lacks, a wrong kind)."""


class Type:
    def dtype(self) -> Any:
        raise NotImplementedError

    def encode(self, value: Any, strict: bool) -> Any:
        raise NotImplementedError

    def decode(self, value: Any) -> Any:
        return value


_SCALAR_TYPES = {"str": "String", "float": "Float64", "int": "Int64", "bool": "Boolean", "bytes": "Binary"}
_PYTHON_TYPES: dict[str, Any] = {"str": str, "float": (int, float), "int": int, "bool": bool, "bytes": bytes}


@dataclass(frozen=True)
class Scalar(Type):
    kind: str  # one of _SCALAR_TYPES

    def dtype(self) -> Any:
        import polars as pl

        return getattr(pl, _SCALAR_TYPES[self.kind])

    def accepts(self, value: Any) -> bool:
        if self.kind in ("int", "float") and isinstance(value, bool):
            return False
        return isinstance(value, _PYTHON_TYPES[self.kind])

    def encode(self, value: Any, strict: bool) -> Any:
        if value is None:
            return None
        if not self.accepts(value):
            raise ColumnValueError(f"{value!r} is not a {self.kind}")
        return float(value) if self.kind == "float" else value


STR, FLOAT, INT, BOOL, BYTES = (Scalar(kind) for kind in _SCALAR_TYPES)


@dataclass(frozen=True)
class ListOf(Type):
    item: Type

    def dtype(self) -> Any:
        import polars as pl

        return pl.List(self.item.dtype())

    def encode(self, value: Any, strict: bool) -> Any:
        if value is None:
            return None
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise ColumnValueError(f"{value!r} is not a list")
        return [self.item.encode(v, strict) for v in value]

    def decode(self, value: Any) -> Any:
        return None if value is None else [self.item.decode(v) for v in value]


@dataclass(frozen=True)
class Record(Type):
    fields: tuple[tuple[str, Type], ...]

    def dtype(self) -> Any:
        import polars as pl

        return pl.Struct({name: kind.dtype() for name, kind in self.fields})

    def encode(self, value: Any, strict: bool) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ColumnValueError(f"{value!r} is not a record")
        known = dict(self.fields)
        unknown = [k for k in value if k not in known]
        if unknown and strict:
            raise ColumnValueError(f"field {unknown[0]!r} is not declared (declared: {', '.join(known)})")
        return {name: _field(kind, value.get(name), name, strict) for name, kind in self.fields}

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        return {name: kind.decode(value.get(name)) for name, kind in self.fields}


def record(**fields: Type) -> Record:
    return Record(tuple(fields.items()))


def _field(kind: Type, value: Any, name: str, strict: bool) -> Any:
    try:
        return kind.encode(value, strict)
    except ColumnValueError as exc:
        raise ColumnValueError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Keyed(Type):
    """A dict from a name to a value: stored as a list of structs, the name in field ``key``, the value's fields
    beside it (a record's) or in ``value`` (anything else). Order is kept."""

    key: str
    value: Type

    def _inline(self) -> bool:
        return isinstance(self.value, Record)

    def dtype(self) -> Any:
        import polars as pl

        if self._inline():
            return pl.List(pl.Struct({self.key: pl.String, **self.value.dtype().to_schema()}))
        return pl.List(pl.Struct({self.key: pl.String, "value": self.value.dtype()}))

    def encode(self, value: Any, strict: bool) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ColumnValueError(f"{value!r} is not a mapping")
        stored = []
        for key, item in value.items():
            if self._inline():
                if isinstance(item, dict) and self.key in item:
                    raise ColumnValueError(f"{key!r}: field {self.key!r} is the mapping's key")
                stored.append({self.key: str(key), **_field(self.value, item, str(key), strict)})
            else:
                stored.append({self.key: str(key), "value": _field(self.value, item, str(key), strict)})
        return stored

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        if self._inline():
            return {
                entry[self.key]: self.value.decode({k: v for k, v in entry.items() if k != self.key}) for entry in value
            }
        return {entry[self.key]: self.value.decode(entry["value"]) for entry in value}


class Dim(Type):
    """A dimension of a recorded shape: a size, a symbolic name, or unknown."""

    def dtype(self) -> Any:
        import polars as pl

        return pl.Struct({"size": pl.Int64, "param": pl.String})

    def encode(self, value: Any, strict: bool) -> Any:
        if value is None:
            return {"size": None, "param": None}
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ColumnValueError(f"{value!r} is not a dimension")
        return {"size": value, "param": None} if isinstance(value, int) else {"size": None, "param": value}

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        return value["size"] if value["size"] is not None else value["param"]


class Attribute(Type):
    """An ONNX node attribute as localization describes it: an int, a float, a string, or a list of ints, floats
    or strings (one field per kind, like ONNX's AttributeProto)."""

    KINDS = (("int", INT), ("float", FLOAT), ("string", STR))  # in this order: an int is also a float

    def dtype(self) -> Any:
        import polars as pl

        fields = {name: kind.dtype() for name, kind in self.KINDS}
        return pl.Struct({**fields, **{f"{name}s": pl.List(dtype) for name, dtype in fields.items()}})

    def encode(self, value: Any, strict: bool) -> Any:
        stored: dict[str, Any] = {name: None for name, _ in self.KINDS}
        stored.update({f"{name}s": None for name, _ in self.KINDS})
        if isinstance(value, list):
            kind = next((name for name, scalar in self.KINDS if all(scalar.accepts(v) for v in value)), None)
            if kind is None:
                raise ColumnValueError(f"{value!r} mixes kinds")
            stored[f"{kind}s"] = [float(v) if kind == "float" else v for v in value]
            return stored
        kind = next((name for name, scalar in self.KINDS if scalar.accepts(value)), None)
        if kind is None:
            raise ColumnValueError(f"{value!r} is not an attribute value")
        stored[kind] = float(value) if kind == "float" else value
        return stored

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        for name in ("int", "float", "string", "ints", "floats", "strings"):
            if value.get(name) is not None:
                return value[name]
        return None


class Expect(Type):
    """A case's ``expect``: a label or labels for the whole case, or a dict from a candidate (or pattern, or ``*``)
    to a label or labels. Stored as one entry per key, ``candidates`` null for the whole case; labels always as a
    list (the judge reads one label and a list of one alike)."""

    def dtype(self) -> Any:
        import polars as pl

        return pl.List(pl.Struct({"candidates": pl.String, "labels": pl.List(pl.String)}))

    def encode(self, value: Any, strict: bool) -> Any:
        if value is None:
            return None
        if isinstance(value, dict):
            return [{"candidates": str(k), "labels": _labels(v)} for k, v in value.items()]
        return [{"candidates": None, "labels": _labels(value)}]

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        if len(value) == 1 and value[0]["candidates"] is None:
            return list(value[0]["labels"])
        return {entry["candidates"]: list(entry["labels"]) for entry in value}


def _labels(value: Any) -> list[str]:
    labels = [value] if isinstance(value, str) else value
    if not isinstance(labels, (list, tuple)) or not all(isinstance(v, str) for v in labels):
        raise ColumnValueError(f"{value!r} is not a label or a list of labels")
    return list(labels)


# --- the columns ------------------------------------------------------------------------------------------------

STRS = ListOf(STR)

# The kinds a table's column declaration names (``record.tables``): a scalar, a list, or "structured", a nested
# record whose type is in ``STRUCTURED``.
COLUMN_KINDS: dict[str, Type] = {
    "str": STR,
    "float": FLOAT,
    "int": INT,
    "bool": BOOL,
    "bytes": BYTES,
    "strs": STRS,
    "ints": ListOf(INT),
}

EXPORT = record(
    exporter=STR,
    transform=STR,
    status=STR,
    stage=STR,
    error=STR,
    seconds=FLOAT,
    digest=STR,
    opset=INT,
    node_count=INT,
    graph_inputs=STRS,
    graph_outputs=STRS,
    dropped_inputs=STRS,
    onnx_path=STR,
    cached=BOOL,
    warnings=STRS,
    float_to_int_casts=STRS,
    invalidated_by=STRS,
    random_ops=STRS,
    unordered_outputs=Keyed("output", INT),
    cache=STR,
)

TOLERANCES = record(
    rtol=FLOAT,
    atol=FLOAT,
    per_output=Keyed("output", ListOf(FLOAT)),  # output -> [rtol, atol]
    output_masks=Keyed("output", STR),
)

EXPORT_CONTROL_RESULT = record(exporter=STR, ran=BOOL, ok=BOOL, reason=STR, stage=STR, headline=STR, **{"for": STRS})

CONTROL = record(
    kind=STR,  # one of judge.vocabulary.CONTROL_KINDS
    ran=BOOL,
    because=STR,
    probes=STRS,
    reason=STR,
    candidate=STR,  # a fact control: the candidate it ran
    agrees=BOOL,
    evidence=STR,
    results=Keyed("failed_exporter", EXPORT_CONTROL_RESULT),  # an export control
    **{"for": STR},
)

VALUE = record(name=STR, shape=ListOf(Dim()))

NODE = record(
    name=STR,
    op_type=STR,
    attributes=Keyed("attribute", Attribute()),
    inputs=ListOf(VALUE),
    outputs=ListOf(VALUE),
    module=STR,
    source=STR,
    relative_error=FLOAT,
    value=STR,
)

LOCALIZATION = record(
    status=STR,  # one of judge.vocabulary.LOCALIZATION_STATUSES
    reason=STR,
    reference=STR,
    candidate=STR,
    probe=STR,
    culprit=NODE,
    suspects=ListOf(NODE),
    compared=INT,
    divergent=INT,
    reproduced=BOOL,
    repro=STR,
    optimizer=STR,
    seconds=FLOAT,
    note=STR,
    cached=BOOL,
)

REPOSITORY = record(root=STR, commit=STR, dirty=BOOL, same_as=STR)

ENVIRONMENT = record(
    onnxruntime=STR,
    ort_providers=STRS,
    ort_build=STR,
    ort_distributions=STRS,
    torch_cuda=STR,
    torch_cudnn=INT,
    repositories=Keyed("repository", REPOSITORY),
    variables=Keyed("variable", STR),
)

FULL_COMPARISON = record(
    role=STR,
    against=STR,
    reason=STR,
    count=INT,
    rtol=FLOAT,
    atol=FLOAT,
    identical=BOOL,
    shape=ListOf(INT),
    mismatched=INT,
    max_abs=FLOAT,
    mean_abs=FLOAT,
    worst_index=ListOf(INT),
)

STRUCTURED: dict[str, dict[str, Type]] = {
    "runs": {
        "versions": Keyed("package", STR),
        "backends_skipped": Keyed("backend", STR),
        "phase_seconds": Keyed("phase", FLOAT),
        "environment": ENVIRONMENT,
    },
    "cases": {
        "exports": Keyed("export", EXPORT),
        "expect": Expect(),
        "tolerances": TOLERANCES,
        "localization": Keyed("localized", LOCALIZATION),
        "controls": Keyed("control", CONTROL),
    },
    "tensors": {
        "full": FULL_COMPARISON,  # an output too large to store whole: the worker's comparison of all of it
    },
}


def dtype(table: str, column: str) -> Any:
    return STRUCTURED[table][column].dtype()


def encode(table: str, column: str, value: Any, strict: bool = True) -> Any:
    """The stored form of a column's Python value; ``strict``: refuse fields the type does not declare."""
    try:
        return STRUCTURED[table][column].encode(value, strict)
    except ColumnValueError as exc:
        raise ColumnValueError(f"{table}.{column}: {exc}") from None


def decode(table: str, column: str, value: Any) -> Any:
    return STRUCTURED[table][column].decode(value)


def conform(kind: Type, value: Any) -> Any:
    """``value`` with the fields its type declares (others left out): a value this difftest did not write itself
    (a cache entry an older difftest made) before it goes into a row."""
    return kind.decode(kind.encode(value, strict=False))


def decode_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its structured columns as the Python values the stages use."""
    for column, kind in STRUCTURED.get(table, {}).items():
        if column in row:
            row[column] = kind.decode(row[column])
    return row


def from_json_text(table: str, column: str, text: str | None) -> Any:
    """The old layout: the column's value as JSON text. The stored form of what it says (fields this difftest no
    longer declares are left out); raises ColumnValueError on text that is not what difftest wrote."""
    if text is None:
        return None
    try:
        value = json.loads(text, parse_constant=_constant)
    except ValueError:
        raise ColumnValueError(f"{table}.{column}: not JSON") from None
    if column != "expect" and not isinstance(value, dict):
        raise ColumnValueError(f"{table}.{column}: not the JSON object difftest wrote")
    return encode(table, column, value, strict=False)


def _constant(name: str) -> float:
    return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}[name]
