"""Every case that ran reaches the tables, whatever its name: a property over random case names with long
shared prefixes (part files are keyed by the full hash of the id; a short hash collided within thousands)."""

import tempfile
from pathlib import Path
from types import SimpleNamespace

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from difftest.record.names import slug
from difftest.record.tables import PartManifest, consolidate, tensor_row

NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30
)


@settings(max_examples=40, deadline=None)
@given(
    prefix=st.sampled_from(["", "x" * 200, "case_with_a_long_shared_prefix_" * 4, "ünïcode/::<>"]),
    names=st.lists(NAME, min_size=1, max_size=40, unique=True),
)
def test_every_case_that_ran_is_in_the_tables(prefix, names):
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        manifest = PartManifest(run_dir)
        expected = {}
        for name in names:
            ref = SimpleNamespace(id=f"suite::{prefix}{name}", suite="suite", name=prefix + name, path="suite.py")
            key = slug(ref.id)
            assert key not in expected, "two case ids share a part key"
            expected[key] = ref
            task = SimpleNamespace(run_id="r", ref=ref)
            manifest.write(
                key,
                ref.id,
                {"run": "r", "case": ref.id, "status": "ok"},
                [tensor_row(task, "torch", "base", output="output", index=0, array=np.ones(2))],
            )
        assert manifest.verify(expected) == []
        for table in ("cases", "tensors"):
            consolidate(run_dir, table, expected)
        assert sorted(pl.read_parquet(run_dir / "cases.parquet")["case"].to_list()) == sorted(
            r.id for r in expected.values()
        )
        assert pl.read_parquet(run_dir / "tensors.parquet")["case"].n_unique() == len(names)
