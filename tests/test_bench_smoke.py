"""The benchmark runner works and writes what it promises; no timing is ever judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import Figure, Row, Target, figures_from_json, text_table

REPO = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_quick_run_of_one_figure_prints_the_table_and_writes_the_json(tmp_path):
    out = tmp_path / "results.json"
    proc = run_bench(
        "--quick", "--only", "small_warm", "--json", str(out), "--workdir", str(tmp_path / "w")
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "quick run" in proc.stdout and "same chunk proportions" in proc.stdout
    assert "small slice [10, 10:20, 10:20], warm" in proc.stdout
    doc = json.loads(out.read_text())
    meta = doc["meta"]
    assert {"command", "mode", "machine", "versions", "git", "data", "checks"} <= meta.keys()
    assert meta["mode"] == "quick" and meta["checks"] == {"small_warm": True}
    assert meta["data"]["field"]["shape"] == [100, 250, 250]
    assert list(doc["figures"]) == ["small_warm"]
    fig = doc["figures"]["small_warm"]
    assert {"title", "kind", "targets", "floor", "rows", "status", "notes"} <= fig.keys()
    assert [r["variant"] for r in fig["rows"]] == ["client", "http"]
    assert fig["targets"][0]["label"] == "median ≤ 2 ms"
    for row in [*fig["rows"], fig["floor"]]:
        assert {"n", "median", "p95", "min", "max", "ratio_to_floor", "status"} <= row.keys()
        assert row["n"] == len(row["samples"]) > 0
    assert fig["rows"][0]["status"] in ("PASS", "MISS")
    assert not (tmp_path / "w" / "runs").exists() or not any((tmp_path / "w" / "runs").iterdir())


def test_unknown_figure_is_refused_before_anything_starts():
    proc = run_bench("--only", "no_such_figure", timeout=30)
    assert proc.returncode == 2 and "no_such_figure" in proc.stderr


def test_statistics_targets_and_json_round_trip():
    fig = Figure(
        "f",
        "a figure",
        "throughput",
        [Row("client", [2.0, 1.0, 3.0], nbytes=10_000_000), Row("http", [], nbytes=1)],
        Row("floor", [0.5, 0.5], nbytes=10_000_000),
        [Target("ratio", ">=", 0.8, "≥ 0.8 of floor")],
    )
    client = fig.rows[0]
    assert client.median == 2.0 and client.mbps == 5.0 and fig.ratio(client) == 0.25
    assert fig.status(client) == "MISS" and fig.status(fig.rows[1]) == "MISS"
    fig.floor = Row("floor", [2.0], nbytes=10_000_000)
    assert fig.status(client) == "PASS"
    doc = {"figures": {"f": fig.as_json()}}
    again = figures_from_json(json.loads(json.dumps(doc)))
    assert text_table(again) == text_table([fig])


def test_cache_budget_benchmark_prints_its_figures_as_json():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cache_budget", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["wrong_answers"] == 0
    assert {"hit_ratio", "latency", "eviction", "workload"} <= doc.keys()
    assert doc["workload"]["budget_fraction"] == 0.1
    assert doc["cache_bytes_after"] <= doc["workload"]["cache_budget_bytes"]
    assert doc["eviction"]["chunks"] > 0


def test_replication_benchmark_prints_its_figures_as_json():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.replication", "--sizes", "30", "--burst", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    [figures] = doc["sizes"]
    assert figures["n"] == 30
    expected = {"publisher_cold_s", "publisher_warm_s", "follow_s", "subscriber_list_ms"}
    expected |= {"publisher_list_ms", "burst_s", "requests_per_change", "rss_mb"}
    assert expected <= figures.keys()
    # Steady state: the burst's changes came in their messages, no snapshot after it.
    assert "/api/snapshot" not in figures["requests"]
    assert set(figures["rss_mb"]) == {"publisher", "subscriber"}
    assert doc["targets_at_100k"]["requests_per_change"] == 2


def test_peer_driver_measures_our_server_through_our_client(tmp_path, sub):
    """`bench.peers` runs this driver for every server; here against ours, with tiny data."""
    import blosc2
    import numpy as np

    data = tmp_path / "tiny.b2nd"
    values = np.linspace(0, 1, 40 * 30 * 30).reshape(40, 30, 30)
    blosc2.asarray(values, urlpath=str(data), mode="w", chunks=(10, 15, 15))
    client = __import__("caterva2").Client(sub.urlbase, sub.user)
    client.upload(data, "@public/peer-tiny.b2nd")
    driver = [sys.executable, str(REPO / "bench" / "peer_driver.py"), "--data", str(data)]
    common = ["--reps", "1", "--small", "3", "--thread-seconds", "0.2"]
    proc = subprocess.run(
        [
            *driver,
            *common,
            "--urlbase",
            sub.urlbase,
            "--user",
            ":".join(sub.user),
            "--name",
            "peer-tiny.b2nd",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["checks"] == {"download": True, "whole": True, "slab": True}
    for key in ("upload_s", "download_s", "whole_s", "slab_s", "small_s", "threads8_rps"):
        assert len(got[key]) == 1 and got[key][0] > 0
    local = json.loads(
        subprocess.run(
            [*driver, *common, "--local"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    assert len(local["whole_s"]) == len(local["slab_s"]) == 1
    client.remove("@public/peer-tiny.b2nd")
    client.remove("@public/peer-up")
    client.close()


def test_peer_ratios_compare_ours_with_the_better_upstream_server():
    from bench.peers import ratios, summary

    raw = {
        "upload_s": [2.0],
        "download_s": [1.0],
        "whole_s": [1.0],
        "slab_s": [0.25],
        "small_s": [0.001],
        "threads8_rps": [100.0],
    }
    ours = summary(raw, 400_000_000, 300_000_000)
    assert ours["upload_MBps"] == 200 and ours["download_MBps_stored"] == 300
    assert ours["slab_MBps"] == 400 and ours["small_ms"] == 1
    slow = summary({**raw, "upload_s": [4.0], "whole_s": [3.0]}, 400_000_000, 300_000_000)
    slower = summary({**raw, "upload_s": [8.0], "whole_s": [4.0]}, 400_000_000, 300_000_000)
    local = summary({"whole_s": [0.5], "slab_s": [0.1]}, 400_000_000, 0)
    got = ratios({"d": {"local": local, "ours": ours, "2025.1.1": slow, "2026.1.1": slower}})
    assert got["d"]["upload_vs_best (>=1.5)"] == 2.0
    assert got["d"]["whole_vs_best (>=3)"] == 3.0
    assert got["d"]["whole_vs_local (>=0.8)"] == 0.5
