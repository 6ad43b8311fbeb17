"""Decodes an image in a throwaway child process, so a decoder that crashes, hangs or is exploited by a
hostile file takes down that child only, never the Celery worker (which holds the model, maybe a CUDA
context, and the job's lease).

Children come from a forkserver: a small helper process started once per worker by fork+exec (so it is
safe after torch/CUDA were initialised), which imports this module, and with it numpy, every Pillow
plugin and OpenCV, once. Each decode is then a single fork of that clean, single-threaded process
instead of a fresh interpreter (~10-20 ms a decode; ~80 ms for a 12 MP photo, most of it moving the
pixels; ~250 ms once for the forkserver). As with any multiprocessing child, the parent's main module
is re-imported in the child when the parent was started as a script (`celery`, `python -m celery` and
`python -m pytest` are fine): keep entry points behind `if __name__ == "__main__":`.

The pixels come back over a pipe as raw bytes, straight into an array allocated by the parent. The child
parsed hostile bytes, so nothing it sends is unpickled: a small JSON header (checked before the parent
allocates anything), then the raw pixels.

With `formats` (ALLOWED_FORMATS), the child first checks that Pillow's decoders for those formats, and
no others, recognise the file, as the API did: a file planted in storage behind the API's back gets no
further than that.

A child that dies without answering (segfault, abort, killed for memory) or outlives `timeout` is
killed and reported as `DecoderCrashed` / `DecoderTimedOut`, both `ImageDecodeError`s, so the caller
fails that job for good. A refusal by the decoder (damaged file, too many pixels) comes back as the
same `ImageDecodeError` / `ImageTooLargeError` the in-process decoder raises; a `MemoryError` in the
child comes back as a `MemoryError`.
"""
from __future__ import annotations

import io
import json
import math
import multiprocessing
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.images import ImageDecodeError, ImageTooLargeError, decode_image

# What a decode needs, imported here once so that the forkserver (which imports this module) holds it
# and no child imports anything per job.
Image.init()
try:
    import cv2  # noqa: F401  (decode_image uses it for 16-bit colour)
except ImportError:  # pragma: no cover - OpenCV is a dependency; decode_image would import it itself
    pass

ORPHAN_GRACE_SECONDS = 10  # a child whose parent vanished kills itself this long after its timeout
MAX_HEADER_BYTES = 64 * 1024
_DTYPES = {np.dtype(np.uint8).str: np.uint8, np.dtype(np.uint16).str: np.uint16}
_REFUSALS = {"ImageTooLargeError": ImageTooLargeError}
_context_lock = threading.Lock()
_context: multiprocessing.context.BaseContext | None = None


class DecoderFailed(ImageDecodeError):
    """The decoder process did not come back with an answer (see the subclasses)."""


class DecoderCrashed(DecoderFailed):
    """The decoder process died: a decoder bug on malformed data, or killed for memory."""


class DecoderTimedOut(DecoderFailed):
    """The decoder process ran past its time limit and was killed."""


def decode_isolated(data: bytes, max_pixels: int | None, timeout: float, *,
                    formats: str | Sequence[str] | None = None,
                    decode: Callable[..., np.ndarray] = decode_image) -> np.ndarray:
    """`decode(data, max_pixels=max_pixels)` in a child process; the same (H, W, C) array back.

    `formats`: Pillow format names (a list, or a comma-separated string like ALLOWED_FORMATS) the file
    must be in; None: any. `decode` must be picklable (a module-level function); tests pass decoders
    that crash or hang.
    """
    if isinstance(formats, str):
        formats = [name.strip().upper() for name in formats.split(",") if name.strip()]
    ctx = _get_context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, decode, bytes(data), max_pixels, timeout,
                                            list(formats) if formats else None),
                       name="image-decoder", daemon=True)
    try:
        proc.start()
        sender.close()  # only the child writes: its death closes the pipe
        deadline = time.monotonic() + timeout
        header = _receive(receiver, proc, deadline, timeout)
        kind, detail, message = header[0], header[1], header[2][:2000]
        if kind == "ok":
            pixels = _receive_pixels(receiver, proc, header, max_pixels, deadline, timeout)
            proc.join(max(0.0, deadline - time.monotonic()))
            return pixels
        if kind == "refused":
            raise _REFUSALS.get(detail if isinstance(detail, str) else "", ImageDecodeError)(message)
        if kind == "memory":
            raise MemoryError(f"the image decoder ran out of memory: {message}")
        raise RuntimeError(f"the image decoder failed: {detail}: {message}")
    finally:
        sender.close()
        if proc.pid is not None and proc.exitcode is None:
            proc.kill()
        if proc.pid is not None:
            proc.join()
            proc.close()
        receiver.close()


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


def _receive(receiver, proc, deadline: float, timeout: float):
    """The child's first message, or DecoderCrashed / DecoderTimedOut."""
    ready = wait([receiver, proc.sentinel], max(0.0, deadline - time.monotonic()))
    if receiver in ready or receiver.poll(0):
        try:
            header = json.loads(receiver.recv_bytes(MAX_HEADER_BYTES))
        except (EOFError, OSError, ValueError):
            header = None  # the child died before it said anything, or said nonsense
        if isinstance(header, list) and len(header) == 3 and all(isinstance(h, str) for h in header[::2]):
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
    _, shape, dtype = header
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


# -------------------------------------------------------------------------------------------- child
def _child(sender, decode, data: bytes, max_pixels: int | None, timeout: float,
           formats: list[str] | None) -> None:
    """Runs in the child: decode, then send ("ok", shape, dtype) and the raw pixels, or the refusal."""
    # If the worker dies while this child hangs, nobody kills it: the alarm's default action does.
    signal.alarm(min(math.ceil(timeout) + ORPHAN_GRACE_SECONDS, 2**31 - 1))
    warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on odd metadata: not the log's business
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        if formats and data and not _in_formats(data, formats):  # (empty: the decoder says so)
            _send(sender, "refused", "ImageDecodeError", "the file is not an image in an accepted format "
                                                         f"({', '.join(formats)})")
            return
        try:
            pixels = decode(data, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            _send(sender, "refused", type(exc).__name__, str(exc))
            return
        except MemoryError as exc:
            _send(sender, "memory", "MemoryError", str(exc))
            return
        except Exception as exc:
            _send(sender, "error", type(exc).__name__, str(exc))
            return
        pixels = np.ascontiguousarray(pixels)
        _send(sender, "ok", [int(n) for n in pixels.shape], pixels.dtype.str)
        sender.send_bytes(pixels.reshape(-1).view(np.uint8))
    finally:
        sender.close()


def _in_formats(data: bytes, formats: list[str]) -> bool:
    """Whether Pillow's decoders for `formats`, and no others, recognise the file (header only)."""
    try:
        with Image.open(io.BytesIO(data), formats=formats):
            return True
    except UnidentifiedImageError:
        return False
    except Exception:  # recognised, but the header is damaged or too large: the decoder says which
        return True


def _send(sender, kind: str, detail, message) -> None:
    sender.send_bytes(json.dumps([kind, detail, message[:4000] if isinstance(message, str) else message])
                      .encode())
