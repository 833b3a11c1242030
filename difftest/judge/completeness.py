"""No result lost on the way: every output of every probe the reference recorded is judged exactly once per candidate.

A result can be lost before any rule looks at it: two outputs whose names sanitize alike (dict keys ``a-b`` and
``a_b``, in runs from before names were made unique) are stored under one name, so one of them is never judged;
a probe a candidate never recorded would simply have no row. :func:`lost_results` holds what the reference
recorded (the raw tensors rows, duplicates included) against what was judged for a candidate and says what is
missing; the judge turns that into a failing verdict ("results lost") instead of a pass over what remained.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

Key = tuple[str, str]


def lost_results(
    tensors: list[dict[str, Any]],
    judged: dict[Key, Any],
    reference: str,
    candidate: str,
    declared: list[str] | None = None,
) -> dict[Key, str]:
    """(probe, output or "*") -> why that result was lost, for one candidate whose verdicts are ``judged``.

    ``declared`` is the case's output names as the worker flattened them (the ``cases`` row's ``outputs``)."""
    if ("*", "*") in judged:  # the candidate failed or was skipped as a whole: nothing per output to judge
        return {}
    ref_rows = _outputs_by_probe(tensors, reference)
    cand_rows = _outputs_by_probe(tensors, candidate)
    lost: dict[Key, str] = {}
    collided = sorted(name for name, n in Counter(declared or []).items() if n > 1)
    for probe, names in ref_rows.items():
        if (probe, "*") in judged:  # the probe was judged as a whole (it failed, or the reference refused it)
            continue
        if not any(p == probe for p, _ in judged):
            lost[(probe, "*")] = (
                f"the reference recorded {len(names)} output(s) on the {probe!r} probe and none of "
                f"them was judged for {candidate} (it recorded no result there)"
            )
            continue
        counts = Counter(names)
        for name, n in counts.items():
            if n > 1 or name in collided:
                lost[(probe, name)] = (
                    f"{max(n, 2)} outputs of the reference are stored under the one name {name!r} "
                    "(their names collide), so only one of them could be judged"
                )
            elif (probe, name) not in judged:
                lost[(probe, name)] = f"the reference's output {name!r} was not judged"
        for name, n in Counter(cand_rows.get(probe, [])).items():
            if n > 1 and (probe, name) not in lost:
                lost[(probe, name)] = (
                    f"{n} outputs of {candidate} are stored under the one name {name!r} (their "
                    "names collide), so only one of them could be judged"
                )
    return lost


def _outputs_by_probe(tensors: list[dict[str, Any]], backend: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for t in tensors:
        if t["backend"] == backend and t["status"] == "ok" and t["output"] is not None and not t.get("rerun"):
            found.setdefault(t["probe"], []).append(t["output"])
    return found


def lost_evidence(why: str, candidate: str, judged: Any = None) -> str:
    """The evidence of a "results lost" verdict; what was judged under that key before, if anything, is kept."""
    text = (
        f"results lost: {why}. difftest cannot vouch for {candidate} on what it did not judge, so this "
        "fails; rerun the case with this version of difftest (output names are now unique)"
    )
    if judged is not None:
        text += f". What was judged under this name: {judged.label}: {judged.evidence}"
    return text
