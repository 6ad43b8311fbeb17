"""Per-key rate limits (flask-limiter, counters in Redis) and CORS for configured origins only.

Limits fail open: if Redis is down, requests are served unlimited rather than refused, so a broker
outage never blocks submissions (the sweeper publishes them later).

One Redis round trip per request: the moving window's hit (a Lua script that counts and records
the request at once). flask-limiter's X-RateLimit-* headers would cost a second script on every
answer (reading the window back), so they are sent only with a 429, with its Retry-After: the one
answer whose client must know when to come back.
"""
from __future__ import annotations

import math
import time

from flask import Flask, Response, g
from flask_cors import CORS
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from shared.settings import Settings


def rate_key() -> str:
    principal = getattr(g, "principal", None)
    return f"key:{principal.key_id}" if principal else f"ip:{get_remote_address()}"


def _limited_headers(limiter: Limiter, response: Response) -> Response:
    """On a 429 only: X-RateLimit-Limit/-Remaining/-Reset and Retry-After (seconds until the oldest
    request in the window leaves it). Should Redis fail right after refusing, the whole window."""
    limit = limiter.current_limit if response.status_code == 429 else None
    if limit is None:
        return response
    try:
        reset, remaining = limiter.limiter.get_window_stats(limit.limit, *limit.request_args)
    except Exception:  # the storage's own errors (redis-py's), whichever they are
        reset, remaining = time.time() + limit.limit.get_expiry(), 0
    response.headers["X-RateLimit-Limit"] = str(limit.limit.amount)
    response.headers["X-RateLimit-Remaining"] = str(remaining)
    response.headers["X-RateLimit-Reset"] = str(math.ceil(reset))
    response.headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
    return response


def install(app: Flask, settings: Settings) -> Limiter:
    limiter = Limiter(key_func=rate_key, app=app, storage_uri=settings.redis_url,
                      storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
                      default_limits=[settings.rate_limit_default], headers_enabled=False,
                      swallow_errors=True, key_prefix="portraits-rl", strategy="moving-window")
    for endpoint in ("health.healthz", "health.readyz", "openapi.document", "metrics.scrape"):
        if endpoint in app.view_functions:
            limiter.exempt(app.view_functions[endpoint])
    app.view_functions["jobs.submit"] = limiter.limit(settings.rate_limit_submit)(app.view_functions["jobs.submit"])
    # POST /v1/faces decodes and looks at a whole photo, as costly as a submit: the same limit, own counter.
    faces = app.view_functions["faces.find"]
    app.view_functions["faces.find"] = limiter.limit(settings.rate_limit_submit)(faces)
    # The pages (api/pages): an upload is a submit; sign-in attempts are counted per client address.
    for endpoint, limit in (("console.submit", settings.rate_limit_submit),
                            ("console.faces", settings.rate_limit_submit),
                            ("console.sign_in", settings.rate_limit_sign_in)):
        app.view_functions[endpoint] = limiter.limit(limit)(app.view_functions[endpoint])
    limiter.exempt(app.view_functions["static"])
    app.after_request(lambda response: _limited_headers(limiter, response))
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        CORS(app, resources={r"/v1/*": {"origins": origins}},
             allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
             expose_headers=["Location", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                             "Portraits-Wait"],
             max_age=600)
    return limiter
