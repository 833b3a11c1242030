"""The judge stage: where the verdict is decided. Pure functions of the recorded tables; the worker calls the same
code to decide which failing candidates deserve controls, so nothing here imports the worker.

- ``compare``: the numbers behind a verdict (errors, ULPs, tolerances by dtype);
- ``classify``: one output of one probe to a label with its evidence, rule by rule (``layout``, ``ties``,
  ``accumulation`` and ``masks`` hold the rules that need more than two arrays; ``ranked`` and ``accumulation``
  also define the evidence the worker extracts from a graph for them);
- ``probe_rules``: verdicts that need several probes (a frozen input, a shape-specialized graph);
- ``blame``: which runtime, exporter or rewrite is at fault, from the controls and the other candidates
  (``casts`` defines the evidence of a float-to-integer Cast: the values it converts, so undefined behaviour is
  claimed only where it happens; ``precision`` holds a result at a runtime's reduced precision, bf16 or fp16, to
  that precision's own tolerance once its full-precision control agrees);
- ``completeness``: every output of every probe the reference recorded judged once per candidate ("results lost");
- ``randomness``: outputs of a model that samples (eager changes them under another seed), judged by distribution;
- ``next_step``: what to do about a failing verdict, when the recorded evidence says (``.eval()``, the
  ``output_masks`` to declare, the other exporter), and the training-mode blame;
- ``vocabulary``: the one table of labels (passes / warns / fails, family), statuses, stages, blame kinds and rules;
- ``verdicts``: a case's recorded tensors to comparison rows; ``expectations``: comparisons held against what the
  case declared, as outcomes; ``waivers``: accepted known failures.

May import: record, suite, export, backends.
"""
