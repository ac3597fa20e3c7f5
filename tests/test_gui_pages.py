"""The web GUI's pages in-process (no browser): remote roots, change stamps, guards, no logins."""

from __future__ import annotations

import time

import blosc2
import falcon
import falcon.testing
import httpx
import numpy as np
import pytest

from caterva2.common import b2meta
from caterva2.subscriber import web
from caterva2.subscriber.auth import AuthMiddleware
from caterva2.subscriber.file_ops import FileOps
from caterva2.subscriber.local_roots import LocalRoots
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.settings import SubscriberSettings
from caterva2.subscriber.store import Store
from caterva2.subscriber.web import images, views
from caterva2.subscriber.web.commands import resolve

from .services import free_port


@pytest.fixture
def gui(tmp_path):
    """The web routes over a real store with a remote root whose publisher is down."""
    settings = SubscriberSettings(statedir=tmp_path, login=True, secret="s3cret")
    store = Store(tmp_path, settings.secret)
    roots = LocalRoots(tmp_path, True)
    remote = RemoteRoots(store, tmp_path)
    app = falcon.App(middleware=[AuthMiddleware(store)])
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.secure_cookies_by_default = False
    web.register(app, store, roots, FileOps(roots, None), remote, settings)
    store.upsert_root("faraway", f"http://127.0.0.1:{free_port()}", "etag-1", True)
    yield falcon.testing.TestClient(app), store
    remote.close()
    store.close()


def admin(store: Store) -> dict[str, str]:
    """Headers of a logged-in superuser: following and dropping remote roots needs one."""
    user = store.get_user_by_email("admin@example.com") or store.add_user(
        "admin@example.com", "adminpass1", True
    )
    return {"Cookie": f"c2subauth={store.create_token(user)}"}


def meta_of(values) -> dict:
    return b2meta.container_meta(blosc2.asarray(np.asarray(values)), None, time.time())


def test_subscribe_to_a_remote_root_with_one_click(gui):
    client, store = gui
    home = client.simulate_get("/")
    assert 'data-subscribe="faraway"' in home.text and "online" in home.text
    page = client.simulate_get("/roots/faraway")
    assert "does not follow it yet" in page.text
    assert client.simulate_post("/web/subscribe/faraway").status_code == 401  # anonymous
    resp = client.simulate_post("/web/subscribe/faraway", headers=admin(store))
    assert resp.status_code == 303 and resp.headers["location"] == "/roots/faraway"
    assert "faraway" in store.subscriptions()
    assert "following" in client.simulate_get("/").text

    store.put_dataset("faraway", "a/x.b2nd", "e1", meta_of(np.arange(10)))
    listing = client.simulate_get("/roots/faraway")
    assert 'data-path="faraway/a/x.b2nd"' in listing.text
    info = client.simulate_get("/roots/faraway/a/x.b2nd", params={"view": "info"})
    assert info.status_code == 200 and "10" in info.text and "Compression" in info.text
    # Reading values needs the publisher: a clear message, not a traceback.
    data = client.simulate_get("/roots/faraway/a/x.b2nd")
    assert data.status_code == 503
    assert "panel-error" in data.text and "Traceback" not in data.text

    confirm = client.simulate_get("/web/unsubscribe/faraway")
    assert "Stop following faraway?" in confirm.text
    assert client.simulate_post("/web/unsubscribe/faraway", headers=admin(store)).status_code == 303
    assert "faraway" not in store.subscriptions()


def test_change_stamps_follow_remote_and_local_changes(gui, tmp_path):
    client, store = gui

    def stamp(path: str = "") -> str:
        return client.simulate_get("/web/changes", params={"path": path} if path else {}).json[
            "stamp"
        ]

    roots_before = stamp()
    client.simulate_post("/web/subscribe/faraway", headers=admin(store))
    assert stamp() != roots_before  # followed
    store.put_dataset("faraway", "x.b2nd", "e1", meta_of([1, 2]))
    first = stamp("faraway")
    assert stamp("faraway") == first  # stable while nothing changes
    store.put_dataset("faraway", "x.b2nd", "e2", meta_of([1, 2, 3]))
    assert stamp("faraway") != first
    store.upsert_root("faraway", "http://127.0.0.1:1", "etag-2", False)
    offline = stamp()
    assert "offline" in client.simulate_get("/").text and offline != roots_before

    public = stamp("@public")
    blosc2.asarray(np.arange(3), urlpath=str(tmp_path / "public" / "new.b2nd"), mode="w")
    assert stamp("@public") != public
    assert stamp("@personal") == "error-401"  # anonymous: the page will say why


def test_forms_from_other_sites_are_refused(gui):
    client, _ = gui
    resp = client.simulate_post("/web/subscribe/faraway", headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403 and "another site" in resp.text


def test_security_headers_and_assets(gui):
    client, _ = gui
    page = client.simulate_get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("app.js", "app.css", "favicon.svg"):
        assert client.simulate_get(f"/static/{asset}").status_code == 200


def test_markdown_is_rendered_without_raw_html():
    html = views.render_markdown("# T\n\n<script>x()</script> [a](javascript:alert(1))")
    assert "<h1>T</h1>" in html and "<script>" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html  # shown as text


def test_table_windows_and_slices():
    meta = views.Meta("array", shape=(10, 20), dtype=np.dtype("uint16"))
    assert views.default_texts(meta.shape, False) == ["0:10", "0:12"]
    ax, note = views.parse_axis(0, 1000, "0:2000", views.MAX_ROWS)
    assert (ax.start, ax.stop) == (0, views.MAX_ROWS) and note
    with pytest.raises(Exception, match="out of range for axis 1"):
        views.parse_axis(1, 5, "7", views.MAX_ROWS)
    assert views.fmt_value(np.complex128(1 - 2j)) == "1-2j"
    assert images.to_uint8(np.array([[0.0, 0.5], [1.0, np.nan]]))[1, 0] == 255


def test_command_paths_resolve_against_the_folder_shown():
    assert resolve("ds.b2nd", "@public/dir1") == "@public/dir1/ds.b2nd"
    assert resolve("../x", "@public/dir1") == "@public/x"
    assert resolve("@shared/y", "@public") == "@shared/y"
    with pytest.raises(Exception, match="leaves the root"):
        resolve("../../x", "@public/dir1")


def test_without_logins_the_gui_is_read_only(sub_nologin):
    home = httpx.get(f"{sub_nologin.urlbase}/")
    assert home.status_code == 200 and "Logins are disabled" in home.text
    assert "Log in" not in home.text
    folder = httpx.get(f"{sub_nologin.urlbase}/roots/@public")
    assert "Upload to" not in folder.text
    assert httpx.get(f"{sub_nologin.urlbase}/login").status_code == 404
    resp = httpx.post(
        f"{sub_nologin.urlbase}/web/delete/@public/ds-1d.b2nd", follow_redirects=False
    )
    assert resp.status_code == 401 and "Traceback" not in resp.text
    assert httpx.get(f"{sub_nologin.urlbase}/api/info/@public/ds-1d.b2nd").status_code == 200


def test_roots_page_shows_who_publishes_a_remote_root_its_refusals_and_its_cache(gui):
    client, store = gui
    store.set_root_owner("faraway", "pub-faraway")
    store.record_refusal("faraway", "announcement for root 'faraway' from 'intruder'")
    store.add_subscription("faraway")
    home = client.simulate_get("/").text
    assert "published by broker user <code>pub-faraway</code>" in home
    assert "1 refused" in home
    assert "cache 0 B" in home and "0 evictions" in home  # nothing read yet
