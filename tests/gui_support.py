"""Shared by the GUI tests: Debian's headless Chromium through Playwright, and helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator

import pytest

from .services import REPO

ARTIFACTS = REPO / "artifacts" / "screenshots"
DOC = REPO / "doc"
DOC_SHOTS = {"dataset-2d", "structured-filter", "stack", "roots", "phone-dataset", "remote-roots"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    """Debian's Chromium; the GUI tests fail (never skip) without it."""
    for candidate in (os.environ.get("CATERVA2_CHROMIUM"), "/usr/bin/chromium", "chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.fail(
        "Chromium is not installed: run `apt-get install -y chromium` "
        "(or `make system-deps`). The GUI tests drive Debian's headless Chromium.",
        pytrace=False,
    )


@contextlib.contextmanager
def chromium() -> Iterator:
    """Debian's Chromium, headless, driven by Playwright (never Playwright's own browsers)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Python Playwright is missing: pip install playwright "
            "(never `playwright install`: the tests use Debian's chromium).",
            pytrace=False,
        )
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def browser_tab(browser, base_url: str) -> Iterator:
    """A fresh tab (own cookies) of `browser` on `base_url`; fails on any JavaScript error."""
    context = browser.new_context(viewport=LAPTOP, base_url=base_url)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@contextlib.contextmanager
def chromium_tab(base_url: str) -> Iterator:
    """A tab of a Chromium of its own on `base_url` (see `browser_tab`)."""
    with chromium() as browser, browser_tab(browser, base_url) as tab:
        yield tab


def shot(tab, name: str) -> None:
    """Save a screenshot as a build artefact (and in doc/ when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.evaluate("() => window.scrollTo(0, 0)")  # sticky bars belong at the top
    tab.screenshot(path=str(path), full_page=True)
    if os.environ.get("CATERVA2_DOC_SCREENSHOTS") and name in DOC_SHOTS:
        DOC.mkdir(exist_ok=True)
        shutil.copyfile(path, DOC / f"gui-{name}.png")


def wait_until(tab, script: str, arg=None, timeout: float = 10.0) -> None:
    """Poll a JavaScript expression from Python (the page's CSP forbids Playwright's eval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tab.evaluate(script, arg):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {script}")


def table_cell(tab, row: int, col: int) -> str:
    return tab.inner_text(f"#data-table tbody tr:nth-child({row + 1}) td:nth-child({col + 2})")
