"""Where every page of the web GUI is routed."""

from __future__ import annotations

import falcon

from ..file_ops import FileOps
from ..login_throttle import ThrottledLogins
from ..root_registry import RootRegistry
from ..settings import SubscriberSettings
from ..store import Store
from .accounts import ForgotPasswordPage, LoginPage, LogoutPage, RegisterPage, ResetPasswordPage
from .actions import CommandAction, DeleteAction, TransferAction, UploadAction
from .browsing import BrowsePage, ChangesResource, HomePage, ImageResource, SubscribeAction
from .site import STATIC, Favicon, Web


def register(
    app: falcon.App,
    store: Store | None,
    registry: RootRegistry,
    ops: FileOps,
    settings: SubscriberSettings,
    logins: ThrottledLogins | None = None,
) -> Web:
    """Add the web GUI's routes to the subscriber's app."""
    web = Web(store, registry, ops, settings, logins)
    home = HomePage(web)
    app.add_route("/", home)
    app.add_route("/roots", home)
    app.add_route("/roots/{path:path}", BrowsePage(web))
    app.add_route("/web/image/{path:path}", ImageResource(web))
    app.add_route("/web/changes", ChangesResource(web))
    app.add_route("/web/command", CommandAction(web))
    app.add_route("/web/upload/{path:path}", UploadAction(web))
    app.add_route("/web/delete/{path:path}", DeleteAction(web))
    app.add_route("/web/transfer/{path:path}", TransferAction(web))
    app.add_route("/web/subscribe/{path:path}", SubscribeAction(web))
    app.add_route("/web/unsubscribe/{path:path}", SubscribeAction(web, unsubscribe=True))
    app.add_route("/favicon.ico", Favicon(web))
    if web.store is not None:
        app.add_route("/login", LoginPage(web))
        app.add_route("/logout", LogoutPage(web))
        forgot = ForgotPasswordPage(web)
        app.add_route("/forgot-password", forgot)
        app.add_route("/forgot-password-ok", forgot)
        app.add_route("/reset-password/{token}", ResetPasswordPage(web))
        if settings.register:
            app.add_route("/register", RegisterPage(web))
    app.add_static_route("/static", str(STATIC))
    return web
