"""The web GUI in a real browser: Debian's headless Chromium driven by Playwright.

Screenshots of the main pages go to `artifacts/screenshots/` (ignored by git).
`CATERVA2_DOC_SCREENSHOTS=1` also refreshes the ones kept in `doc/`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

from caterva2.subscriber.store import Store

from .gui_support import LAPTOP, PHONE, browser_tab, chromium, shot, table_cell, wait_until
from .services import SECRET, SubscriberProcess, populate_from_examples


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, sub):
    """A fresh browser tab (own cookies) on the subscriber; fails on any JavaScript error."""
    with browser_tab(browser, sub.urlbase) as tab:
        yield tab


def login(tab, creds: tuple[str, str]) -> None:
    tab.goto("/login")
    tab.fill("#username", creds[0])
    tab.fill("#password", creds[1])
    tab.click("#login-form button[type=submit]")
    tab.wait_for_selector("#user-menu")


def no_traceback(tab) -> None:
    text = tab.content()
    assert "Traceback" not in text and 'File "' not in text


def api_client(sub, creds: tuple[str, str]) -> httpx.Client:
    client = httpx.Client(base_url=sub.urlbase, timeout=10)
    resp = client.post("/auth/jwt/login", data={"username": creds[0], "password": creds[1]})
    assert resp.status_code == 204, resp.text
    return client


def upload_array(client: httpx.Client, path: str, values: np.ndarray, tmp_path: Path) -> None:
    local = tmp_path / path.rsplit("/", 1)[-1]
    blosc2.asarray(values, urlpath=str(local), mode="w")
    with open(local, "rb") as f:
        resp = client.post(f"/api/upload/{path}", files={"file": (local.name, f)})
    assert resp.status_code == 200, resp.text


def test_user_journey(page, sub, tmp_path):
    """Log in, browse, slice, filter, scrub a stack, upload, delete, log out."""
    tab = page
    login(tab, sub.user)
    tab.goto("/")
    assert "@personal" in tab.locator("#roots h2").all_inner_texts()
    shot(tab, "roots")

    # Browse to @public/dir1/ds-2d.b2nd with clicks only.
    tab.click("#roots >> text=@public")
    tab.click("a[data-folder=dir1]")
    tab.click("#path-list a[data-path='@public/dir1/ds-2d.b2nd']")
    assert tab.inner_text("h1") == "ds-2d.b2nd"
    assert table_cell(tab, 0, 0) == "0" and table_cell(tab, 1, 0) == "20"

    # A slice chosen per axis, then the next page of rows.
    tab.fill("#s0", "2:5")
    tab.fill("#s1", "3:8")
    tab.click("#show-slice")
    tab.wait_for_url(re.compile(r"s0=2%3A5"))
    assert table_cell(tab, 0, 0) == "43"  # values are 20 * row + column
    assert tab.locator("#data-table tbody tr").count() == 3
    assert tab.locator("#data-table thead th").count() == 6
    shot(tab, "dataset-2d")
    tab.click("a[data-page=row_next] >> nth=0")
    assert table_cell(tab, 0, 0) == "103"  # rows 5:8
    tab.click("a[data-tab=info]")
    assert "ZSTD" in tab.inner_text("#compression-table")
    assert "10 × 20" in tab.inner_text("#meta-table")

    # A structured table: filter and sort computed on the server.
    tab.goto("/roots/@public/ds-1d-fields.b2nd")
    tab.fill("#filter", "(a >= 990) & (b > 0)")
    tab.select_option("#sort", "a")
    tab.check("input[name=desc]")
    tab.click("#apply-filter")
    assert "10 rows match" in tab.inner_text("#matches")
    assert table_cell(tab, 0, 0) == "999" and table_cell(tab, 9, 0) == "990"
    shot(tab, "structured-filter")
    tab.click("#data-table thead a:text-is('a ▼')")  # click the header: ascending
    assert table_cell(tab, 0, 0) == "990"
    tab.uncheck("input[name=f][value=c]")
    tab.click("#apply-filter")
    assert "c" not in tab.locator("#data-table thead th").all_inner_texts()

    # An image stack (the tomography view) with its slider.
    client = api_client(sub, sub.user)
    z, y, x = np.mgrid[0:16, 0:64, 0:64]
    r = np.hypot(x - 32, y - 28)
    radius = 10 + 1.3 * z  # a cone seen slice by slice, with a ring inside
    stack = ((r < radius) * 150 + (np.abs(r - 0.55 * radius) < 1.5) * 100).astype(np.uint8)
    upload_array(client, "@personal/tomo/stack.b2nd", stack, tmp_path)
    tab.goto("/roots/@personal/tomo/stack.b2nd?view=image")
    img = tab.locator("#plane")
    assert "i=8" in img.get_attribute("src")
    tab.focus("#slice")
    tab.keyboard.press("ArrowRight")
    wait_until(tab, "() => document.querySelector('#plane').src.includes('i=9')")
    wait_until(tab, "() => document.querySelector('#plane').complete")
    assert tab.evaluate("document.querySelector('#plane').naturalWidth") == 64
    assert tab.inner_text("#slice-label") == "9"
    assert "i=9" in tab.url
    shot(tab, "stack")
    png = client.get("/web/image/@personal/tomo/stack.b2nd", params={"axis": 0, "i": 9})
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"

    # Upload with the file picker, see it rendered, delete it (after confirming).
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nSome *text* <script>alert(1)</script>\n")
    tab.goto("/roots/@personal")
    tab.set_input_files("#upload-file", str(notes))
    tab.click("#upload-button")
    tab.wait_for_url(re.compile(r"/roots/@personal/notes\.md"))
    assert "Uploaded @personal/notes.md" in tab.inner_text("#flash")
    assert tab.inner_text("#content h1") == "Notes"
    assert tab.locator("#content script").count() == 0  # raw HTML is shown, never run
    tab.click("#delete")
    assert "cannot be undone" in tab.inner_text("#question")
    tab.click("#confirm")
    tab.wait_for_url(re.compile(r"/roots/@personal$"))
    assert "Deleted @personal/notes.md" in tab.inner_text("#flash")
    assert tab.locator("[data-path='@personal/notes.md']").count() == 0

    # Upload by drag and drop.
    tab.evaluate(
        """() => {
        const data = new DataTransfer();
        data.items.add(new File(["dropped text"], "dropped.txt", {type: "text/plain"}));
        const zone = document.querySelector("form[data-dropzone]");
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    }"""
    )
    tab.wait_for_url(re.compile(r"/roots/@personal/dropped\.txt"))
    assert tab.inner_text("#content") == "dropped text"
    client.post("/api/remove/@personal/dropped.txt")

    # Log out from the user menu.
    tab.click("#user-menu summary")
    tab.keyboard.press("Escape")
    assert tab.evaluate("document.querySelector('#user-menu').open") is False
    tab.click("#user-menu summary")
    tab.click("#logout")
    tab.wait_for_selector("#login-link")
    assert "logged out" in tab.inner_text("#flash")
    tab.goto("/roots/@personal")
    assert "Log in to see @personal" in tab.inner_text("#error-message")


def test_anonymous_cannot_see_personal(page, sub, tmp_path):
    client = api_client(sub, sub.user)
    upload_array(client, "@personal/secret-ds.b2nd", np.arange(5), tmp_path)
    tab = page
    tab.goto("/")
    cards = tab.locator("#roots h2").all_inner_texts()
    assert cards == ["@public"]
    resp = tab.goto("/roots/@personal")
    assert resp.status == 401
    assert "Log in to see @personal" in tab.inner_text("#error-message")
    assert "secret-ds" not in tab.content()
    assert tab.goto("/roots/@personal/secret-ds.b2nd").status == 401
    assert "secret-ds.b2nd" not in tab.inner_text("main").replace("Log in", "")
    assert httpx.get(f"{sub.urlbase}/web/image/@personal/secret-ds.b2nd").status_code == 401
    # Logging in from the error page leads back to the page asked for.
    tab.fill("#username", sub.user[0])
    tab.fill("#password", sub.user[1])
    tab.click("#login-form button[type=submit]")
    tab.wait_for_url(re.compile(r"/roots/@personal/secret-ds\.b2nd"))
    assert table_cell(tab, 4, 0) == "4"


def test_clear_messages_never_tracebacks(page, sub):
    tab = page
    # A wrong password.
    tab.goto("/login")
    tab.fill("#username", sub.user[0])
    tab.fill("#password", "not-the-password")
    tab.click("#login-form button[type=submit]")
    assert "Wrong email or password" in tab.inner_text("#form-error")
    no_traceback(tab)
    shot(tab, "login-error")

    # An expired session.
    store = Store(sub.statedir, SECRET)
    user = store.get_user_by_email(sub.user[0])
    token = store.create_token(user, lifetime=-1)
    store.close()
    host = sub.urlbase.split("//", 1)[1].split(":")[0]
    tab.context.add_cookies([{"name": "c2subauth", "value": token, "domain": host, "path": "/"}])
    resp = tab.goto("/roots/@personal")
    assert resp.status == 401
    assert "Your session has expired" in tab.inner_text("#error-message")
    assert tab.is_visible("#login-form")
    no_traceback(tab)
    tab.goto("/")  # the stale cookie was dropped: no repeated warning
    assert "expired" not in tab.inner_text("body")

    # A dataset that no longer exists.
    resp = tab.goto("/roots/@public/dir1/gone.b2nd")
    assert resp.status == 404
    assert "@public/dir1/gone.b2nd does not exist" in tab.inner_text("#error-message")
    assert tab.is_visible("text=Go to @public/dir1")
    no_traceback(tab)

    # Slices out of range, malformed, or with too many axes.
    for query, message in (
        ("s0=50&s1=0:3", "Index 50 is out of range for axis 0 (size 10)"),
        ("s0=20:30&s1=0:3", "Slice '20:30' is out of range for axis 0 (size 10)"),
        ("s0=x&s1=0:3", "Axis 0: invalid slice"),
    ):
        resp = tab.goto(f"/roots/@public/dir1/ds-2d.b2nd?view=data&{query}")
        assert resp.status == 400
        assert message in tab.inner_text("#panel-error")
        assert tab.is_visible("#slice-form")  # the form stays, to fix the slice
        no_traceback(tab)
    tab.goto("/roots/@public/dir2/ds-4d.b2nd?s0=0:2&s1=0:2&s2=0:2&s3=0")
    assert "at most two axes" in tab.inner_text("#panel-error")
    tab.goto("/roots/@public/ds-1d-fields.b2nd?filter=nosuchfield>1")
    assert "'nosuchfield' is not a field" in tab.inner_text("#panel-error")
    tab.goto("/roots/@public/dir1/ds-3d.b2nd?view=image&axis=0&i=7")
    assert "Slice 7 is out of range for axis 0 (size 3)" in tab.inner_text("#panel-error")
    no_traceback(tab)


def test_search_as_you_type_and_keyboard(page, sub):
    tab = page
    tab.goto("/roots/@public")
    tab.keyboard.press("/")
    assert tab.evaluate("document.activeElement.id") == "q"
    tab.keyboard.type("fields")
    wait_until(tab, "() => document.querySelectorAll('#path-list a').length === 2")
    names = tab.locator("#path-list a .name").all_inner_texts()
    assert names == ["ds-1d-fields.b2nd", "ds-2d-fields.b2nd"]
    assert "q=fields" in tab.url
    tab.keyboard.press("ArrowDown")
    tab.keyboard.press("ArrowDown")
    tab.keyboard.press("Enter")
    tab.wait_for_url(re.compile(r"ds-2d-fields\.b2nd"))
    assert tab.inner_text("h1") == "ds-2d-fields.b2nd"
    # Every tab and table is reachable with the keyboard alone.
    tab.focus("a[data-tab=info]")
    tab.keyboard.press("Enter")
    tab.wait_for_url(re.compile(r"view=info"))
    tab.fill("#q", "zzz-nothing")
    tab.wait_for_selector("#path-list .empty")
    assert "Nothing matches" in tab.inner_text("#path-list")


def test_pages_refresh_by_themselves(page, sub, tmp_path):
    """A page polls /web/changes and re-renders itself when what it shows changes."""
    tab = page
    tab.goto("/roots/@public")
    tab.evaluate("window.__sameDocument = true")
    name = f"live-{uuid.uuid4().hex[:6]}.b2nd"
    client = api_client(sub, sub.user)
    upload_array(client, f"@public/{name}", np.arange(3), tmp_path)
    # The first change is found by the page's own polling (every 2 s)...
    tab.wait_for_selector(f"[data-path='@public/{name}']", timeout=10_000)
    assert tab.evaluate("window.__sameDocument") is True  # no reload: the list was replaced
    # ...the next ones are checked at once, to keep the test short.
    client.post(f"/api/remove/@public/{name}")
    tab.evaluate("window.caterva2.checkChanges()")
    tab.wait_for_selector(f"[data-path='@public/{name}']", state="detached", timeout=10_000)
    # The dataset page refreshes its values too, and says so when the dataset goes away.
    upload_array(client, f"@public/{name}", np.arange(3), tmp_path)
    tab.goto(f"/roots/@public/{name}")
    assert table_cell(tab, 2, 0) == "2"
    upload_array(client, f"@public/{name}", np.arange(3) * 10, tmp_path)
    tab.evaluate("window.caterva2.checkChanges()")
    wait_until(
        tab,
        "() => document.querySelector('#data-table tbody tr:nth-child(3) td')"
        "?.textContent === '20'",
    )
    client.post(f"/api/remove/@public/{name}")
    tab.evaluate("window.caterva2.checkChanges()")
    tab.wait_for_selector("#error-message", timeout=10_000)
    assert "does not exist" in tab.inner_text("#error-message")


def test_command_box(page, sub):
    tab = page
    login(tab, sub.user)
    tab.goto("/roots/@personal")

    def run(line: str) -> str:
        tab.fill("#command", line)
        tab.press("#command", "Enter")
        wait_until(
            tab,
            "line => document.querySelector('#command-output .cmd-line')?.textContent"
            ".includes(line)",
            line,
        )
        return tab.inner_text("#command-output")

    assert "copied to @personal/cmd/ds-1d.b2nd" in run("cp @public/ds-1d.b2nd cmd/")
    tab.wait_for_selector("[data-path='@personal/cmd/ds-1d.b2nd']")  # the list refreshed
    assert "cmd/ds-1d.b2nd" in run("ls")
    assert "[0 1 2]" in run("show cmd/ds-1d.b2nd[0:3]")
    assert "moved to @personal/cmd/renamed.b2nd" in run("mv cmd/ds-1d.b2nd cmd/renamed.b2nd")
    assert "Delete @personal/cmd/renamed.b2nd?" in run("rm cmd/renamed.b2nd")
    tab.click("#command-confirm")
    wait_until(
        tab, "() => document.querySelector('#command-output').textContent.includes('removed')"
    )
    assert "Only superusers can add users" in run("adduser new@example.com newpass123")
    assert "Unknown command" in run("frobnicate")
    assert "download" in run("help")
    shot(tab, "command")


def test_move_and_copy_ask_before_overwriting(page, sub):
    tab = page
    login(tab, sub.user)
    tab.goto("/roots/@public/ds-1d.b2nd")
    tab.click("#copy")
    tab.fill("#dst", "@shared/gui/")
    tab.click("#transfer")
    tab.wait_for_url(re.compile(r"/roots/@shared/gui/ds-1d\.b2nd"))
    assert "Copied @public/ds-1d.b2nd to @shared/gui/ds-1d.b2nd" in tab.inner_text("#flash")
    tab.goto("/roots/@public/dir1/ds-2d.b2nd")
    tab.click("#copy")
    tab.fill("#dst", "@shared/gui/ds-1d.b2nd")
    tab.click("#transfer")
    assert "already exists" in tab.inner_text("#question")
    tab.click("text=Cancel")
    tab.goto("/roots/@shared/gui/ds-1d.b2nd")
    tab.click("#move")
    tab.fill("#dst", "renamed.b2nd")
    tab.click("#transfer")
    tab.wait_for_url(re.compile(r"/roots/@shared/gui/renamed\.b2nd"))
    tab.click("#move")
    tab.fill("#dst", "@nowhere/x.b2nd")
    tab.click("#transfer")
    assert tab.is_visible("#form-error")
    no_traceback(tab)
    api_client(sub, sub.user).post("/api/remove/@shared/gui")


def test_phone_layout_and_content_views(browser, sub):
    context = browser.new_context(viewport=PHONE, base_url=sub.urlbase, is_mobile=True)
    tab = context.new_page()
    try:
        for url in (
            "/",
            "/roots/@public",
            "/roots/@public/dir1/ds-2d.b2nd",
            "/roots/@public/ds-2d-fields.b2nd",
        ):
            tab.goto(url)
            overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{url} scrolls sideways on a phone ({overflow}px)"
        tab.goto("/roots/@public/dir1/ds-2d.b2nd")
        # On a phone the dataset comes before the list of its neighbours.
        panel = tab.locator(".panel").bounding_box()
        browser_box = tab.locator(".browser").bounding_box()
        assert panel["y"] < browser_box["y"]
        shot(tab, "phone-dataset")
        tab.goto("/roots/@public/README.md")
        assert tab.inner_text("#content h1") == "Header example"
        tab.goto("/roots/@public/ds-hello.b2frame")
        assert tab.inner_text("#content").startswith("Hello world!Hello world!")
        tab.goto("/roots/@public/ds-sc-attr.b2nd")
        assert tab.inner_text("#scalar") == "foobar"
        tab.goto("/roots/@public/ds-sc-attr.b2nd?view=info")
        assert "123.456" in tab.inner_text("#vlmeta-table")
        tab.goto("/roots/@public/root-example.h5")  # an HDF5 file is a folder of its datasets
        assert "HDF5 file" in tab.inner_text("#container-kind")
    finally:
        context.close()


def test_pages_answer_fast(sub):
    """Every main page answers in well under a second for the example data."""
    client = api_client(sub, sub.user)
    urls = [
        "/",
        "/roots/@public",
        "/roots/@public/dir1/ds-2d.b2nd",
        "/roots/@public/dir1/ds-2d.b2nd?view=info",
        "/roots/@public/dir1/ds-3d.b2nd?view=image",
        "/web/image/@public/dir1/ds-3d.b2nd?axis=0&i=1",
        "/roots/@public/ds-1d-fields.b2nd?filter=a<500&sort=b&desc=1",
        "/roots/@public/ds-2d-fields.b2nd",
        "/roots/@public/README.md",
        "/roots/@public/dir2/ds-4d.b2nd",
        "/web/changes?path=@public",
        "/static/app.js",
    ]
    client.get("/")  # warm up
    for url in urls:
        start = time.perf_counter()
        resp = client.get(url)
        elapsed = time.perf_counter() - start
        assert resp.status_code == 200, (url, resp.status_code)
        assert elapsed < 0.5, f"{url} took {elapsed:.2f} s"


@pytest.fixture(scope="module")
def sub_register(tmp_path_factory) -> Iterator[SubscriberProcess]:
    """A subscriber that lets visitors create accounts."""
    statedir = tmp_path_factory.mktemp("sub-register") / "state"
    statedir.mkdir()
    server = SubscriberProcess(statedir, conf={"login": True, "register": True})
    populate_from_examples(statedir / "public")
    server.start()
    yield server
    server.stop()


def test_registration(browser, sub_register):
    context = browser.new_context(viewport=LAPTOP, base_url=sub_register.urlbase)
    tab = context.new_page()
    try:
        tab.goto("/")
        tab.click("text=Register")
        tab.fill("#email", "newbie@example.com")
        tab.fill("#password", "short")
        tab.fill("#password2", "short")
        tab.evaluate(
            "document.querySelectorAll('input').forEach(i => i.removeAttribute('minlength'))"
        )
        tab.click("button[type=submit]")
        assert "at least 8 characters" in tab.inner_text("#form-error")
        tab.fill("#password", "newbiepass123")
        tab.fill("#password2", "newbiepass123")
        tab.click("button[type=submit]")
        tab.wait_for_selector("#user-menu")
        assert "your account is ready" in tab.inner_text("#flash")
        assert tab.locator("#roots h2").all_inner_texts() == ["@public", "@personal", "@shared"]
    finally:
        context.close()
