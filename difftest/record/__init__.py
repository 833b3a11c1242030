"""The record stage: what a run leaves on disk, and the contract between the worker that writes it and everything
that reads it.

- ``tables``: the schemas of the ``runs``, ``cases``, ``tensors`` and ``comparisons`` tables, writing a case's rows
  as parquet parts (with a manifest), consolidating and reading them, encoding arrays into rows and back;
- ``columns``: the parquet struct and list types of the columns that hold nested records (a case's exports,
  controls, localization, tolerances and expect; the run's environment; a sampled output's full comparison), and
  the reader of runs that held them as JSON text;
- ``recorded``: one case's tensors rows as arrays, by backend × probe × output;
- ``names``: the names rows use for probe inputs and pseudo-backends, and file names for case ids.

May import: nothing else in difftest (besides the leaf modules ``errors`` and ``exitcodes``).
"""
