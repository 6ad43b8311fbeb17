"""Page sessions: signing in and out with an API key, who is signed in, and what every page shares
(CSRF check, role check, security headers, errors as pages)."""
from __future__ import annotations

import uuid

from flask import (Blueprint, Response, current_app, g, jsonify, make_response, redirect, render_template,
                   request, session, url_for)
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from api.auth import Principal
from api.errors import STATUS
from api.pages import csrf, messages
from shared.accounts import ADMIN, PARTNER, ApiKey, Partner, find_active_key
from shared.errors import DependencyUnavailable, ServiceError

PAGES = ("console", "dashboard")
HOME = {PARTNER: "console.home", ADMIN: "dashboard.home"}
# Everything a page uses comes from this server: no CDN, no inline script or style, no framing.
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _sessions():
    return current_app.extensions["portraits"].sessions


def load_principal() -> None:
    """Before every page request: refuse without SECRET_KEY, check the CSRF token of any form, and set
    `g.principal` (as api/auth.py does for Bearer keys) from the session's key, if it is still active."""
    if request.blueprint not in PAGES:
        return
    if not current_app.secret_key:
        raise DependencyUnavailable("the pages are off: this server has no SECRET_KEY setting",
                                    reason="no_secret")
    csrf.protect()
    key_id = session.get("key_id")
    if key_id is None:
        return
    try:
        with _sessions()() as db:
            found = db.execute(
                select(ApiKey, Partner.name).outerjoin(Partner, Partner.id == ApiKey.partner_id)
                .where(ApiKey.id == uuid.UUID(key_id), ApiKey.revoked_at.is_(None))).first()
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the key database is unavailable; try again shortly") from exc
    if found is None:  # revoked (or deleted) since sign-in: the session ends with the key
        session.clear()
        return
    row, partner_name = found
    g.principal = Principal(row.id, row.name, row.role, row.partner_id, row.callback_url)
    g.partner_name = partner_name


def signed_in() -> Principal | None:
    return g.get("principal")


def sign_in(api_key: str) -> Principal | None:
    """A fresh session for the key (a new session and CSRF token: nothing carries over from before), or
    None when the key is unknown or revoked. The key itself is never stored, logged or put in a URL."""
    try:
        with _sessions()() as db, db.begin():
            row = find_active_key(db, api_key)
            if row is not None:
                db.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=func.now()))
    except SQLAlchemyError as exc:
        raise DependencyUnavailable("the key database is unavailable; try again shortly") from exc
    if row is None:
        return None
    session.clear()
    session.permanent = True  # expires after SESSION_LIFETIME_SECONDS
    session["key_id"] = str(row.id)
    return Principal(row.id, row.name, row.role, row.partner_id, row.callback_url)


def sign_out() -> None:
    session.clear()


def safe_next(target: str | None) -> str | None:
    """A path on this site to go back to after sign-in; anything else (another host, a scheme) is dropped.
    Browsers drop tabs and newlines from URLs ("/<tab>/evil" is "//evil"), so no control character passes."""
    if (target and target.startswith("/") and not target.startswith(("//", "/\\"))
            and not any(c < " " or c == "\x7f" for c in target)):
        return target
    return None


def home_url(who: Principal) -> str:
    return url_for(HOME[who.role])


def require(role: str, *, public: tuple[str, ...] = ()):
    """A blueprint's before_request: pages other than `public` need a session of `role`. Signed out → the
    sign-in page (JSON: 401); signed in with the other kind of key → 403."""
    def check():
        if request.endpoint in public:
            return None
        who = signed_in()
        if who is None:
            if wants_json():
                return jsonify(error={"code": "unauthorized", "message": "sign in first",
                                      "plain": messages.SIGNED_OUT}), 401
            return redirect(url_for("console.home", next=request.full_path.rstrip("?")))
        if who.role != role:
            return error_page(403, "forbidden", messages.WRONG_ROLE[role], home=home_url(who))
        return None

    return check


def wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def error_page(status: int, code: str, plain: str, *, detail: str | None = None, home: str | None = None):
    if wants_json():
        body = {"code": code, "message": detail or plain, "plain": plain}
        return make_response(jsonify(error=body), status)
    who = signed_in()
    home = home or (home_url(who) if who else url_for("console.home"))
    page = render_template("error.html", status=status, code=code, plain=plain, detail=detail, home=home)
    return make_response(page, status)


def _service_error(exc: ServiceError):
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    plain = messages.plain(exc.code, exc.message, **exc.details)
    response = error_page(status, exc.code, plain, detail=exc.message)
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


def _http_error(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return error_page(exc.code or 500, code, messages.plain(code, exc.description or "", limit=limit),
                      detail=exc.description)


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")  # private data: never cached or shared
    return response


def _context() -> dict:
    return {"me": signed_in(), "my_partner": g.get("partner_name")}


def guard(blueprint: Blueprint) -> None:
    """What every page blueprint shares: headers, HTML (or JSON) errors, and who is signed in."""
    blueprint.after_request(_headers)
    blueprint.register_error_handler(ServiceError, _service_error)
    blueprint.register_error_handler(HTTPException, _http_error)
    blueprint.context_processor(_context)
