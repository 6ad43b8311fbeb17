"""Checks for caller-supplied text and numbers, shared by the API and the operator CLI.

Postgres text cannot hold NUL, and control characters have no business in a reason, a filter or a
URL: they are refused here as a 400 naming the field, never passed down to become a 500.
"""
from __future__ import annotations

import re

from shared.errors import InvalidRequest

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def optional_text(value, field: str, max_length: int = 1000) -> str | None:
    """None/"" → None; else a string without control characters, at most `max_length` long."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string", field=field)
    if _CONTROL.search(value):
        raise InvalidRequest(f"{field} must not contain control characters", field=field)
    if len(value) > max_length:
        raise InvalidRequest(f"{field} must be at most {max_length} characters", field=field)
    return value


def bounded_int(value, field: str, lo: int, hi: int, default: int) -> int:
    """An integer in [lo, hi] given as a JSON number or a decimal string; absent → default."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRequest(f"{field} must be an integer", field=field)
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"{field} must be an integer", field=field) from None
    if not lo <= number <= hi:
        raise InvalidRequest(f"{field} must be between {lo} and {hi}", field=field)
    return number
