"""Compute work inside its budget: nested saved expressions resolve once each, within the
time limit, and a computation whose request timed out stops."""

from __future__ import annotations

import concurrent.futures
import io

import blosc2
import numpy as np
import pytest

from caterva2.subscriber import lazy_expressions
from caterva2.subscriber.lazy_expressions import MAX_EXPANDED_OPERANDS, write_shell

from .app_support import USER, in_process_subscriber
from .services import wait_for

# Blosc2 evaluates this reduction in its build step, chunk by chunk, for minutes.
ENDLESS = "sum(sin(arange(0, 10000000000)) * cos(arange(0, 10000000000)))"


@pytest.fixture
def sub(tmp_path):
    app = in_process_subscriber(
        tmp_path, compute_timeout=0.5, compute_max_size=1024**4, threads=4
    )  # 2 compute workers
    blosc2.asarray(np.arange(10), urlpath=str(tmp_path / "public" / "x.b2nd"), mode="w")
    yield app
    app.subscriber.close()


def chain(public, levels: int) -> str:
    """Uploaded saved expressions, each adding the one below to itself: `2**levels` uses."""
    below = "@public/x.b2nd"
    for level in range(levels):
        write_shell(public / f"l{level}.b2nd", "a + b", {"a": below, "b": below})
        below = f"@public/l{level}.b2nd"
    return below


def test_a_chain_of_saved_expressions_resolves_each_one_once(sub, tmp_path, monkeypatch):
    top = chain(tmp_path / "public", 6)
    resolved = []
    real = lazy_expressions.Resolver.expression

    def counting(self, logical, *args):
        resolved.append(logical)
        return real(self, logical, *args)

    monkeypatch.setattr(lazy_expressions.Resolver, "expression", counting)
    resp = sub.client.simulate_get(
        f"/api/fetch/{top}", query_string="slice_=0:3", headers={"Accept": "application/x-npy"}
    )
    assert resp.status_code == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(resp.content)), [0, 64, 128])
    assert sorted(resolved) == sorted({top, *[f"@public/l{n}.b2nd" for n in range(5)]})


def test_an_anonymous_info_of_a_deep_chain_is_refused_at_once(sub, tmp_path):
    top = chain(tmp_path / "public", 12)
    resp = sub.client.simulate_get(f"/api/info/{top}")
    assert resp.status_code == 400
    assert f"more than {MAX_EXPANDED_OPERANDS}" in resp.json["detail"]


def test_resolving_operands_counts_against_the_time_limit(tmp_path):
    app = in_process_subscriber(tmp_path, compute_timeout=1e-6)
    try:
        blosc2.asarray(np.arange(10), urlpath=str(tmp_path / "public" / "x.b2nd"), mode="w")
        top = chain(tmp_path / "public", 2)
        resp = app.client.simulate_get(f"/api/info/{top}")
        assert resp.status_code == 503 and "compute_timeout" in resp.json["detail"]
    finally:
        app.subscriber.close()


def test_reductions_that_timed_out_stop_and_free_the_workers(sub, tmp_path):
    write_shell(tmp_path / "public" / "endless.b2nd", ENDLESS, {})
    write_shell(tmp_path / "public" / "small.b2nd", "a + 1", {"a": "@public/x.b2nd"})
    runner = sub.subscriber.compute
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda _: sub.client.simulate_get("/api/info/@public/endless.b2nd").status_code,
                range(6),
            )
        )
    assert answers == [503] * 6
    wait_for(lambda: runner.running() == 0, "the timed-out reductions to stop")
    resp = sub.client.simulate_get(
        "/api/fetch/@public/small.b2nd", query_string="slice_=0:3", headers=sub.cookie(USER)
    )
    assert resp.status_code == 200
