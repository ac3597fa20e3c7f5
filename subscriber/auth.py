"""Who is calling: the `c2subauth` cookie turned into a user, for every request."""

from __future__ import annotations

import falcon

from .store import Store, User

COOKIE_NAME = "c2subauth"


class AuthMiddleware:
    """Sets `req.context.user` to the logged-in user, or None (anonymous)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.user = None
        req.context.token = None
        if self.store is None:
            return
        values = req.get_cookie_values(COOKIE_NAME)
        for token in values or ():
            user = self.store.user_for_token(token)
            if user is not None:
                req.context.user = user
                req.context.token = token
                return


def set_login_cookie(resp: falcon.Response, token: str, secure: bool = False) -> None:
    """The one cookie a login answers with (clients replay the first cookie verbatim).

    `secure`: sent back over https only (when the subscriber's urlbase is https).
    """
    resp.set_cookie(COOKIE_NAME, token, http_only=True, path="/", secure=secure, same_site="Lax")


def clear_login_cookie(resp: falcon.Response, secure: bool = False) -> None:
    # Written by hand: Falcon drops a zero Max-Age, and browsers need it to forget the cookie.
    flags = "; Secure" if secure else ""
    resp.append_header(
        "Set-Cookie", f'{COOKIE_NAME}=""; HttpOnly; Max-Age=0; Path=/; SameSite=lax{flags}'
    )


def require_user(req: falcon.Request, message: str = "Unauthorized") -> User:
    """The caller, or 401 when anonymous."""
    from ..common.errors import Unauthorized

    user = req.context.user
    if user is None:
        raise Unauthorized(message)
    return user


def require_superuser(user: User | None, action: str) -> User:
    """The caller when a superuser: 401 when anonymous, 403 for other users."""
    from ..common.errors import Forbidden, Unauthorized

    if user is None:
        raise Unauthorized(f"{action} requires authentication")
    if not user.is_superuser:
        raise Forbidden(f"{action} is for superusers only")
    return user


def check_follow(user: User | None, logins: bool, unfollow: bool = False) -> None:
    """Following (or mirroring) a remote root needs a login; unfollowing it, a superuser.

    A remote root's cache is shared by every user of the subscriber, so dropping it
    is an administrator's decision. Without logins there is nobody to ask.
    """
    from ..common.errors import Unauthorized

    if not logins:
        return
    if unfollow:
        require_superuser(user, "Unsubscribing a remote root")
    elif user is None:
        raise Unauthorized("Subscribing to a remote root requires authentication")
