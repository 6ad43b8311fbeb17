"""Decodes images in a separate decoder process, so a decoder that crashes, hangs or is exploited by a
hostile file takes down that process only, never the Celery worker (which holds the model, maybe a CUDA
context, and the jobs' leases).

The decoder process comes from a forkserver: a small helper process started once per worker by
fork+exec (so it is safe after torch/CUDA were initialised), which imports this module, and with it
numpy, every Pillow plugin and OpenCV, once. The decoder then serves image after image over a pipe
(worker/decode_child.py), so a decode costs the decode and the pixels' way back: a fork per image cost
~8 ms of CPU and wall time even on a 128² JPEG (`python bench/drain.py`). It is replaced, in the
background, whenever it did anything but decode an image well: a crash, a hang, a refusal, an error,
a protocol slip; and after MAX_IMAGES_PER_DECODER images or one larger than RECYCLE_PIXELS, so that
what a decode leaves behind (fragmented memory, state a malformed file bent) does not live for long.
A decoder that died while idle is replaced without blaming the image. As with any multiprocessing
child, the parent's main module is re-imported in it when the parent was started as a script
(`celery`, `python -m celery` and `python -m pytest` are fine): keep entry points behind
`if __name__ == "__main__":`.

The pixels come back over a pipe as raw bytes, straight into an array allocated by the parent. The child
parsed hostile bytes, so nothing it sends is unpickled: a small JSON header that names the request it
answers (checked, with the shape, before the parent allocates anything), then the raw pixels.

With `formats` (ALLOWED_FORMATS), the child first checks that Pillow's decoders for those formats, and
no others, recognise the file, as the API did: a file planted in storage behind the API's back gets no
further than that.

A decoder that dies without answering (segfault, abort, killed for memory) or outlives `timeout` is
killed and reported as `DecoderCrashed` / `DecoderTimedOut`, both `ImageDecodeError`s, so the caller
fails that job for good. A refusal by the decoder (damaged file, too many pixels) comes back as the
same `ImageDecodeError` / `ImageTooLargeError` the in-process decoder raises; a `MemoryError` in the
child comes back as a `MemoryError`.
"""
from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import wait

import numpy as np
from PIL import Image

from model.images import ImageDecodeError, ImageTooLargeError, decode_image
from worker import decode_child

# What a decode needs, imported here once so that the forkserver (which imports this module) holds it
# and no decoder imports anything per image.
Image.init()
try:
    import cv2  # noqa: F401  (decode_image uses it for 16-bit colour)
except ImportError:  # pragma: no cover - OpenCV is a dependency; decode_image would import it itself
    pass

MAX_IMAGES_PER_DECODER = 200
RECYCLE_PIXELS = 16_000_000  # a decoder that held an image this large is replaced (its heap stays big)
MAX_HEADER_BYTES = 64 * 1024
_DTYPES = {np.dtype(np.uint8).str: np.uint8, np.dtype(np.uint16).str: np.uint16}
_REFUSALS = {"ImageTooLargeError": ImageTooLargeError}
_context_lock = threading.Lock()
_context: multiprocessing.context.BaseContext | None = None
_sequence = itertools.count(1)
log = logging.getLogger(__name__)


class DecoderFailed(ImageDecodeError):
    """The decoder process did not come back with an answer (see the subclasses)."""


class DecoderCrashed(DecoderFailed):
    """The decoder process died: a decoder bug on malformed data, or killed for memory."""


class DecoderTimedOut(DecoderFailed):
    """The decoder process ran past its time limit and was killed."""


