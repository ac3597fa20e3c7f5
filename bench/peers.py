"""`python -m bench.peers`: ours against upstream Caterva2 servers, side by side, in one run.

Each server is read by its own client: ours by this repository's, each upstream
release by the client of the same release, installed from PyPI with its server
(`caterva2[...]==VERSION`) in its own venv under `.cache/bench-peer-<version>`
(built once under a lock and reused, as `tests/test_interop_upstream.py` does;
a marker written last tells a finished venv from a half-built one).  The same
driver (`bench/peer_driver.py`) measures every server, run in turns, a rep of
each server at a time, so drift in the machine's load hits them alike.  Two
data sets: the field of `bench.data` (ratio ~2.6) and one with full float64
noise (ratio ~1.2-1.3), float64 200x500x500 in chunks 50x100x100.

Prints JSON: medians per server and data set (MB = 10^6 bytes; upload, download,
whole and slab in MB/s of array data, small in ms, threads8 in requests/s), the
local Blosc2 floors, and the ratios the targets of issue 18 speak of.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import data
from .servers import SECRET, USER, Subscriber, free_port, terminate, wait_http

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
DRIVER = Path(__file__).resolve().parent / "peer_driver.py"
# What each upstream release needs to serve: its server extras, and its blosc2 left to pip.
UPSTREAM = {
    "2025.8.7": ("caterva2[services,clients]==2025.8.7", "python-dotenv"),
    "2026.9.2": ("caterva2[server,clients]==2026.9.2",),
}
DATASETS = {
    "ratio2.6": data.FieldSpec((200, 500, 500), (50, 100, 100)),
    "ratio1.2": data.FieldSpec((200, 500, 500), (50, 100, 100), seed=7, precision="float64"),
}
QUICK = {
    "ratio2.6": data.FieldSpec((100, 250, 250), (25, 50, 50)),
    "ratio1.2": data.FieldSpec((100, 250, 250), (25, 50, 50), seed=7, precision="float64"),
}


def clean_env() -> dict[str, str]:
    """An environment that cannot leak our packages into an upstream venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONNOUSERSITE"] = "1"
    env["CATERVA2_SECRET"] = SECRET
    return env


