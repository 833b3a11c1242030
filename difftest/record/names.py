"""Names of the pseudo-backends whose rows the tensors table holds beside real backends."""

RANKED = "ranked"  # the values behind index outputs (ArgMax/TopK inputs), see ``judge.ranked``
INPUTS = "input"  # each probe's input arrays
EAGER_RANKED = "eager-ranked"  # what eager's own index ops ranked and gathered, see ``worker.eager_ranked``
ACCUMULATION = "accumulation"  # Σ|x| behind accumulated outputs, see ``judge.accumulation``
CAST_INPUTS = "cast_inputs"  # the values a float-to-integer Cast converts, see ``judge.casts``
RESEEDED = "reseeded"  # the reference rerun with another random seed, see ``judge.randomness``
# a failing candidate on the export without the case's own onnx_transform (the rewrite control, ``worker.controls``)
WITHOUT_REWRITE = "without_rewrite"
PSEUDO_BACKENDS = {
    INPUTS: "the probe's inputs",
    RANKED: "the values an index output ranked, from the graph",
    EAGER_RANKED: "what eager's own ArgMax/TopK/Sort ranked, and which outputs are their values or "
    "gathered by their indices (the evidence for ties)",
    ACCUMULATION: "Σ|x| behind an accumulated output, from the graph (the summation bound)",
    CAST_INPUTS: "the values a float-to-integer Cast converts, from the graph",
    RESEEDED: "the reference run again with another random seed (does the model sample?)",
    WITHOUT_REWRITE: "a failing candidate on the export without the case's own onnx_transform (the rewrite control: "
    "does the rewrite make the gap?)",
}


def pseudo_backend(name: str) -> str | None:
    """What a pseudo-backend's rows hold (``ranked:<export>`` included), or None for a backend that ran."""
    return PSEUDO_BACKENDS.get(name.split(":", 1)[0])


def slug(case_id: str) -> str:
    """A file name for a case id: readable, and unique through the full hash of the id (a short hash collides
    within a few thousand generated names, and one case's files would overwrite another's)."""
    import hashlib

    readable = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case_id.replace("::", "__"))[:80]
    return f"{readable}-{hashlib.sha256(case_id.encode()).hexdigest()[:32]}"
