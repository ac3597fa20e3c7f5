"""Errors that carry an HTTP status, shared by every server part.

They live here (not in a web framework) so that the store, the root adapters
and the chunk cache can raise them without importing Falcon.
"""


class Caterva2Error(Exception):
    """An error with an HTTP status and a `detail` shown to the client."""

    status: int = 500
    headers: dict[str, str] | None = None  # sent with the error answer

    def __init__(self, detail: object) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(Caterva2Error):
    status = 400


class Unauthorized(Caterva2Error):
    status = 401


class Forbidden(Caterva2Error):
    status = 403


class NotFound(Caterva2Error):
    status = 404


class Conflict(Caterva2Error):
    status = 409


class PreconditionFailed(Caterva2Error):
    """`If-Match` names a version that is not the current one."""

    status = 412


class ContentTooLarge(Caterva2Error):
    status = 413


class UnsupportedMediaType(Caterva2Error):
    status = 415


class TooManyRequests(Caterva2Error):
    """Throttled: try again after `retry_after` seconds (sent as `Retry-After`)."""

    status = 429

    def __init__(self, detail: object, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(Caterva2Error):
    status = 503


class ValidationError(Caterva2Error):
    """A malformed request field, answered 422 like FastAPI does."""

    status = 422

    def __init__(self, where: str, name: str, msg: str, kind: str = "missing", value=None):
        super().__init__([{"type": kind, "loc": [where, name], "msg": msg, "input": value}])
