"""bench/ceiling.py times the network on exactly the crops the upscale runs, and its table divides
the right way round (peer ms / ours: above 1 is faster than the peer)."""
import numpy as np
import pytest

from model.quantize import int8_path
from model.tiling import plan_tiles
from model.upscaler import DEFAULT_WEIGHTS

pytest.importorskip("openvino", reason="the bench measures the OpenVINO 8-bit path")


@pytest.mark.skipif(not int8_path(DEFAULT_WEIGHTS).is_file(), reason="no shipped int8 model")
def test_the_network_runs_every_tile_crop_of_the_photo(monkeypatch):
    from bench import ceiling
    from bench.speed import load_shipped

    up, _ = load_shipped(None, 512, precision=None)
    assert up.rgb8, "the default on this CPU should be the 8-bit OpenVINO path"
    seen = []
    body = up._body(up.precision, rgb8=True)
    monkeypatch.setattr(up, "_body", lambda *a, **k: lambda x: seen.append(x.shape) or body(x))
    img = np.random.default_rng(0).integers(0, 256, (600, 300, 3), dtype=np.uint8)
    run, count, crop = ceiling.network_alone(up, img)
    tiles, expected_crop = plan_tiles(600, 300, 512, up.margin)
    assert (count, crop) == (len(tiles), expected_crop) == (2, expected_crop)
    run(img)
    assert seen == [(1, *expected_crop, 3)] * 2


def test_the_table_gives_peer_over_ours_and_the_rest():
    from bench.ceiling import table

    row = {"size": 512, "crops": 1, "crop": (512, 512), "peer": 200.0, "upscale": 50.0, "network": 40.0,
           "peer_min": 180.0, "upscale_min": 45.0, "network_min": 30.0}
    assert table([row]).splitlines()[2] == (
        "| 512² (1 crop of 512x512) | 200.0 | 50.0 (4.00x) | 40.0 (5.00x) | 10.0 (20%) |")
    assert table([row], "_min").splitlines()[2] == (
        "| 512² (1 crop of 512x512) | 180.0 | 45.0 (4.00x) | 30.0 (6.00x) | 15.0 (33%) |")
