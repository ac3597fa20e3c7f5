"""What both HTTP servers (publisher and subscriber) share: a Falcon app with JSON errors.

Imported only by the servers: the client never loads Falcon.
"""

from __future__ import annotations

import logging

import falcon

from .errors import Caterva2Error

log = logging.getLogger(__name__)


def _reason(status: int) -> str:
    return falcon.code_to_http_status(status).split(" ", 1)[1]


def _caterva2_error(req, resp, ex: Caterva2Error, params) -> None:
    resp.status = falcon.code_to_http_status(ex.status)
    resp.content_type = falcon.MEDIA_JSON  # a handler may have set another type already
    resp.media = {"detail": ex.detail}


def _http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    resp.status = ex.status
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"detail": ex.description or _reason(ex.status_code)}
    for name, value in (ex.headers or {}).items():
        resp.set_header(name, value)


def _unexpected_error(req, resp, ex: Exception, params) -> None:
    if isinstance(ex, falcon.HTTPError | falcon.HTTPStatus):
        raise ex
    log.exception("unhandled error on %s %s", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.content_type = falcon.MEDIA_TEXT
    resp.text = "Internal Server Error"


def new_app(middleware: list | None = None) -> falcon.App:
    """A Falcon app answering errors as `{"detail": ...}` (500s as plain text, logged)."""
    app = falcon.App(middleware=middleware or [])
    # Clients never follow redirects: `/api/list/x/` must answer like `/api/list/x`.
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = True
    app.add_error_handler(Exception, _unexpected_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(Caterva2Error, _caterva2_error)
    return app
