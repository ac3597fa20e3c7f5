"""Schemathesis over the OpenAPI description against a live subscriber, logged in.

Every answer must be below 500 and must conform to the description (status
code, media type, body schema). Bounded: a few examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from caterva2.subscriber.openapi import openapi_document
from caterva2.subscriber.settings import SubscriberSettings

from .http_helpers import login
from .services import SubscriberProcess, populate_from_examples

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 10  # per operation: 24 operations in about half a minute

DESCRIPTION = openapi_document(SubscriberSettings(login=True, register=True, secret="x"))
# Logging out would end the session the other operations use.
schema = schemathesis.openapi.from_dict(DESCRIPTION).exclude(path="/auth/jwt/logout")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A subscriber of its own (the fuzzer writes, moves and deletes), with its cookie."""
    statedir = tmp_path_factory.mktemp("fuzzed") / "state"
    statedir.mkdir()
    server = SubscriberProcess(
        statedir, conf={"login": True, "register": True, "compute_timeout": 5, "maxusers": 20}
    )
    server.add_user(*server.superuser, superuser=True)
    populate_from_examples(statedir / "public")
    server.start()
    session = login(server.urlbase, *server.superuser)
    yield server, {"Cookie": f"c2subauth={session.cookies['c2subauth']}"}
    session.close()
    server.stop()


# One test per operation, each running its own Hypothesis search: plain pytest
# parameters, so that pytest-xdist runs every one (under xdist, `schema.parametrize()`
# ran a single item and checked nothing of the 24 operations).
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_every_answer_conforms_and_none_is_a_server_error(operation, live):
    server, cookie = live
    calls = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case):
        calls.append(case.method)
        case.call_and_validate(base_url=server.urlbase, headers=cookie, checks=CHECKS, timeout=30)

    check()
    assert calls  # the operation was exercised