def decode_isolated(data: bytes, max_pixels: int | None, timeout: float, *,
                    formats: str | Sequence[str] | None = None,
                    decode: Callable[..., np.ndarray] = decode_image) -> np.ndarray:
    """`decode(data, max_pixels=max_pixels)` in the decoder process; the same (H, W, C) array back.

    `formats`: Pillow format names (a list, or a comma-separated string like ALLOWED_FORMATS) the file
    must be in; None: any. `decode` must be picklable (a module-level function); tests pass decoders
    that crash or hang.
    """
    if isinstance(formats, str):
        formats = [name.strip().upper() for name in formats.split(",") if name.strip()]
    seq = next(_sequence)
    request = (seq, decode, max_pixels, timeout, list(formats) if formats else None)
    decoder, healthy = _decoders.take(), False
    try:
        try:
            decoder.send(request, data)
        except OSError:  # it died while idle, before reading anything: not the image's doing
            _decoders.retire(decoder)
            decoder = _Decoder(_get_context())
            decoder.send(request, data)
        deadline = time.monotonic() + timeout
        header = _receive(decoder.answer, decoder.proc, seq, deadline, timeout)
        kind, detail, message = header[1], header[2], header[3][:2000]
        if kind == "ok":
            pixels = _receive_pixels(decoder.answer, decoder.proc, header, max_pixels, deadline, timeout)
            healthy = pixels.shape[0] * pixels.shape[1] <= RECYCLE_PIXELS
            return pixels
        if kind == "refused":
            raise _REFUSALS.get(detail if isinstance(detail, str) else "", ImageDecodeError)(message)
        if kind == "memory":
            raise MemoryError(f"the image decoder ran out of memory: {message}")
        raise RuntimeError(f"the image decoder failed: {detail}: {message}")
    finally:
        _decoders.release(decoder, healthy)


class _Decoder:
    """A decoder process and our ends of its two pipes."""

    def __init__(self, ctx: multiprocessing.context.BaseContext):
        child_request, self.request = ctx.Pipe(duplex=False)  # (receiving end, sending end)
        self.answer, child_answer = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=decode_child.serve, args=(child_request, child_answer),
                                name="image-decoder", daemon=True)
        self.images = 0
        try:
            self.proc.start()
        except BaseException:
            self.request.close()
            self.answer.close()
            raise
        finally:  # only the child holds its ends: its death closes our pipes
            child_request.close()
            child_answer.close()

    def send(self, request: tuple, data: bytes) -> None:
        self.images += 1
        self.request.send(request)  # parent → child may be pickled (the parent is trusted); never back
        self.request.send_bytes(data)

    def close(self) -> None:
        """Stop it: closing its request pipe ends it; kill it if it is busy; release everything."""
        self.request.close()
        self.proc.join(0.5)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
        self.proc.close()
        self.answer.close()


class _Decoders:
    """The worker's decoder process; replacements are started, and retired ones stopped, by a
    background thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next: Future | None = None  # the decoder to use next (maybe still starting)
        self._executor: ThreadPoolExecutor | None = None

    def take(self) -> _Decoder:
        """The decoder, waiting for it if it is starting; a new one if there is none (another thread
        holds it) or it died while idle."""
        with self._lock:
            future, self._next = self._next, None
        try:
            decoder = future.result() if future is not None else None
        except Exception as exc:  # starting it failed in the background: try here, where it can raise
            log.warning("starting an image decoder failed (%s); trying again", type(exc).__name__)
            decoder = None
        if decoder is not None and decoder.proc.exitcode is None:
            return decoder
        if decoder is not None:  # killed for memory, or by hand, while idle: not an image's doing
            self.retire(decoder)
        return _Decoder(_get_context())

    def retire(self, decoder: _Decoder) -> None:
        """One that died while idle: stopped in the background; the caller starts another."""
        log.warning("the image decoder had exited (%s) while idle; starting another", decoder.proc.exitcode)
        with self._lock:
            self._background().submit(decoder.close)

    def release(self, decoder: _Decoder, healthy: bool) -> None:
        """Keep a decoder that did its job well for the next image; replace any other at once (killed
        now if it is still running: it hung, or said something we did not read)."""
        keep = healthy and decoder.images < MAX_IMAGES_PER_DECODER
        if not healthy and decoder.proc.exitcode is None:
            decoder.proc.kill()
        with self._lock:
            if keep and self._next is None:
                done = Future()
                done.set_result(decoder)
                self._next = done
                return
            self._background().submit(decoder.close)
            if self._next is None:
                self._next = self._background().submit(_Decoder, _get_context())

    def start(self) -> None:
        with self._lock:
            if self._next is None:
                self._next = self._background().submit(_Decoder, _get_context())

    def wait_idle(self) -> int | None:
        """Wait until the background work so far is done; the ready decoder's pid (None: none)."""
        with self._lock:
            future, executor = self._next, self._executor
        if executor is not None:
            executor.submit(int).result()
        if future is None or future.exception() is not None:
            return None
        return future.result().proc.pid

    def _background(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="image-decoder")
        return self._executor


