"""bench/rgb8_tail.py keeps measuring what it says: its rebuilt "before" path (the int8 graph with the
old NHWC output, and the old shuffle) and its one-thread finish give the service's output exactly."""
import argparse

import pytest

from model.quantize import int8_path
from model.upscaler import DEFAULT_WEIGHTS

pytest.importorskip("openvino", reason="the bench compares OpenVINO int8 graphs")


@pytest.mark.skipif(not int8_path(DEFAULT_WEIGHTS).is_file(), reason="no shipped int8 model")
def test_the_before_path_matches_the_service_and_the_table_has_both_rows():
    from bench import rgb8_tail

    table = rgb8_tail.run(argparse.Namespace(weights=DEFAULT_WEIGHTS, sizes=[40, 600], runs=1))
    # 600² is two tiles at tile 512: windows of the planes, not whole crops (run() exits on a difference)
    assert set(table) == {40, 600}
    assert {label for label, _ in table[40]} == {"now", "finish on one thread", "before (2670655)"}
