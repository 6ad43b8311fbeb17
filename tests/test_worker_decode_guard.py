"""worker.decode_guard: a decoder that crashes, hangs or lies fails the decode with a clear
ImageDecodeError (a permanent job failure), quickly, and the calling process carries on. The decoder
process serves image after image while it decodes well, and is replaced whenever it did anything else."""
from __future__ import annotations

import io
import os
import signal
import time

import numpy as np
import pytest

from model.images import ImageDecodeError, ImageTooLargeError, decode_image
from tests.hostile import decoders
from tests.imagegen import encode, synthetic_portrait
from worker import decode_guard
from worker.decode_guard import DecoderCrashed, DecoderFailed, DecoderTimedOut, decode_isolated, wait_idle


@pytest.fixture(scope="module", autouse=True)
def warm_forkserver():
    """Start the forkserver once, so that time limits below measure decodes, not its start-up."""
    decode_isolated(encode(synthetic_portrait(16)), None, 60)


def test_decodes_like_the_in_process_decoder():
    for array in (synthetic_portrait(48), np.arange(30 * 20 * 4, dtype=np.uint16).reshape(30, 20, 4)):
        data = encode(array) if array.dtype == np.uint8 else _png16(array)
        expected = decode_image(data, max_pixels=10_000)
        got = decode_isolated(data, 10_000, 30)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
        assert got.flags.c_contiguous and got.flags.writeable


def test_refusals_keep_their_type_and_message():
    data = encode(synthetic_portrait(64))
    with pytest.raises(ImageTooLargeError, match="MP limit"):
        decode_isolated(data, 1000, 30)
    with pytest.raises(ImageDecodeError, match="damaged or incomplete"):
        decode_isolated(data[:100], None, 30)
    with pytest.raises(ImageDecodeError, match=r"damaged or incomplete \(test\)"):
        decode_isolated(data, None, 30, decode=decoders.refuses)
    with pytest.raises(ImageTooLargeError, match="limit 7"):
        decode_isolated(data, 7, 30, decode=decoders.refuses_too_large)


@pytest.mark.parametrize("decoder, how", [(decoders.aborts, "killed by signal SIGABRT"),
                                          (decoders.segfaults, "killed by signal SIGSEGV"),
                                          (decoders.exits, "exit code 3")])
def test_a_crashing_decoder_fails_the_decode_not_the_caller(decoder, how):
    started = time.monotonic()
    with pytest.raises(DecoderCrashed, match=f"the image decoder crashed \\({how}\\)") as info:
        decode_isolated(b"anything", None, 30, decode=decoder)
    assert isinstance(info.value, ImageDecodeError)  # the pipeline fails such a job for good
    assert time.monotonic() - started < 5
    assert decode_isolated(encode(synthetic_portrait(8)), None, 30).shape == (8, 8, 3)  # still working


@pytest.mark.parametrize("decoder", [decoders.hangs, decoders.spins])
def test_a_hanging_decoder_is_killed_at_the_timeout(decoder):
    started = time.monotonic()
    with pytest.raises(DecoderTimedOut, match=r"did not finish within 0.5 s") as info:
        decode_isolated(b"anything", None, 0.5, decode=decoder)
    assert isinstance(info.value, ImageDecodeError)
    assert 0.5 <= time.monotonic() - started < 5
    ready = wait_idle()
    assert _decoder_processes() == [ready]  # killed and reaped, not left behind; a new one ready


def test_memory_errors_and_bugs_are_not_blamed_on_the_image():
    # Both may be transient (memory pressure) or ours (a bug): the pipeline retries them.
    with pytest.raises(MemoryError, match="ran out of memory"):
        decode_isolated(b"x", None, 30, decode=decoders.runs_out_of_memory)
    with pytest.raises(RuntimeError, match="KeyError"):
        decode_isolated(b"x", None, 30, decode=decoders.has_a_bug)


def test_the_parent_checks_what_the_child_announces():
    with pytest.raises(DecoderFailed, match="invalid result"):
        decode_isolated(b"x", 100, 30, decode=decoders.returns_a_lie)
    data = bytes(range(256)) * 16  # 4096 bytes → 64x64 echoed back
    got = decode_isolated(data, None, 30, decode=decoders.echoes)
    assert got.shape == (64, 64, 1) and np.array_equal(got.ravel(), np.frombuffer(data, np.uint8))


def test_many_decodes_leave_no_processes_or_descriptors_behind():
    data = encode(synthetic_portrait(32))
    decode_isolated(data, None, 30)
    wait_idle()
    fds = len(os.listdir("/proc/self/fd"))
    for decoder in (decode_image, decoders.aborts, decoders.refuses) * 5:
        try:
            decode_isolated(data, None, 30, decode=decoder)
        except ImageDecodeError:
            pass
    ready = wait_idle()
    assert len(os.listdir("/proc/self/fd")) == fds
    assert _decoder_processes() == [ready]  # the one decoder waiting for the next image, nothing else


