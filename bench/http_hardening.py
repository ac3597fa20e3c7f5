"""`python -m bench.http_hardening`: the figures of issue 13's measured cases, as JSON.

In-process (Falcon's test client over a real store and real files):
- login: median time of a wrong password for a known and for an unknown account
  (equal work: one scrypt hash each);
- chain: `/api/info` of 12 uploaded saved expressions, each using the one
  below twice (refused at once instead of 2**12 resolutions);
- image: `/web/image` of a (2**17, 2**17) uint8 array of zeros stored in a few
  hundred bytes, with the growth of the process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import blosc2
import falcon.testing
import numpy as np

from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.lazy_expressions import write_shell
from caterva2.subscriber.settings import SubscriberSettings

LOGINS = 15


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def login_time(client: falcon.testing.TestClient, email: str) -> float:
    body = urlencode({"username": email, "password": "not-the-password"})
    start = time.perf_counter()
    resp = client.simulate_post(
        "/auth/jwt/login",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    elapsed = time.perf_counter() - start
    assert resp.status_code == 400, resp.text
    return elapsed


def main() -> None:
    statedir = Path(tempfile.mkdtemp(prefix="cat2-bench-"))
    settings = SubscriberSettings(
        statedir=statedir,
        secret="bench",
        login_failures_per_account=10**6,
        login_failures_per_client=10**6,
        compute_timeout=5,
    )
    subscriber = create_subscriber(settings)
    subscriber.store.add_user("known@example.com", "knownpass1")
    client = falcon.testing.TestClient(subscriber.app)
    figures: dict = {}

    known, unknown = [], []
    for _ in range(LOGINS):  # interleaved: the machine's load drifts alike for both
        known.append(login_time(client, "known@example.com"))
        unknown.append(login_time(client, "unknown@example.com"))
    figures["login_wrong_password_ms"] = {
        "known_median": round(statistics.median(known) * 1000, 1),
        "unknown_median": round(statistics.median(unknown) * 1000, 1),
        "n": LOGINS,
    }

    public = statedir / "public"
    blosc2.asarray(np.arange(10), urlpath=str(public / "x.b2nd"), mode="w")
    below = "@public/x.b2nd"
    for level in range(12):
        write_shell(public / f"l{level}.b2nd", "a + b", {"a": below, "b": below})
        below = f"@public/l{level}.b2nd"
    start = time.perf_counter()
    resp = client.simulate_get(f"/api/info/{below}")
    figures["chain_12_levels_info"] = {
        "status": resp.status_code,
        "ms": round((time.perf_counter() - start) * 1000, 1),
    }

    frame = blosc2.zeros((2**17, 2**17), dtype=np.uint8).to_cframe()
    (public / "zeros.b2nd").write_bytes(frame)
    before = peak_rss_mb()
    start = time.perf_counter()
    resp = client.simulate_get("/web/image/@public/zeros.b2nd")
    figures["image_of_2e17_square_zeros"] = {
        "stored_bytes": len(frame),
        "status": resp.status_code,
        "ms": round((time.perf_counter() - start) * 1000, 1),
        "peak_rss_growth_mb": round(peak_rss_mb() - before, 1),
    }
    subscriber.close()
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
