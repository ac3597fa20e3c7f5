"""The OpenAPI description names exactly the REST routes the app has; `/docs` shows it."""

from __future__ import annotations

import re

import falcon.inspect
import pytest

from caterva2.subscriber.openapi import openapi_document
from caterva2.subscriber.settings import SubscriberSettings

from .app_support import in_process_subscriber

API_PREFIXES = ("/api/", "/auth/")


def app_routes(app) -> set[tuple[str, str]]:
    """(METHOD, path) of the REST routes, with Falcon's `{x:path}` spelled `{x}`."""
    routes = set()
    for route in falcon.inspect.inspect_routes(app):
        if not route.path.startswith(API_PREFIXES):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        routes |= {(m.method, path) for m in route.methods if not m.internal}
    return routes


def described_routes(doc: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


@pytest.mark.parametrize(
    "settings",
    [{"register": True}, {}, {"login": False}],
    ids=["register", "login", "no-login"],
)
def test_the_description_matches_the_routes(tmp_path, settings):
    app = in_process_subscriber(tmp_path, **settings)
    try:
        doc = app.client.simulate_get("/openapi.json").json
        assert doc["openapi"] == "3.1.0"
        assert described_routes(doc) == app_routes(app.subscriber.app)
        conf = SubscriberSettings(statedir=tmp_path, secret="s3cret", **settings)
        assert doc == openapi_document(conf)
    finally:
        app.subscriber.close()


def test_every_operation_names_its_path_parameters_and_answers(tmp_path):
    doc = openapi_document(SubscriberSettings(statedir=tmp_path, register=True, secret="x"))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)
            assert "4XX" in op["responses"] and op["summary"], (method, path)


def test_the_docs_page_shows_every_operation_from_this_site_only(tmp_path):
    app = in_process_subscriber(tmp_path)
    try:
        page = app.client.simulate_get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        doc = openapi_document(app.subscriber_settings)
        for method, path in described_routes(doc):
            assert f"<code>{method} {path}</code>" in page.text
        links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert links and all(not re.match(r"\w+:|//", link) for link in links), links
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'href="/docs">REST API</a>' in app.client.simulate_get("/").text
    finally:
        app.subscriber.close()