def test_one_decoder_process_serves_image_after_image():
    data = encode(synthetic_portrait(24))
    decode_isolated(data, None, 30)
    first = wait_idle()
    for seed in range(5):
        expected = decode_image(encode(synthetic_portrait(24, seed=seed)))
        assert np.array_equal(decode_isolated(encode(synthetic_portrait(24, seed=seed)), None, 30), expected)
        assert wait_idle() == first  # no process per image


@pytest.mark.parametrize("decoder", [decoders.aborts, decoders.refuses, decoders.has_a_bug,
                                     decoders.returns_a_lie])
def test_a_decoder_that_did_anything_but_decode_well_is_replaced(decoder):
    data = encode(synthetic_portrait(16))
    decode_isolated(data, None, 30)
    before = wait_idle()
    with pytest.raises((ImageDecodeError, RuntimeError)):
        decode_isolated(data, 100, 30, decode=decoder)
    after = wait_idle()
    assert after != before and _decoder_processes() == [after]
    assert decode_isolated(data, None, 30).shape == (16, 16, 3)


def test_a_decoder_killed_while_idle_is_replaced_without_failing_the_next_image():
    data = encode(synthetic_portrait(16))
    decode_isolated(data, None, 30)
    victim = wait_idle()
    os.kill(victim, signal.SIGKILL)  # the kernel's OOM killer, or an operator, between two jobs
    while victim in _decoder_processes():  # reaped by the forkserver
        time.sleep(0.01)
    assert decode_isolated(data, None, 30).shape == (16, 16, 3)
    assert wait_idle() not in (None, victim)


def test_decoders_are_replaced_after_max_images(monkeypatch):
    monkeypatch.setattr(decode_guard, "MAX_IMAGES_PER_DECODER", 3)
    data = encode(synthetic_portrait(16))
    decode_isolated(data, None, 30)
    pids = []
    for _ in range(7):
        pids.append(wait_idle())
        decode_isolated(data, None, 30)
    assert len(set(pids)) >= 3 and max(pids.count(p) for p in pids) <= 3


def test_an_answer_to_another_request_is_refused():
    """An exploited decoder that writes an answer ahead, for the next request (another partner's image,
    perhaps), is caught by the request number and replaced."""
    data = encode(synthetic_portrait(16))
    decode_isolated(data, None, 30)
    before = wait_idle()
    with pytest.raises(DecoderFailed, match="answered request"):
        decode_isolated(data, None, 30, decode=decoders.answers_ahead)
    assert wait_idle() != before
    assert np.array_equal(decode_isolated(data, None, 30), decode_image(data))


def test_overhead_per_decode_is_small():
    data = encode(synthetic_portrait(64))
    timings = []
    for _ in range(10):
        started = time.perf_counter()
        decode_isolated(data, None, 30)
        timings.append(time.perf_counter() - started)
    median = sorted(timings)[len(timings) // 2]
    print(f"\ndecode_isolated on a 64x64 PNG: median {median * 1000:.1f} ms")
    assert median < 0.5  # ~15 ms on an idle 2-core box; generous for a shared one


def _decoder_processes() -> list[int]:
    """Pids of processes the forkserver has running (decoder children), from /proc."""
    from multiprocessing import forkserver

    server = forkserver._forkserver._forkserver_pid
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server:
                pids.append(int(entry))
    return pids


def _png16(array: np.ndarray) -> bytes:
    from model.png import encode_png

    return encode_png(array)


def test_the_child_only_lets_the_allowed_formats_through():
    from PIL import Image

    from tests.hostile.corpus import pil, rgb

    gif, png = pil(rgb().convert("P"), "GIF"), encode(synthetic_portrait(16))
    mpo = pil(rgb(), "MPO", save_all=True, append_images=[rgb(1)])
    allowed = "JPEG,PNG,WEBP,BMP,TIFF"
    with pytest.raises(ImageDecodeError, match=r"not an image in an accepted format \(JPEG, PNG, WEBP"):
        decode_isolated(gif, None, 30, formats=allowed)
    with pytest.raises(ImageDecodeError, match="not an image in an accepted format"):
        decode_isolated(png, None, 30, formats=["JPEG"])
    assert decode_isolated(gif, None, 30).shape[:2] == Image.open(io.BytesIO(gif)).size[::-1]
    assert decode_isolated(png, None, 30, formats=allowed).shape == (16, 16, 3)
    assert decode_isolated(mpo, None, 30, formats=["JPEG"]).shape == (32, 48, 3)  # a camera JPEG: 1st picture
    with pytest.raises(ImageTooLargeError):  # recognised, too large: the decoder's own message
        decode_isolated(png, 100, 30, formats=allowed)
