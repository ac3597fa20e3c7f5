"""The subscriber's WSGI application: routes, error bodies and the shared state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import falcon

from ..common.access_log import AccessLog
from ..common.falcon_app import new_app
from . import (
    api_compute,
    api_data,
    api_docs,
    api_ingest,
    api_users,
    hdf5_shells,
    hdf5_unfold,
    url_loading,
    web,
)
from .auth import AuthMiddleware
from .chunked_ingestion import Ingestion
from .compute_budget import Runner
from .file_ops import FileOps
from .follower import Follower
from .local_roots import LocalRoots
from .login_throttle import ThrottledLogins
from .origin_check import OriginGuard
from .remote_roots import RemoteRoots
from .root_registry import RootRegistry
from .settings import SubscriberSettings
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Subscriber:
    """The WSGI app with the state it serves."""

    app: falcon.App
    store: Store | None
    roots: LocalRoots
    remote: RemoteRoots | None = None
    follower: Follower | None = None
    compute: Runner | None = None  # the pool of computing requests

    def close(self) -> None:
        if self.compute is not None:
            self.compute.close()
        hdf5_shells.close_pool()
        if self.follower is not None:
            self.follower.close()
        if self.remote is not None:
            self.remote.close()
        if self.store is not None:
            self.store.close()


def create_subscriber(
    settings: SubscriberSettings, remote_with: Callable[[Store], RemoteRoots] | None = None
) -> Subscriber:
    """Build the Falcon app serving `settings.statedir`.

    `remote_with`: makes the remote roots from the store instead of following a
    broker (remote roots known from the store alone, as when the broker is away).
    """
    # The store always exists (it also holds remote roots); users only matter with logins.
    store = Store(settings.statedir, settings.secret)
    roots = LocalRoots(settings.statedir, settings.login)
    remote = follower = None
    if remote_with is not None:
        remote = remote_with(store)
    elif settings.broker_url:
        remote = RemoteRoots(
            store,
            settings.statedir,
            owners=settings.root_owners,
            publisher_ca_file=settings.publisher_ca_file,
            cache_size=settings.cache_size,
            upstream=settings.upstream,
            root_upstreams=settings.root_upstreams,
            cache_quotas=settings.cache_quotas,
        )
        follower = Follower(
            remote,
            settings.broker_url,
            settings.subscriber_id,
            mirror_rate=settings.mirror_rate,
            mirror_bandwidth=settings.mirror_bandwidth,
            queue_expiry=settings.queue_expiry,
            silent_after=settings.silent_after,
        )
    ops = FileOps(roots, settings.quota)
    ingestion = Ingestion(ops)
    ops.claim_upload = ingestion.claim_upload  # an upload of an empty array lays one out
    app = new_app(
        middleware=[
            AccessLog(),  # first: its time covers the other middleware too
            OriginGuard(settings.urlbase),
            AuthMiddleware(store if settings.login else None),
        ]
    )
    app.resp_options.secure_cookies_by_default = False

    # lazyexpr, concat, stack, append; `expressions` also serves reads of saved expressions.
    expressions = api_compute.register(app, roots, remote, ops, settings)
    registry = RootRegistry(roots, remote, expressions)
    app.add_route("/api/roots", api_data.RootsResource(registry))
    for verb, resource in (
        ("list", api_data.ListResource(registry)),
        # Info and fetch show a staged array to its writers; chunk also takes writes.
        ("info", api_ingest.StagedInfo(api_data.InfoResource(registry), ingestion)),
        ("fetch", api_ingest.StagedFetch(api_data.FetchResource(registry), ingestion)),
        ("chunk", api_ingest.ChunkRoute(api_data.ChunkResource(registry), ingestion)),
        ("download", api_data.DownloadResource(registry)),
        ("upload", api_data.UploadResource(ops)),
        ("remove", api_ingest.StagedRemove(api_data.RemoveResource(ops), ingestion)),
    ):
        app.add_route(f"/api/{verb}/{{path:path}}", resource)
    api_ingest.register(app, ingestion)
    app.add_route("/api/move", api_data.TransferResource(ops, move=True))
    app.add_route("/api/copy", api_data.TransferResource(ops, move=False))
    app.add_route("/api/unfold/{path:path}", hdf5_unfold.UnfoldResource(ops))
    policy = url_loading.UrlPolicy.from_hosts(
        settings.load_from_url_hosts,
        settings.load_from_url_max_size,
        settings.load_from_url_timeout,
    )
    app.add_route("/api/load_from_url/{path:path}", url_loading.LoadFromUrlResource(ops, policy))
    app.add_route("/api/subscribe/{name:path}", api_data.SubscribeResource(registry))
    app.add_route("/api/unsubscribe/{name:path}", api_data.UnsubscribeResource(registry))

    # One throttle for the API's logins and the login page's.
    logins = ThrottledLogins(store, settings.throttle_limits)
    if settings.login:
        secure = settings.secure_cookies
        app.add_route("/auth/jwt/login", api_users.LoginResource(store, logins, secure))
        app.add_route("/auth/jwt/logout", api_users.LogoutResource(store, secure))
        forgot = api_users.ForgotPasswordResource(store, settings.urlbase)
        app.add_route("/auth/forgot-password", forgot)
        app.add_route("/auth/reset-password", api_users.ResetPasswordResource(store))
        app.add_route("/api/adduser", api_users.AddUserResource(store, settings.maxusers))
        app.add_route("/api/deluser/{username}", api_users.DelUserResource(store, roots))
        app.add_route("/api/listusers", api_users.ListUsersResource(store))
        if settings.register:
            app.add_route("/auth/register", api_users.RegisterResource(store, settings.maxusers))
    pages = web.register(app, store, registry, ops, settings, logins)
    api_docs.register(app, settings, pages)
    return Subscriber(app, store, roots, remote, follower, expressions.runner)
