"""Names of the pseudo-backends whose rows the tensors table holds beside real backends."""

RANKED = "ranked"  # the values behind index outputs (ArgMax/TopK inputs), see ``ranked``
INPUTS = "input"  # each probe's input arrays
