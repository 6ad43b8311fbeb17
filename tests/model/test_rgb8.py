"""The 8-bit path (model/rgb8.py): same pixels as the float path, to one level, for every channel layout."""
from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import openvino_backend as ov_backend  # noqa: E402
from model import rgb8  # noqa: E402
from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402
from tests.model.test_upscaler import image, make_net  # noqa: E402

pytestmark = pytest.mark.skipif(not ov_backend.available(), reason="the 8-bit path runs on OpenVINO")


def test_folded_net_reads_8bit_rgb_and_emits_levels():
    net, _ = make_net("luma_blocks")
    rgb = np.random.default_rng(0).integers(0, 256, (1, 3, 12, 10)).astype(np.float32)
    y = (rgb * np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)).sum(1, keepdims=True) / 255
    with torch.no_grad():
        folded = rgb8.fold_rgb8(net.body)(torch.from_numpy(rgb))
        ref = net.body(torch.from_numpy(y)) * 255
    assert torch.allclose(folded, ref, atol=1e-3)


def test_shuffle_round_is_pixel_shuffle_in_quarter_levels():
    r = np.random.default_rng(1).normal(0, 20, (16, 5, 7)).astype(np.float32)
    ref = torch.nn.functional.pixel_shuffle(torch.from_numpy(r)[None], 4)[0, 0].numpy()
    assert np.array_equal(rgb8.shuffle_round(r, 4, rgb8.Scratch()), np.rint(ref * 4).astype(np.int16))


def test_shuffle_round_reads_a_window_of_the_planes_and_reuses_its_buffers():
    # The upscaler passes each tile's valid centre: a strided window of the graph's (s², h, w) output.
    r = np.random.default_rng(2).normal(0, 20, (16, 12, 15)).astype(np.float32)
    window = r[:, 2:9, 3:14]
    ref = torch.nn.functional.pixel_shuffle(torch.from_numpy(np.ascontiguousarray(window))[None], 4)[0, 0]
    scratch = rgb8.Scratch()
    first = rgb8.shuffle_round(r, 4, scratch).copy()
    assert np.array_equal(rgb8.shuffle_round(window, 4, scratch), np.rint(ref.numpy() * 4).astype(np.int16))
    assert np.array_equal(rgb8.shuffle_round(r, 4, scratch), first)  # a larger call after a smaller one
    with pytest.raises(ValueError, match="16 sub-pixel planes"):
        rgb8.shuffle_round(r[:9], 4, scratch)


def test_finish_keeps_the_bicubic_overshoot_the_residual_pulls_back():
    # A white bar on black: bicubic rings past 255 and below 0 next to it. A residual that cancels the
    # ringing must give the float result there; an 8-bit base would have clipped first (up to 19 levels).
    crop = np.zeros((16, 16, 3), np.uint8)
    crop[:, 6:9] = 255
    up = cv2.resize(crop.astype(np.float32), (64, 64), interpolation=cv2.INTER_CUBIC)
    assert up.max() > 265 and up.min() < -10
    r = np.where(up > 255, 255 - up, np.where(up < 0, -up, 0)).mean(axis=2).astype(np.float32)  # levels
    sub = torch.nn.functional.pixel_unshuffle(torch.from_numpy(r)[None, None], 4)[0].numpy()
    out, scratch = np.empty((64, 64, 3), np.uint8), rgb8.Scratch()
    rgb8.finish_tile(out, crop, rgb8.shuffle_round(sub, 4, scratch), (0, 0), 4, scratch)
    expected = np.clip(np.rint(up + r[..., None]), 0, 255)
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("tile,backend", [(1000, "openvino"), (13, "openvino"), (13, "torch")])
def test_8bit_path_equals_the_float_path(channels, tile, backend):
    net, color = make_net("luma_blocks")
    img = image(45, 38, channels, np.uint8, seed=channels)
    img[5:15, 5:9] = 255  # saturated patches: the overshoot case
    img[20:30, 20:24] = 0
    fast = Upscaler(net, color=color, device="cpu", tile=tile, precision="fp32", backend=backend)
    ref = Upscaler(net, color=color, device="cpu", tile=1000, precision="fp32", backend="torch",
                   fast_8bit=False)
    assert fast.rgb8 and not ref.rgb8
    a, b = fast.upscale(img), ref.upscale(img)
    assert a.shape == b.shape == (180, 152, channels) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).max() <= 1


