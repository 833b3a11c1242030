"""The localize stage: which layer? The first ONNX node whose output diverges while its inputs agree, against
PyTorch eager or another runtime on the same graph, confirmed by running the node alone (``divergence``).

May import: record, suite, export, backends, judge.
"""
