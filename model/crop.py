"""A crop of a photo: the region a job (or `python -m model upscale --crop`) upscales instead of the
whole photo. Shared by the API, the worker and the CLI, so all three read and check it alike.

    crop = parse_crop("120,40,176,224")        # "x,y,width,height"; ValueError when malformed
    check_crop(crop, (width, height))          # CropError (a ValueError) when empty or not inside
    pixels = apply_crop(pixels, crop)          # a copy of that region

Coordinates are whole pixels of the photo **as it is shown**: after its EXIF orientation is applied,
as `model.images.decode_image` returns it (and as a browser or a photo viewer shows it), with the
origin at the top-left corner; x grows to the right, y downwards. `width` and `height` are the
region's size; it must lie wholly inside the photo.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Four integers, comma-separated, spaces allowed around them. Signs are read here so that "-5,..." is
# reported as a crop outside the photo (422) rather than as gibberish (400).
_INT = r"\s*([+-]?[0-9]{1,12})\s*"
_CROP = re.compile(f"^{_INT},{_INT},{_INT},{_INT}$")
MAX_TEXT = 100  # characters: a crop is never longer; longer input is refused before any parsing


class CropError(ValueError):
    """The crop is well-formed but does not fit the photo: `reason` is "empty" or "outside_image"."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    def __str__(self) -> str:  # the form-field spelling, canonical (idempotency fingerprints use it)
        return f"{self.x},{self.y},{self.width},{self.height}"

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


def parse_crop(text: str) -> Crop:
    """"x,y,width,height" → Crop; ValueError naming the expected form when `text` is not four integers."""
    match = _CROP.match(text) if isinstance(text, str) and len(text) <= MAX_TEXT else None
    if match is None:
        shown = text if isinstance(text, str) and len(text) <= 40 else f"{str(text)[:40]}…"
        raise ValueError(f"crop must be four integers 'x,y,width,height' in the photo's pixels "
                         f"(e.g. '120,40,176,224'), not {shown!r}")
    return Crop(*(int(v) for v in match.groups()))


def check_crop(crop: Crop, image_size: tuple[int, int]) -> None:
    """CropError unless `crop` is non-empty and lies wholly inside an image of `image_size` (w, h)."""
    iw, ih = image_size
    if crop.width <= 0 or crop.height <= 0:
        raise CropError(f"the crop {crop} is empty: its width and height must be at least 1 pixel", "empty")
    if crop.x < 0 or crop.y < 0 or crop.x + crop.width > iw or crop.y + crop.height > ih:
        raise CropError(f"the crop {crop} (x,y,width,height) is not inside the {iw}x{ih} photo: it must "
                        f"have x >= 0, y >= 0, x + width <= {iw} and y + height <= {ih} (pixels as the "
                        f"photo is shown, after its EXIF orientation)", "outside_image")


def apply_crop(pixels: np.ndarray, crop: Crop | tuple[int, int, int, int] | None) -> np.ndarray:
    """The crop's region (a Crop or an (x, y, width, height) tuple) of an (H, W[, C]) array, as its own
    contiguous copy (so the whole photo can be freed while the region is upscaled); `pixels` itself
    when `crop` is None. CropError if the crop does not fit the array."""
    if crop is None:
        return pixels
    crop = crop if isinstance(crop, Crop) else Crop(*(int(v) for v in crop))
    check_crop(crop, (pixels.shape[1], pixels.shape[0]))
    return pixels[crop.y:crop.y + crop.height, crop.x:crop.x + crop.width].copy()
