"""Names of the pseudo-backends whose rows the tensors table holds beside real backends."""

RANKED = "ranked"  # the values behind index outputs (ArgMax/TopK inputs), see ``ranked``
INPUTS = "input"  # each probe's input arrays


def slug(case_id: str) -> str:
    """A file name for a case id: readable, and unique through a short hash."""
    import hashlib

    readable = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case_id.replace("::", "__"))[:80]
    return f"{readable}-{hashlib.sha1(case_id.encode()).hexdigest()[:6]}"