def test_buffers_are_reused_across_sizes_and_16bit_photos_take_the_float_path():
    net, color = make_net("luma_residual")
    up = Upscaler(net, color=color, device="cpu", tile=24, precision="fp32", backend="openvino")
    ref = Upscaler(net, color=color, device="cpu", tile=1000, precision="fp32", backend="torch",
                   fast_8bit=False)
    for size in ((50, 41), (20, 17), (60, 60)):  # a smaller photo after a larger one, then a larger
        img = image(*size, 3, np.uint8, seed=size[0])
        assert np.abs(up.upscale(img).astype(int) - ref.upscale(img)).max() <= 1
    img16 = image(30, 20, 3, np.uint16)
    assert np.abs(up.upscale(img16).astype(int) - ref.upscale(img16)).max() <= 2  # float path, 16-bit levels


def test_an_int8_file_of_the_older_float_graph_is_ignored(tmp_path, caplog):
    from model.quantize import GRAPH, META, int8_path, load_int8

    shipped = int8_path(DEFAULT_WEIGHTS)
    if not shipped.is_file():
        pytest.skip(f"no shipped int8 model at {shipped}")
    shutil.copy(DEFAULT_WEIGHTS, tmp_path / DEFAULT_WEIGHTS.name)
    model = ov_backend.core().read_model(shipped)  # (memory-maps its .bin: write elsewhere)
    assert model.get_rt_info([META, "graph"]).astype(str) == GRAPH
    model.set_rt_info("float luma", [META, "graph"])
    import openvino as ov

    ov.save_model(model, tmp_path / shipped.name, compress_to_fp16=False)
    with caplog.at_level(logging.WARNING, logger="model.quantize"):
        assert load_int8(tmp_path / DEFAULT_WEIGHTS.name) is None
    assert "holds the float luma graph" in caplog.text


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_the_tail_split_among_threads_equals_it_on_one(channels):
    # 3 threads: bands of uneven height, and more parts than a 2x shuffle has row phases.
    rng = np.random.default_rng(3)
    crop = rng.integers(0, 256, (23, 29, channels), dtype=np.uint8)
    planes = rng.normal(0, 30, (16, 23, 29)).astype(np.float32)[:, 2:21, 3:26]  # a tile's window
    outs = []
    for on in (rgb8.SERIAL, rgb8.Workers(3)):
        out, scratch = np.zeros((76, 92, channels), np.uint8), rgb8.Scratch()
        rgb8.finish_tile(out, crop, rgb8.shuffle_round(planes, 4, scratch, on=on), (8, 12), 4, scratch, on=on)
        outs.append(out)
    assert np.array_equal(*outs) and outs[0].any()


def test_workers_run_every_part_and_raise_what_one_raised():
    done = []
    rgb8.Workers(2).each(done.append, 5)
    assert sorted(done) == [0, 1, 2, 3, 4]

    def fail_on_3(part):
        if part == 3:
            raise RuntimeError("part 3")

    with pytest.raises(RuntimeError, match="part 3"):
        rgb8.Workers(2).each(fail_on_3, 5)

    # A part that fails early does not return control while another still runs.
    finished = []

    def fail_first_finish_late(part):
        if part == 0:
            raise RuntimeError("part 0")
        time.sleep(0.2)
        finished.append(part)

    with pytest.raises(RuntimeError, match="part 0"):
        rgb8.Workers(2).each(fail_first_finish_late, 2)
    assert finished == [1]
    big = rgb8.SPLIT_MIN_PIXELS
    assert rgb8.workers(2, big) is rgb8.workers(2, 4 * big) and rgb8.workers(2, big).count == 2
    assert rgb8.workers(2, big - 1) is rgb8.SERIAL and rgb8.workers(1, big) is rgb8.SERIAL
