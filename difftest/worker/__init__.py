"""The run stage, the worker side: from a case to its recorded rows.

- ``pool``: worker processes: a preloaded template per slot forks a clean child per case (isolation by construction,
  timeouts, memory limits, crashes, tagged results, orphans killed through a child subreaper);
- ``task``: what a worker is given, the stage marker, seeding;
- ``case_run``: the run stage's records: a case's row (exactly the ``cases`` table's columns) and the case as it
  runs (what ran, what it produced, what was restored), with the recorder that turns it into table rows;
- ``execute``: one case end to end: build, reference, exports, probes, candidates, controls, localization;
- ``backend_run``: one backend on every probe, recorded; an export and its graph evidence recorded;
- ``controls``: automatic control candidates for failing ones (TF32 off, optimizations off, the reference
  runtime, the export without the case's rewrite); ``export_control``: the other exporter for a failed export;
  ``auto_localize``: localization within a budget;
- ``eager_ranked``: what eager's own index ops ranked (the independent evidence for ties);
- ``recorded_case``: ONNX test folders, whose reference is their recorded outputs;
- ``bare_onnx``: bare ONNX files, runtime against runtime, inputs generated from the graph or loaded;
- ``state_guard``: the model put back as it was after every stage; ``process_state``: what a case changed in its
  process (said on it; put back only in the in-process mode of ``difftest.check``); ``full_compare``: outputs too
  large to store compared in full where they live.

May import: record, suite, export, backends, judge, localize.
"""
