"""`GET /openapi.json`: the API's OpenAPI 3.1 document, kept in `api/openapi.yaml` beside this file.

Public (api/auth.py guards only /v1) and exempt from rate limits (api/limits.py names the endpoint
`openapi.document`). The YAML is read and serialised once per process; tests/test_openapi.py checks
that it is valid and names exactly the app's routes.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import yaml
from flask import Blueprint, Response

DOCUMENT = Path(__file__).with_name("openapi.yaml")

bp = Blueprint("openapi", __name__)


def load_document() -> dict:
    """The document as a dict (YAML anchors expanded)."""
    with DOCUMENT.open(encoding="utf-8") as fd:
        return yaml.safe_load(fd)


@lru_cache(maxsize=1)
def _document_json() -> bytes:
    # Key order kept as written (jsonify would sort), so the JSON reads like the YAML.
    return json.dumps(load_document(), ensure_ascii=False, separators=(",", ":")).encode()


@bp.get("/openapi.json")
def document():
    return Response(_document_json(), mimetype="application/json",
                    headers={"Cache-Control": "public, max-age=300"})
