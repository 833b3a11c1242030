"""The nightly stage: runs compared with each other and split across machines.

- ``changes``: what changed between a baseline run and a new one (new, fixed, changed failures; candidates added
  or removed), as markdown and HTML;
- ``shards``: a run split across jobs and merged back, refusing shards run with different settings.

May import: record, judge, report.
"""
