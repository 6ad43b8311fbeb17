"""The decoder process's side of worker/decode_guard.py: what runs in the child, which parses hostile
bytes. It never unpickles anything from the other side of its answer pipe (it only writes there), and
what it writes is a small JSON header then raw pixels, which the parent checks before using.

Protocol, one request at a time on the child's request pipe: a pickled (seq, decode, max_pixels,
timeout, formats) from the trusted parent, then the file's bytes. Answer: JSON [seq, kind, detail,
message], kind "ok" (detail = shape, message = dtype, then the raw pixels), "refused" (detail = the
error's class name), "memory" or "error". The child exits when the parent closes the request pipe (or
dies), or when a decode outlives its timeout by ORPHAN_GRACE_SECONDS with nobody left to kill it.
"""
from __future__ import annotations

import io
import json
import math
import signal
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.images import ImageDecodeError

ORPHAN_GRACE_SECONDS = 10  # a child whose parent vanished kills itself this long after its timeout


def serve(request, sender) -> None:
    """The child's loop: decode what the parent sends, until it closes the pipe."""
    warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on odd metadata: not the log's business
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        while True:
            try:
                seq, decode, max_pixels, timeout, formats = request.recv()
                data = request.recv_bytes()
            except (EOFError, OSError):  # the parent is done with us, or gone
                return
            # If the worker dies while this decode hangs, nobody kills us: the alarm's default action does.
            signal.alarm(min(math.ceil(timeout) + ORPHAN_GRACE_SECONDS, 2**31 - 1))
            answer_one(sender, seq, decode, data, max_pixels, formats)
            signal.alarm(0)
    finally:
        request.close()
        sender.close()


def answer_one(sender, seq: int, decode, data: bytes, max_pixels: int | None, formats: list[str] | None) -> None:
    if formats and data and not in_formats(data, formats):  # (empty: the decoder says so)
        send(sender, seq, "refused", "ImageDecodeError",
             f"the file is not an image in an accepted format ({', '.join(formats)})")
        return
    try:
        pixels = decode(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        send(sender, seq, "refused", type(exc).__name__, str(exc))
        return
    except MemoryError as exc:
        send(sender, seq, "memory", "MemoryError", str(exc))
        return
    except Exception as exc:
        send(sender, seq, "error", type(exc).__name__, str(exc))
        return
    pixels = np.ascontiguousarray(pixels)
    send(sender, seq, "ok", [int(n) for n in pixels.shape], pixels.dtype.str)
    sender.send_bytes(pixels.reshape(-1).view(np.uint8))


def in_formats(data: bytes, formats: list[str]) -> bool:
    """Whether Pillow's decoders for `formats`, and no others, recognise the file (header only)."""
    try:
        with Image.open(io.BytesIO(data), formats=formats):
            return True
    except UnidentifiedImageError:
        return False
    except Exception:  # recognised, but the header is damaged or too large: the decoder says which
        return True


def send(sender, seq: int, kind: str, detail, message) -> None:
    sender.send_bytes(json.dumps([seq, kind, detail, message[:4000] if isinstance(message, str) else message])
                      .encode())
