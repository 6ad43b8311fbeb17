"""The one place that maps errors to HTTP: every error answer is JSON `{"error": {code, message}}`."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from shared import errors

STATUS = {
    errors.InvalidUpload: 400,
    errors.InvalidImage: 422,
    errors.InvalidCrop: 422,
    errors.JobNotFound: 404,
    errors.ResultNotReady: 409,
    errors.ResultGone: 410,
    errors.JobNotCancellable: 409,
    errors.IdempotencyConflict: 422,
    errors.IdempotencyInProgress: 409,
    errors.JobNotRequeueable: 409,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.InvalidRequest: 400,
    errors.DependencyUnavailable: 503,
}

log = logging.getLogger(__name__)


def error_response(http_status: int, code: str, message: str, **details):
    body = {"error": {"code": code, "message": message, **details}}
    return jsonify(body), http_status


def register(app: Flask) -> None:
    @app.errorhandler(errors.ServiceError)
    def service_error(exc: errors.ServiceError):
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        response = error_response(status, exc.code, exc.message, **exc.details)
        if status == 503:
            response[0].headers["Retry-After"] = "5"
        if status == 401:
            response[0].headers["WWW-Authenticate"] = 'Bearer realm="portraits"'

        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if exc.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is larger than the {limit} byte limit"
        return error_response(exc.code or 500, code, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