def ensure_venv(
    version: str, requirements: tuple[str, ...] | None = None, label: str = "bench-peer"
) -> Path:
    """The venv of an upstream release, built once (under a lock) and reused.

    `requirements` (default: the server and clients of `version`) go into
    `.cache/<label>-<version>`.
    """
    requirements = requirements or UPSTREAM[version]
    venv = CACHE / f"{label}-{version}"
    marker = venv / ".bench-ready"
    spec = json.dumps({"requirements": requirements, "python": sys.version_info[:2]})
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{label}-{version}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == spec:
            return venv
        print(f"building the venv of caterva2 {version} (once)...", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run(
            [*pip, *requirements],
            check=True,
            env=clean_env(),
            timeout=1800,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if os.environ.get("BENCH_QUIET_PIP") else None,
        )
        marker.write_text(spec)
    return venv


@dataclass
class Peer:
    """A server and the python whose client reads it."""

    label: str
    python: str
    url: str
    proc: subprocess.Popen | Subscriber | None = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if isinstance(self.proc, Subscriber):
            self.proc.stop()
        else:
            terminate(self.proc)


def link_data(files: dict[str, Path], public: Path) -> None:
    """The data sets in a server's @public (hard links)."""
    public.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        os.link(path, public / name)


def start_ours(run: Path, files: dict[str, Path]) -> Peer:
    """`cat2sub` of this repository, with logins."""
    sub = Subscriber("ours", run / "logs", statedir=run / "ours")
    link_data(files, sub.statedir / "public")
    sub.add_user(*USER)
    sub.start()
    return Peer("ours", sys.executable, sub.url, sub)


def start_upstream(version: str, run: Path, files: dict[str, Path]) -> Peer:
    """An upstream release's server, with a user added by its own tool."""
    venv = ensure_venv(version)
    statedir = run / f"upstream-{version}"
    link_data(files, statedir / "public")
    port = free_port()
    log = open(run / "logs" / f"upstream-{version}.log", "ab")
    bindir = venv / "bin"
    if version.startswith("2025"):
        add = [str(bindir / "cat2adduser"), "--statedir", str(statedir), *USER]
        serve = [str(bindir / "cat2sub"), "--statedir", str(statedir)]
        serve += ["--http", f"127.0.0.1:{port}"]
    else:
        add = [str(bindir / "cat2-admin"), "--statedir", str(statedir), "adduser", *USER]
        serve = [str(bindir / "cat2-server"), "--statedir", str(statedir)]
        serve += ["--listen", f"127.0.0.1:{port}"]
    subprocess.run(add, check=True, env=clean_env(), cwd=statedir, stdout=log, stderr=log)
    proc = subprocess.Popen(serve, env=clean_env(), cwd=statedir, stdout=log, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/roots", proc, timeout=120)
    return Peer(version, str(bindir / "python"), url, proc)


def drive(python: str, args: list[str]) -> dict:
    """Run the driver and return its JSON."""
    proc = subprocess.run(
        [python, str(DRIVER), *args], capture_output=True, text=True, env=clean_env(), cwd=REPO
    )
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed: {' '.join(args[:4])}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def merge(into: dict, got: dict) -> None:
    for key, value in got.items():
        if isinstance(value, list):
            into.setdefault(key, []).extend(value)
        else:
            into.setdefault(key, value)


def summary(raw: dict, nbytes: int, stored: int) -> dict:
    """Medians in the units of the issue's table."""
    med = {
        k: statistics.median(v)
        for k, v in raw.items()
        if isinstance(v, list) and v and k != "failures"
    }
    out = {}
    if "whole_s" not in med:
        return {"failures": raw.get("failures", [])}
    if "upload_s" in med:
        out["upload_MBps"] = nbytes / med["upload_s"] / 1e6
        out["download_MBps"] = nbytes / med["download_s"] / 1e6
        out["download_MBps_stored"] = stored / med["download_s"] / 1e6
        out["whole_MBps"] = nbytes / med["whole_s"] / 1e6
        out["slab_MBps"] = nbytes / 4 / med["slab_s"] / 1e6
        out["small_ms"] = med["small_s"] * 1e3
        out["threads8_rps"] = med["threads8_rps"]
    else:
        out["whole_MBps"] = nbytes / med["whole_s"] / 1e6
        out["slab_MBps"] = nbytes / 4 / med["slab_s"] / 1e6
    out = {k: round(v, 2) for k, v in out.items()}
    if "checks" in raw:
        out["checks"] = raw["checks"]
    if raw.get("failures"):
        out["failures"] = raw["failures"]
    return out


def ratios(table: dict) -> dict:
    """The targets' ratios: ours over the better upstream, and over the local read."""
    out = {}
    for ds, by in table.items():
        measured = {k: v for k, v in by.items() if "upload_MBps" in v}  # not all reps failed
        ours, peers = measured.get("ours"), [v for k, v in measured.items() if k[:1].isdigit()]
        if not ours or not peers or "whole_MBps" not in by.get("local", {}):
            continue
        best = {k: max(p[k] for p in peers) for k in ("upload_MBps", "download_MBps")}
        best["whole_MBps"] = max(p["whole_MBps"] for p in peers)
        out[ds] = {
            "upload_vs_best (>=1.5)": round(ours["upload_MBps"] / best["upload_MBps"], 2),
            "download_vs_best (>=2)": round(ours["download_MBps"] / best["download_MBps"], 2),
            "whole_vs_best (>=3)": round(ours["whole_MBps"] / best["whole_MBps"], 2),
            "whole_vs_local (>=0.8)": round(ours["whole_MBps"] / by["local"]["whole_MBps"], 2),
            "slab_vs_best": round(ours["slab_MBps"] / max(p["slab_MBps"] for p in peers), 2),
            "small_best_over_ours": round(min(p["small_ms"] for p in peers) / ours["small_ms"], 2),
            "threads8_vs_best": round(
                ours["threads8_rps"] / max(p["threads8_rps"] for p in peers), 2
            ),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a 50 MB array, 1 rep")
    parser.add_argument("--reps", type=int, default=3, help="reps of every figure per server")
    parser.add_argument("--versions", default=",".join(UPSTREAM), help="upstream releases")
    parser.add_argument("--workdir", type=Path, default=REPO / "_caterva2" / "bench")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    versions = [v for v in args.versions.split(",") if v]
    specs = QUICK if args.quick else DATASETS
    reps = 1 if args.quick else args.reps
    thread_seconds = "1" if args.quick else "3"
    files = {
        f"{name}.b2nd": data.ensure(spec, args.workdir / "data") for name, spec in specs.items()
    }
    run = Path(tempfile.mkdtemp(prefix="peers-", dir=args.workdir))
    (run / "logs").mkdir()
    peers: list[Peer] = []
    raw: dict[str, dict[str, dict]] = {name: {} for name in specs}
    t0 = time.perf_counter()
    try:
        peers.append(start_ours(run, files))
        for version in versions:
            peers.append(start_upstream(version, run, files))
        for rep in range(reps):
            for name in specs:
                local = f"{name}.b2nd"
                common = ["--data", str(files[local]), "--reps", "1"]
                merge(
                    raw[name].setdefault("local", {}), drive(sys.executable, [*common, "--local"])
                )
                for peer in peers:
                    args_ = [*common, "--urlbase", peer.url, "--user", f"{USER[0]}:{USER[1]}"]
                    args_ += ["--name", local, "--thread-seconds", thread_seconds]
                    try:
                        got = drive(peer.python, args_)
                    except RuntimeError as exc:  # one failed rep is reported, the run goes on
                        print(exc, file=sys.stderr)
                        failures = raw[name].setdefault(peer.label, {}).setdefault("failures", [])
                        failures.append(str(exc).splitlines()[-1])
                        continue
                    merge(raw[name].setdefault(peer.label, {}), got)
            print(f"rep {rep + 1}/{reps} done", file=sys.stderr)
    finally:
        for peer in peers:
            peer.stop()
        shutil.rmtree(run, ignore_errors=True)
    table = {
        name: {label: summary(r, r["nbytes"], r["stored_bytes"]) for label, r in by_peer.items()}
        for name, by_peer in raw.items()
    }
    doc = {
        "units": "MB = 10^6 bytes of array data (download also per stored byte); medians",
        "reps": reps,
        "seconds": round(time.perf_counter() - t0),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "data": {n: {"stored_bytes": raw[n]["local"]["stored_bytes"]} for n in specs},
        "figures": table,
        "targets": ratios(table),
        "raw": raw,
    }
    text = json.dumps(doc, indent=1)
    if args.json:
        args.json.write_text(text)
    print(json.dumps({k: v for k, v in doc.items() if k != "raw"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
