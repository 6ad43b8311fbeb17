"""Print sizes ("11x14in", "28x35.5cm") → the pixel box an upscaled photo is fitted into."""
from __future__ import annotations

import re

CM_PER_INCH = 2.54
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[x×]\s*(\d+(?:\.\d+)?)\s*(in|cm)?\s*$", re.IGNORECASE)


def parse_print_size(text: str) -> tuple[float, float]:
    """'11x14in' / '11x14' (inches) / '28x35.5cm' → (width, height) in inches."""
    m = _PATTERN.match(text)
    if not m:
        raise ValueError(f"print size {text!r} is not like 11x14in or 28x35.5cm")
    w, h = float(m.group(1)), float(m.group(2))
    if w <= 0 or h <= 0:
        raise ValueError(f"print size {text!r} must be positive")
    per_inch = CM_PER_INCH if (m.group(3) or "in").lower() == "cm" else 1.0
    return w / per_inch, h / per_inch


def fit_to_print(width: int, height: int, print_in: tuple[float, float], dpi: int) -> tuple[int, int]:
    """Largest (w, h) with the image's aspect that fits the print at `dpi`.

    The print is turned to the image's orientation (a landscape photo on an 11x14 order is printed
    14x11), so the photo fills the paper instead of shrinking to fit sideways. Square prints and
    square images keep the order as given.
    """
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    pw, ph = print_in
    if (width > height and pw < ph) or (width < height and pw > ph):
        pw, ph = ph, pw
    box_w, box_h = round(pw * dpi), round(ph * dpi)
    scale = min(box_w / width, box_h / height)
    return (max(1, min(box_w, round(width * scale))), max(1, min(box_h, round(height * scale))))
