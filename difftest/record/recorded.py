"""Look up a case's recorded tensors by backend, probe, output and rerun (decoded once)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .tables import decode


class Recorded:
    """A case's tensors rows, looked up by backend, probe, output and rerun. Every stored tensor is checked
    against the digest recorded with it; one that does not match (the run folder was altered or damaged) is
    kept out of judging and listed in ``corrupted``."""

    def __init__(self, tensors: list[dict[str, Any]]):
        self.rows: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        self.failures: dict[tuple[str, str], dict[str, Any]] = {}  # (backend, probe or "*") -> row
        self.order: dict[str, list[str]] = {}  # backend -> probes in recorded order
        self.corrupted: dict[tuple[str, str], str] = {}  # (backend, probe) -> which output
        self._arrays: dict[tuple[str, str, str, int], np.ndarray] = {}
        for t in tensors:
            backend, probe = t["backend"], t["probe"]
            if probe != "*" and probe not in self.order.setdefault(backend, []):
                self.order[backend].append(probe)
            if t["status"] == "ok" and t["output"] is not None:
                if not _digest_holds(t):
                    self.corrupted.setdefault((backend, probe), t["output"])
                    continue
                self.rows[(backend, probe, t["output"], t["rerun"] or 0)] = t
            elif t["status"] != "ok":
                self.failures.setdefault((backend, probe), t)

    def has(self, backend: str) -> bool:
        return backend in self.order or any(key[0] == backend for key in self.failures)

    def failure(self, backend: str, probe: str = "*") -> dict[str, Any] | None:
        return self.failures.get((backend, probe))

    def probes(self, backend: str) -> list[str]:
        return list(self.order.get(backend, []))

    def outputs(self, backend: str, probe: str) -> list[str]:
        found = [
            (row["index"] if row["index"] is not None else 0, key[2])
            for key, row in self.rows.items()
            if key[0] == backend and key[1] == probe and key[3] == 0
        ]
        return [name for _, name in sorted(found)]

    def row(self, backend: str, probe: str, output: str, rerun: int = 0) -> dict[str, Any] | None:
        return self.rows.get((backend, probe, output, rerun))

    def array(self, backend: str, probe: str, output: str, rerun: int = 0) -> np.ndarray | None:
        key = (backend, probe, output, rerun)
        if key not in self._arrays:
            row = self.rows.get(key)
            if row is None:
                return None
            self._arrays[key] = decode(row)
        return self._arrays[key]

    def reruns(self, backend: str, probe: str, output: str) -> list[np.ndarray]:
        found = []
        rerun = 1
        while (array := self.array(backend, probe, output, rerun)) is not None:
            found.append(array)
            rerun += 1
        return found

    def sampled(self, backend: str, probe: str, output: str) -> bool:
        row = self.rows.get((backend, probe, output, 0))
        return bool(row and row.get("sampled"))


def _digest_holds(row: dict[str, Any]) -> bool:
    """Does a row's stored data still match the digest recorded when it was made? (Samples of huge tensors
    carry the full tensor's digest, which the sample cannot be checked against.)"""
    import hashlib

    if row.get("sampled") or row.get("data") is None or not row.get("digest"):
        return True
    return hashlib.blake2b(row["data"], digest_size=16).hexdigest() == row["digest"]
