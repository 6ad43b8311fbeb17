"""Checks for caller-supplied text, numbers and JSON bodies, shared by the API and the operator CLI.

Postgres text cannot hold NUL, and control characters have no business in a reason, a filter or a
URL: they are refused here as a 400 naming the field, never passed down to become a 500. So is a
JSON body that is malformed or nested deeper than the decoder can recurse (a RecursionError).
"""
from __future__ import annotations

import json
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


def job_status(value, field: str = "status"):
    """None/"" → None; else the JobStatus it names, or a 400 listing the statuses."""
    from shared.models import JobStatus

    text = optional_text(value, field, 16)
    if text is None:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        raise InvalidRequest(f"{field} must be one of {[s.value for s in JobStatus]}", field=field) from None


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


def json_object(data: bytes) -> dict:
    """A request body → the JSON object it holds; malformed, too deeply nested or not an object → 400."""
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except RecursionError:  # e.g. 50,000 '[': the decoder recurses once per level
        raise InvalidRequest("the body nests too deeply", field="body") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             field="body") from None
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid JSON: it is not UTF-8 text", field="body") from None
    except ValueError as exc:  # NaN/Infinity, or an integer of more than 4300 digits
        detail = str(exc).split(";")[0]
        raise InvalidRequest(f"the body is not valid JSON: {detail}", field="body") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")
