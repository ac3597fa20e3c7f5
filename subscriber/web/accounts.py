"""Account pages: log in and out, register, forgotten and reset passwords."""

from __future__ import annotations

import falcon

from ...common.errors import BadRequest, Conflict, NotFound
from .. import mail, passwords
from ..auth import clear_login_cookie, set_login_cookie
from ..store import EMAIL_RE
from ..user_accounts import users_full
from .site import Page, _form_value, form_of, guarded, safe_next


class LoginPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.store is None:
            raise NotFound("Logins are disabled on this subscriber.")
        target = safe_next(req.get_param("next"))
        if web.user(req) is not None:
            web.redirect(req, resp, target)
            return
        web.render(req, resp, "login.html", title="Log in", next=target, email="", form_error=None)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.store is None:
            raise NotFound("Logins are disabled on this subscriber.")
        form = form_of(req)
        email, password = _form_value(form, "username").strip(), _form_value(form, "password")
        target = safe_next(_form_value(form, "next"))
        problem = None
        if not email or not password:
            problem = "Enter your email and your password."
        else:
            user = web.logins.authenticate(email, password, req.remote_addr or "")
            if user is None:
                problem = "Wrong email or password. Please try again."
        if problem:
            web.render(
                req,
                resp,
                "login.html",
                falcon.HTTP_400,
                title="Log in",
                next=target,
                email=email,
                form_error=problem,
            )
            return
        set_login_cookie(resp, web.store.create_token(user), web.secure_cookies)
        web.flash(resp, f"Welcome, {user.email}.")
        web.redirect(req, resp, target)


class LogoutPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.user(req) is None:
            web.redirect(req, resp, "/")
            return
        web.render(
            req,
            resp,
            "confirm.html",
            title="Log out",
            question=f"Log out {web.user(req).email}?",
            action="/logout",
            button="Log out",
            fields={},
            cancel="/",
        )

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.store is not None and req.context.token:
            web.store.delete_token(req.context.token)
        clear_login_cookie(resp, web.secure_cookies)
        web.flash(resp, "You are logged out.")
        web.redirect(req, resp, "/")


class RegisterPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.user(req) is not None:
            web.redirect(req, resp, "/")
            return
        web.render(req, resp, "register.html", title="Create an account", email="", form_error=None)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        form = form_of(req)
        email = _form_value(form, "email").strip()
        password, again = _form_value(form, "password"), _form_value(form, "password2")
        problem = None
        if not EMAIL_RE.match(email):
            problem = "Enter a valid email address."
        elif passwords.password_problem(password):
            problem = passwords.password_problem(password) + "."
        elif password != again:
            problem = "The two passwords differ."
        elif users_full(web.store, web.settings.maxusers):
            problem = "This subscriber has reached its maximum number of users."
        else:
            try:
                user = web.store.add_user(email, password)
            except Conflict:
                problem = "An account with this email already exists. Log in instead?"
            except BadRequest as exc:
                problem = str(exc.detail)
        if problem:
            web.render(
                req,
                resp,
                "register.html",
                falcon.HTTP_400,
                title="Create an account",
                email=email,
                form_error=problem,
            )
            return
        set_login_cookie(resp, web.store.create_token(user), web.secure_cookies)
        web.flash(resp, f"Welcome, {email}: your account is ready.")
        web.redirect(req, resp, "/")


class ForgotPasswordPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        sent = req.path.endswith("-ok")
        web.render(req, resp, "forgot_password.html", title="Forgotten password", sent=sent)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        email = _form_value(form_of(req), "email").strip()
        if not EMAIL_RE.match(email):
            web.render(
                req,
                resp,
                "forgot_password.html",
                falcon.HTTP_400,
                title="Forgotten password",
                sent=False,
                form_error="Enter a valid email address.",
            )
            return
        mail.request_reset(web.store, email, web.settings.urlbase)
        web.redirect(req, resp, "/forgot-password-ok")


class ResetPasswordPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        self.web.render(req, resp, "reset_password.html", title="New password", token=token)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        web = self.web
        form = form_of(req)
        password, again = _form_value(form, "password"), _form_value(form, "password2")
        problem = None
        if password != again:
            problem = "The two passwords differ."
        else:
            try:
                user = web.store.reset_password(token, password)
            except BadRequest as exc:
                detail = exc.detail
                problem = (
                    f"{detail['reason']}."
                    if isinstance(detail, dict)
                    else "This link is not valid any more: ask for a new one."
                )
        if problem:
            web.render(
                req,
                resp,
                "reset_password.html",
                falcon.HTTP_400,
                title="New password",
                token=token,
                form_error=problem,
            )
            return
        web.flash(resp, f"Your password is changed, {user.email}: log in with it.")
        web.redirect(req, resp, "/login")
