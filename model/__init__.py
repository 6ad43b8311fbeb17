"""4x face super-resolution: the network, its weights, and how the service runs it.

Public API (what the worker, the API and the CLI use)::

    from model import Upscaler, ImageDecodeError, decode_image, encode_png

The image helpers import no torch (the API process vets uploads with them); `Upscaler` is loaded on
first access, so `import model` / `import model.images` stays light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from model.images import ImageDecodeError, ImageTooLargeError, decode_image
from model.png import encode_png

if TYPE_CHECKING:
    from model.upscaler import Upscaler

__all__ = ["Upscaler", "ImageDecodeError", "ImageTooLargeError", "decode_image", "encode_png"]


def __getattr__(name: str):
    if name == "Upscaler":
        from model.upscaler import Upscaler

        return Upscaler
    raise AttributeError(f"module 'model' has no attribute {name!r}")
