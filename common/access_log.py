"""The access log: one INFO line per request on the `caterva2.access` logger.

    127.0.0.1 user@example.com "GET /api/info/@public/ds-1d.b2nd" 200 1203 B 2.1 ms

Client address, user (`-` when anonymous or unknown), method and path (never
the query string, which may carry tokens), status, body bytes (`-` when a
streamed body's length is unknown) and the time taken to prepare the answer.

A Falcon middleware, not a wrapper of the WSGI body: wrapping would hide the
`wsgi.file_wrapper` bodies that waitress sends straight from their files.
"""

from __future__ import annotations

import logging
import time

import falcon

log = logging.getLogger("caterva2.access")


def _body_bytes(resp: falcon.Response) -> int | None:
    if resp.stream is not None:
        length = resp.get_header("Content-Length")
        return int(length) if length and length.isdigit() else None
    body = resp.render_body()  # media is rendered once; the answer reuses it
    return len(body) if body is not None else 0


class AccessLog:
    """Falcon middleware logging each request once its answer is ready (first in the list)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.access_started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        started = getattr(req.context, "access_started", None)
        took = f"{(time.perf_counter() - started) * 1000:.1f} ms" if started else "-"
        user = getattr(getattr(req.context, "user", None), "email", None) or "-"
        size = _body_bytes(resp)
        log.info(
            '%s %s "%s %s" %s %s B %s',
            req.remote_addr or "-",
            user,
            req.method,
            req.path,
            resp.status_code,
            "-" if size is None else size,
            took,
        )
