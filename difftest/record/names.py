"""Names of the pseudo-backends whose rows the tensors table holds beside real backends."""

RANKED = "ranked"  # the values behind index outputs (ArgMax/TopK inputs), see ``ranked``
INPUTS = "input"  # each probe's input arrays


def slug(case_id: str) -> str:
    """A file name for a case id: readable, and unique through the full hash of the id (a short hash collides
    within a few thousand generated names, and one case's files would overwrite another's)."""
    import hashlib

    readable = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case_id.replace("::", "__"))[:80]
    return f"{readable}-{hashlib.sha256(case_id.encode()).hexdigest()[:32]}"
