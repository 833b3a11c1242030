"""The suite stage: what to test.

- ``cases``: ``@case``, ``Case`` and the picklable ``CaseRef`` that names one; skipping a case;
- ``discover``: finding the cases in suite files and folders, ``-k`` selection;
- ``onnx_tests``: folders in the ONNX test format as cases with recorded outputs;
- ``onnx_files``: bare ONNX files as cases (runtime against runtime, no PyTorch model);
- ``model_io``: how a case's model is called: its tensor inputs (containers flattened and named after their path),
  its outputs flattened and named, feeds as numpy arrays;
- ``probes``: the inputs a case is run on, derived from its example (``base``, ``alt``, ``ties``, ``shape`` …);
- ``graph_edit``: helpers for a case's own ONNX rewrite (``onnx_transform``);
- ``sources``: digests of a suite file and the user modules it imports (``--resume`` reruns what changed).

May import: nothing else in difftest (besides the leaf modules ``errors`` and ``exitcodes``).
"""
