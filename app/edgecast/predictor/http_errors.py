"""The errors waitress answers itself (400, 408, 413, 431, 501, 503), as the app's own JSON.

waitress answers them in text/plain with its own wording; a client of the predictor reads every
error as ``{"error", "status"}`` whoever answered it, in the words of the app's errors.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from waitress.adjustments import Adjustments
from waitress.task import ErrorTask
from waitress.utilities import (
    BadRequest,
    Error,
    InternalServerError,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    ServerNotImplemented,
)

if TYPE_CHECKING:
    from edgecast.predictor.connections import PredictorChannel


class RequestTimeout(Error):
    code = 408
    reason = "Request Timeout"


class ServiceUnavailable(Error):
    code = 503
    reason = "Service Unavailable"


def error_message(error: Error, adj: Adjustments, max_body_bytes: int) -> str:
    """What a waitress error says, in the words of the app's own errors."""
    if isinstance(error, RequestEntityTooLarge):
        return f"body is larger than the limit of {max_body_bytes} bytes"
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return (
            f"request line and headers are larger than the limit of "
            f"{adj.max_request_header_size} bytes"
        )
    if isinstance(error, BadRequest):
        return f"bad HTTP request: {error.body}"
    if isinstance(error, ServerNotImplemented):
        return f"{error.body} Send the body with Content-Length (or chunked)."
    if isinstance(error, InternalServerError):
        return "internal error"  # waitress's body may hold a traceback
    return str(error.body)


class JsonErrorTask(ErrorTask):
    """waitress's error answer as the app's JSON error, closing the connection gracefully."""

    channel: PredictorChannel

    def execute(self) -> None:
        error = self.request.error
        server = self.channel.server
        message = error_message(error, server.adj, server.settings.max_body_bytes)
        body = json.dumps({"error": message, "status": error.code}, separators=(",", ":")).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.channel.linger = True
        self.write(body)
