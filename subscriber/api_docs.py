"""`/openapi.json` (the REST API's description) and `/docs` (the same, as a page)."""

from __future__ import annotations

import json

import falcon

from .openapi import openapi_document
from .settings import SubscriberSettings


class OpenAPIResource:
    def __init__(self, settings: SubscriberSettings) -> None:
        self.body = json.dumps(openapi_document(settings), indent=1).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body


class DocsPage:
    """A page made from the description by the GUI's templates: nothing from other sites."""

    def __init__(self, settings: SubscriberSettings, web) -> None:
        self.doc = openapi_document(settings)
        self.web = web

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.web.render(req, resp, "docs.html", title="REST API", doc=self.doc)


def register(app: falcon.App, settings: SubscriberSettings, web) -> None:
    app.add_route("/openapi.json", OpenAPIResource(settings))
    app.add_route("/docs", DocsPage(settings, web))
