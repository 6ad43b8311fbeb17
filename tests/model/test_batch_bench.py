"""bench/batch.py runs the service's network on batches of distinct photos, one call per batch, and its
table gives each batch's time per photo against batch 1 (above 1.00x: batching saves time)."""
import numpy as np
import pytest

from model.quantize import int8_path
from model.upscaler import DEFAULT_WEIGHTS

pytest.importorskip("openvino", reason="the bench measures the OpenVINO 8-bit path")


@pytest.mark.skipif(not int8_path(DEFAULT_WEIGHTS).is_file(), reason="no shipped int8 model")
def test_each_batch_is_one_call_on_that_many_distinct_photos(monkeypatch):
    from bench import batch
    from bench.speed import load_shipped

    up, _ = load_shipped(None, 512, precision=None)
    assert up.rgb8, "the default on this CPU should be the 8-bit OpenVINO path"
    body, calls = up._body(up.precision, rgb8=True), []
    monkeypatch.setattr(up, "_body", lambda *a, **k: lambda x: calls.append(x.copy()) or body(x))
    results = batch.measure(up, sizes=[24], batches=[1, 3], runs=1)
    # warm-up and one timed round, each: batch 1, batch 3, then the whole upscale of the first photo
    # (its one tile crop is the photo: 24² fits in a 512 tile)
    assert [c.shape for c in calls] == [(1, 24, 24, 3), (3, 24, 24, 3), (1, 24, 24, 3)] * 2
    three = calls[1]
    assert not any(np.array_equal(three[i], three[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    assert np.array_equal(calls[0][0], three[0]) and np.array_equal(calls[2][0], three[0])
    (row,) = results
    assert row["size"] == 24 and all(row[k] > 0 for k in (1, 3, "upscale"))


def test_the_table_gives_time_per_photo_against_batch_one():
    from bench.batch import table

    rows = [{"size": 128, 1: 8.0, 4: 6.4, "upscale": 10.0}]
    assert table(rows, [1, 4]).splitlines() == [
        "| photo | network ms per photo: batch 1 | batch 4 (x batch 1) | whole upscale of one photo, ms |",
        "|---|---:|---:|---:|",
        "| 128² | 8.00 | 6.40 (1.25x) | 10.00 |"]
