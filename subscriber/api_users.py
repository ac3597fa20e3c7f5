"""REST resources for accounts: login, logout, registration and user management."""

from __future__ import annotations

import falcon

from ..common.errors import BadRequest, Conflict, Unauthorized, ValidationError
from . import mail, passwords
from .api_data import json_body
from .auth import clear_login_cookie, require_superuser, require_user, set_login_cookie
from .local_roots import LocalRoots
from .login_throttle import ThrottledLogins
from .store import EMAIL_RE, Store
from .user_accounts import check_room_for_user, delete_user


class LoginResource:
    def __init__(self, store: Store, logins: ThrottledLogins, secure: bool = False) -> None:
        self.store = store
        self.logins = logins
        self.secure = secure

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not (req.content_type or "").startswith("application/x-www-form-urlencoded"):
            raise ValidationError("body", "username", "Field required (a form is expected)")
        form = req.get_media() or {}
        for key in ("username", "password"):
            if not form.get(key):
                raise ValidationError("body", key, "Field required")
        user = self.logins.authenticate(
            str(form["username"]), str(form["password"]), req.remote_addr or ""
        )
        if user is None:
            raise BadRequest("LOGIN_BAD_CREDENTIALS")
        set_login_cookie(resp, self.store.create_token(user), self.secure)
        resp.status = falcon.HTTP_204


class LogoutResource:
    def __init__(self, store: Store, secure: bool = False) -> None:
        self.store = store
        self.secure = secure

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_user(req)
        self.store.delete_token(req.context.token)
        clear_login_cookie(resp, self.secure)
        resp.status = falcon.HTTP_204


class RegisterResource:
    def __init__(self, store: Store, maxusers: int | None) -> None:
        self.store = store
        self.maxusers = maxusers

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, "email", "password")
        email, password = str(body["email"]), str(body["password"])
        if not EMAIL_RE.match(email):
            raise ValidationError(
                "body", "email", "value is not a valid email address", "value_error", email
            )
        problem = passwords.password_problem(password)
        if problem:
            raise BadRequest({"code": "REGISTER_INVALID_PASSWORD", "reason": problem})
        check_room_for_user(self.store, self.maxusers)
        try:
            user = self.store.add_user(email, password)
        except Conflict:
            raise BadRequest("REGISTER_USER_ALREADY_EXISTS") from None
        data = user.public_dict()
        del data["hashed_password"]
        resp.media = data
        resp.status = falcon.HTTP_201


def _json_null(resp: falcon.Response) -> None:
    """Answer JSON `null`, as the original does (falcon would send no body for media None)."""
    resp.content_type = falcon.MEDIA_JSON
    resp.data = b"null"


class ForgotPasswordResource:
    """Mail a password-reset link; 202 whether or not the account exists."""

    def __init__(self, store: Store, urlbase: str) -> None:
        self.store = store
        self.urlbase = urlbase

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, "email")
        mail.request_reset(self.store, str(body["email"]), self.urlbase)
        _json_null(resp)
        resp.status = falcon.HTTP_202


class ResetPasswordResource:
    def __init__(self, store: Store) -> None:
        self.store = store

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, "token", "password")
        self.store.reset_password(str(body["token"]), str(body["password"]))
        _json_null(resp)


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _lax_bool(value: object) -> bool | None:
    """A JSON boolean as FastAPI takes it (true, 1, "yes"...), or None when it is none."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return None


class AddUserResource:
    def __init__(self, store: Store, maxusers: int | None) -> None:
        self.store = store
        self.maxusers = maxusers

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = require_user(req)
        if not caller.is_superuser:
            raise Unauthorized("Only superusers can add users")
        body = json_body(req, "username", "password", "superuser")
        name, password, superuser = body["username"], body["password"], body["superuser"]
        if not isinstance(name, str):
            raise ValidationError(
                "body", "username", "Input should be a valid string", "string_type"
            )
        if password is not None and not isinstance(password, str):
            raise ValidationError(
                "body", "password", "Input should be a valid string", "string_type"
            )
        superuser = _lax_bool(superuser)
        if superuser is None:
            raise ValidationError(
                "body", "superuser", "Input should be a valid boolean", "bool_parsing"
            )
        if self.store.get_user_by_email(name) is None:
            check_room_for_user(self.store, self.maxusers)
            try:
                self.store.add_user(name, password or passwords.random_password(), superuser)
            except BadRequest as exc:
                raise BadRequest(f"Error in adding {name}: {exc.detail}") from None
            except Conflict:
                pass  # added meanwhile by someone else: the same outcome
        shown = "None" if password is None else repr(str(password))
        resp.media = f"User added: username={name!r} password={shown} superuser={superuser}"


class DelUserResource:
    changes_state_on_get = True  # a GET, as in the original API: `OriginGuard` checks it

    def __init__(self, store: Store, roots: LocalRoots) -> None:
        self.store = store
        self.roots = roots

    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        caller = require_user(req)
        if not caller.is_superuser:
            raise Unauthorized("Only superusers can delete users")
        delete_user(self.store, self.roots, username)
        resp.media = f"User deleted: {username}"


class ListUsersResource:
    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Accounts, their flags and their @personal folders are an administrator's business.
        require_superuser(req.context.user, "Listing users")
        resp.media = [u.public_dict() for u in self.store.list_users(req.get_param("username"))]
