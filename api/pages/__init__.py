"""Pages for people: the partner console (`/`, blueprint `console`) and the admin dashboard (`/admin`,
blueprint `dashboard`), rendered on the server from api/templates with a little plain JavaScript from
api/static. Nothing is loaded from anywhere else, so the pages work offline.

Signed in by session, not Bearer (api/auth.py still guards only /v1): the sign-in form exchanges an API
key for a signed, HttpOnly, SameSite=Lax session cookie that holds the key's id, never the key, and
every page request checks that id against the key table again, so revoking a key ends its sessions.
Every form carries a CSRF token (Flask-WTF); without SECRET_KEY the pages answer 503.
"""
from __future__ import annotations

from datetime import timedelta

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

csrf = CSRFProtect()


class _SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie sessions, marked Secure also whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or request.is_secure


def register(app: Flask) -> None:
    """Install sessions, CSRF protection and both page blueprints (before the rate limiter, so page
    requests are counted per signed-in key like API requests)."""
    from api.pages import console, dashboard, session, view

    settings = app.extensions["portraits"].settings
    app.secret_key = settings.secret_key
    app.config.update(
        SESSION_COOKIE_NAME="portraits_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure, SESSION_REFRESH_EACH_REQUEST=False,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_lifetime_seconds),
        # Only the pages' forms are checked (session.load_principal); the /v1 API has no cookies to forge.
        WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None)
    app.session_interface = _SessionCookies()
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    csrf.init_app(app)
    view.register_filters(app)
    app.before_request(session.load_principal)
    app.register_blueprint(console.bp)
    app.register_blueprint(dashboard.bp)
