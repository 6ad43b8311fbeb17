"""Per-key rate limits (flask-limiter, counters in Redis) and CORS for configured origins only.

Limits fail open: if Redis is down, requests are served unlimited rather than refused, so a broker
outage never blocks submissions (the sweeper publishes them later).
"""
from __future__ import annotations

from flask import Flask, g
from flask_cors import CORS
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from shared.settings import Settings


def rate_key() -> str:
    principal = getattr(g, "principal", None)
    return f"key:{principal.key_id}" if principal else f"ip:{get_remote_address()}"


def install(app: Flask, settings: Settings) -> Limiter:
    limiter = Limiter(key_func=rate_key, app=app, storage_uri=settings.redis_url,
                      storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
                      default_limits=[settings.rate_limit_default], headers_enabled=True,
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
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        CORS(app, resources={r"/v1/*": {"origins": origins}},
             allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
             expose_headers=["Location", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
             max_age=600)
    return limiter
