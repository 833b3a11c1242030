"""The export stage: from a PyTorch model to an ONNX graph.

- ``exporter``: the dynamo and TorchScript exporters behind one call, with what they warned, the graph's facts
  (inputs kept, opset, casts, unordered outputs) and the user's own names in their errors;
- ``transforms``: named graph transforms usable as a candidate setting (``ort-cpu[transform=onnxslim]``);
- ``onnx_file``: the user's own ONNX file as the export a case runs (bound to the model's inputs and outputs by
  name, then position), and the user's dynamic-axis names put back on difftest's own exports;
- ``messages``: the one line of an exporter's message that matters (its boilerplate left out);
- ``float64``: an ONNX graph widened to float64, the oracle of a bare ONNX file;
- ``cache``: exports kept across runs, keyed on everything an export depends on and verified when read.

May import: record, suite.
"""
