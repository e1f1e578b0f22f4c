"""examples/ray/paw_over_parquet.py in Ray's local mode: every row answered as f.batch answers
it, with one interpreter per worker (rows matched by their id column: Ray does not promise
which output file holds which rows). Needs ray[data] (installed by .ci/run)."""

import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

import paw
from test_paw import INPUTS  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ray" / "paw_over_parquet.py"


def load_example():
    spec = importlib.util.spec_from_file_location("paw_over_parquet", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def local_ray(fresh_store):
    # Three slots: two workers and one for reading and writing (Ray schedules slots, not cores).
    ray.init(
        num_cpus=3,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PAW_HOME": str(fresh_store)}},
    )
    yield
    ray.shutdown()


def test_a_parquet_file_answered_by_two_workers(program, local_ray, tmp_path):
    compiled, _ = program
    rows = [f"{text} ({i})" for i, text in enumerate(INPUTS * 5)]
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(len(rows))), "text": rows}), source)
    destination = tmp_path / "out"

    load_example().run(compiled.id, str(source), str(destination), workers=2, batch_size=6, blocks=4)

    out = pq.read_table(destination).sort_by("id").to_pydict()
    assert out["id"] == list(range(len(rows)))
    assert out["text"] == rows
    assert out["output"] == paw.function(compiled.id).batch(rows)
