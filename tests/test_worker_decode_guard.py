"""worker.decode_guard: a decoder that crashes, hangs or lies fails the decode with a clear
ImageDecodeError (a permanent job failure), quickly, and the calling process carries on."""
from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest

from model.images import ImageDecodeError, ImageTooLargeError, decode_image
from tests.hostile import decoders
from tests.imagegen import encode, synthetic_portrait
from worker.decode_guard import DecoderCrashed, DecoderFailed, DecoderTimedOut, decode_isolated


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
    assert not _decoder_processes()  # killed and reaped, not left behind


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
    fds = len(os.listdir("/proc/self/fd"))
    for decoder in (decode_image, decoders.aborts, decoders.refuses) * 5:
        try:
            decode_isolated(data, None, 30, decode=decoder)
        except ImageDecodeError:
            pass
    assert len(os.listdir("/proc/self/fd")) == fds
    assert not _decoder_processes()


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
    from model.images import encode_png

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
