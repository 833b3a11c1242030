"""What the workers printed, summarized: the same warning from 275 logs is one line with its count."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..export.exporter import ANSI

HEAD_BYTES = 64 * 1024
_NOISE = [
    (re.compile(r"^[WIEF]\d{4} \d\d:\d\d:\d\d\.\d+ \d+ "), ""),  # glog prefix: W1126 03:31:17.173000 7360
    (re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)? "), ""),  # ORT's timestamp
    (re.compile(r"\[[WE]:onnxruntime:[^\]]*\]"), "[onnxruntime]"),
    (re.compile(r"0x[0-9a-f]+"), "0x…"),
    (re.compile(r"(/[\w.-]+)+/"), ""),  # paths: keep the file name
]
_WARNING = re.compile(r"warn|\bW:onnxruntime|deprecat", re.IGNORECASE)


def warnings_digest(run_dir: Path, cases: list[dict[str, Any]], limit: int = 12) -> list[dict[str, Any]]:
    """The distinct warning lines in the cases' logs (ANSI codes, timestamps, pids and paths taken out), each
    with the number of cases whose log has it, most widespread first."""
    seen: dict[str, set[str]] = defaultdict(set)
    from ..record.tables import run_artifact

    for case in cases:
        path = run_artifact(run_dir, case.get("log"))
        if path is None:
            continue
        with path.open("rb") as handle:
            text = handle.read(HEAD_BYTES).decode("utf-8", errors="replace")
        for line in ANSI.sub("", text).splitlines():
            if not _WARNING.search(line):
                continue
            for pattern, replacement in _NOISE:
                line = pattern.sub(replacement, line)
            line = line.strip()[:300]
            if line:
                seen[line].add(case["case"])
    ranked = sorted(seen.items(), key=lambda item: (-len(item[1]), item[0]))[:limit]
    return [{"text": text, "cases": len(where), "example": sorted(where)[0]} for text, where in ranked]
