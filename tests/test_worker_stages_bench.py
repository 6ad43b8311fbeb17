"""bench/service.py's reading of the worker's stage times off its /metrics (job_overhead and drain
print them): the exact series the worker serves, parsed and differenced into mean ms per stage."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.service import read_worker_stages, stage_means
from shared import metrics


def worker_text(stages: dict[str, list[float]], model: dict[tuple[str, str], list[float]]) -> str:
    """Prometheus text as the worker serves it: the real metrics' names, labels and buckets."""
    registry = CollectorRegistry()
    stage = Histogram("portraits_worker_stage_seconds", "", ["stage"], buckets=metrics.STAGE_BUCKETS,
                      registry=registry)
    upscale = Histogram("portraits_model_seconds", "", ["model", "version", "device"], registry=registry)
    for name, times in stages.items():
        for seconds in times:
            stage.labels(name).observe(seconds)
    for (name, version), times in model.items():
        for seconds in times:
            upscale.labels(name, version, "cpu").observe(seconds)
    return generate_latest(registry).decode()


def test_the_worker_series_are_read_per_stage_with_every_model_series_summed():
    text = worker_text({"store": [0.02, 0.04], "read": [0.001]},
                       {("espcn_rb_x4", "2.0.0"): [0.1], ("espcn_x4", "1.1.0"): [0.3]})
    got = read_worker_stages(text)
    assert set(got) == {"store", "read", "model"}
    assert got["store"][1] == 2 and abs(got["store"][0] - 0.06) < 1e-9
    assert got["model"][1] == 2 and abs(got["model"][0] - 0.4) < 1e-9
    assert read_worker_stages("") == {}  # a worker that has run nothing yet


def test_means_are_per_run_between_two_readings_in_the_order_a_job_goes():
    before = read_worker_stages(worker_text({"store": [0.5], "encode": [0.1]}, {("m", "1"): [1.0]}))
    after = read_worker_stages(worker_text({"store": [0.5, 0.02, 0.04], "encode": [0.1, 0.01, 0.03],
                                            "record": [0.002, 0.004]}, {("m", "1"): [1.0, 0.1, 0.3]}))
    means = stage_means(before, after)
    assert list(means) == ["model", "encode", "store", "record"]  # not the readings' order
    expected = {"model": 200.0, "encode": 20.0, "store": 30.0, "record": 3.0}  # the earlier runs left out
    assert all(abs(means[stage] - ms) < 1e-6 for stage, ms in expected.items()), means
    assert stage_means(after, after) == {}  # nothing ran in between