_decoders = _Decoders()
start_decoder = _decoders.start  # at worker start: the first job then finds the decoder running
wait_idle = _decoders.wait_idle  # for tests: replacements started, retired decoders stopped


def _get_context() -> multiprocessing.context.BaseContext:
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload([__name__])
            else:  # pragma: no cover - every POSIX system we deploy on has a forkserver
                ctx = multiprocessing.get_context("spawn")
            _context = ctx
    return _context


def _receive(receiver, proc, seq: int, deadline: float, timeout: float):
    """The decoder's answer header to request `seq`, or DecoderCrashed / DecoderTimedOut / DecoderFailed."""
    ready = wait([receiver, proc.sentinel], max(0.0, deadline - time.monotonic()))
    if receiver in ready or receiver.poll(0):
        try:
            header = json.loads(receiver.recv_bytes(MAX_HEADER_BYTES))
        except (EOFError, OSError, ValueError):
            header = None  # the child died before it said anything, or said nonsense
        if (isinstance(header, list) and len(header) == 4 and isinstance(header[1], str)
                and isinstance(header[3], str)):
            if header[0] != seq:
                raise DecoderFailed(f"the image decoder answered request {header[0]!r}, not {seq}")
            return header
        proc.join(5)
        raise _crashed(proc)
    if proc.sentinel in ready:
        proc.join(5)
        raise _crashed(proc)
    raise DecoderTimedOut(f"the image decoder did not finish within {timeout:g} s and was stopped; the "
                          "file is probably malformed")


def _receive_pixels(receiver, proc, header, max_pixels: int | None, deadline: float,
                    timeout: float) -> np.ndarray:
    # The child parsed hostile bytes, so its answer is checked before the parent allocates anything.
    _, _, shape, dtype = header
    ok = (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape)
          and shape[2] in (1, 2, 3, 4) and dtype in _DTYPES
          and (max_pixels is None or shape[0] * shape[1] <= max_pixels))
    if not ok:
        raise DecoderFailed(f"the image decoder returned an invalid result ({shape}, {dtype})")
    pixels = np.empty(tuple(shape), _DTYPES[dtype])
    flat = pixels.reshape(-1).view(np.uint8)
    if not receiver.poll(max(0.0, deadline - time.monotonic())):
        raise DecoderTimedOut(f"the image decoder did not finish within {timeout:g} s and was stopped")
    try:
        received = receiver.recv_bytes_into(flat)
    except (EOFError, OSError):
        proc.join(5)
        raise _crashed(proc) from None
    except multiprocessing.BufferTooShort:
        raise DecoderFailed("the image decoder returned more pixel data than it announced") from None
    if received != flat.nbytes:
        raise DecoderFailed("the image decoder returned less pixel data than it announced")
    return pixels


def _crashed(proc) -> DecoderCrashed:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            how = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    elif code is not None:
        how = f"exit code {code}"
    else:
        how = "no answer"
    return DecoderCrashed(f"the image decoder crashed ({how}); the file is probably malformed")
