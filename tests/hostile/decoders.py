"""Misbehaving decoders for tests/test_worker_decode_guard.py. They run in the guard's child process,
which imports this module by name, so it stays light (no pytest, no test fixtures)."""
from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from model.images import ImageDecodeError, ImageTooLargeError


def aborts(data: bytes, max_pixels=None):
    os.abort()  # SIGABRT, like a libjpeg/libtiff assertion


def segfaults(data: bytes, max_pixels=None):
    ctypes.string_at(0)  # SIGSEGV, like a decoder overrun


def exits(data: bytes, max_pixels=None):
    os._exit(3)


def hangs(data: bytes, max_pixels=None):
    while True:  # a decoder stuck in a loop on a crafted file
        time.sleep(1)


def spins(data: bytes, max_pixels=None):
    while True:  # the same, holding the CPU and ignoring nothing
        pass


def refuses(data: bytes, max_pixels=None):
    raise ImageDecodeError("the image data is damaged or incomplete (test)")


def refuses_too_large(data: bytes, max_pixels=None):
    raise ImageTooLargeError(f"the image is too large (limit {max_pixels})")


def runs_out_of_memory(data: bytes, max_pixels=None):
    raise MemoryError("cannot allocate (test)")


def has_a_bug(data: bytes, max_pixels=None):
    raise KeyError("oops")


def returns_a_lie(data: bytes, max_pixels=None):
    """Announces far more pixels than max_pixels allows (an exploited decoder talking to the parent)."""
    return np.zeros((max_pixels or 4, 2, 3), np.uint8)


def answers_ahead(data: bytes, max_pixels=None):
    """Writes a well-formed answer for the *next* request on the answer pipe, then decodes normally: a
    decoder an exploit took over, trying to pass its own pixels off as the next image's."""
    import gc
    import json
    from multiprocessing.connection import Connection

    pipe = next(o for o in gc.get_objects() if isinstance(o, Connection) and not o.closed and o.writable)
    pipe.send_bytes(json.dumps([10**9, "ok", [1, 1, 3], "|u1"]).encode())
    pipe.send_bytes(b"\x00\x00\x00")
    from model.images import decode_image

    return decode_image(data, max_pixels=max_pixels)


def echoes(data: bytes, max_pixels=None):
    """Pixels made from the bytes, so the test can check what came back."""
    side = int(len(data) ** 0.5)
    return np.frombuffer(data[:side * side], np.uint8).reshape(side, side, 1)


def misbehaves_on_marker_sizes(data: bytes, max_pixels=None):
    """The real decoder, except that it aborts on 13x3 images and hangs on 11x3 ones (see
    tests/hostile/corpus.py ABORT_SIZE / HANG_SIZE): what a decoder exploit looks like to the worker."""
    from model.images import decode_image

    pixels = decode_image(data, max_pixels=max_pixels)
    if pixels.shape[:2] == (3, 13):
        os.abort()
    if pixels.shape[:2] == (3, 11):
        hangs(data)
    return pixels
