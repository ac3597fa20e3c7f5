"""`python -m bench [--quick] [--only NAME,...]`: start the servers, measure, print and save.

The full run (default) uses a 200×500×500 float64 array (400 MB) and a 1 GB
file for the memory figure; `--quick` uses a 100×250×250 array with the same
chunk proportions and a 200 MB file, and fewer repetitions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import caterva2 as cat2
from caterva2.common.waiting import wait_for

from . import data, profiles
from .figures import FIGURES, PLANS, USES_REMOTE, Context, Plan, Remote
from .report import Figure, markdown_table, notes_text, text_table, write_json
from .servers import (
    DEFAULT_BROKER,
    USER,
    Publisher,
    Subscriber,
    broker_problem,
    delete_queue,
)

# A server that does not answer (yet), or answers garbage, is "not yet".
NOT_YET = (OSError, ValueError)

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small data, few repetitions (< 3 min)")
    size.add_argument("--full", action="store_true", help="the full run (default, < 15 min)")
    parser.add_argument("--only", help=f"comma-separated figures among: {', '.join(FIGURES)}")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/<ts>.json)")
    parser.add_argument("--workdir", type=Path, help="data cache and run dirs (_caterva2/bench)")
    parser.add_argument("--broker", help="RabbitMQ URL (default $CATERVA2_BROKER_URL or local)")
    parser.add_argument("--server", choices=("waitress", "gunicorn"), default="waitress")
    parser.add_argument("--threads", type=int, default=8, help="subscriber HTTP threads")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--keep", action="store_true", help="keep the run's state directories")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of each figure here")
    parser.add_argument("--profile-idle", action="store_true", help="profiles include waiting")
    args = parser.parse_args(argv)
    unknown = set(selected(args)) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    return args


def selected(args: argparse.Namespace) -> list[str]:
    """The figures to run, in their fixed order."""
    if not args.only:
        return list(FIGURES)
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    return [n for n in FIGURES if n in wanted] + [n for n in wanted if n not in FIGURES]


def link(src: Path, dst: Path) -> None:
    """Put `src` at `dst` as a hard link (a copy across file systems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def get_json(url: str) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def start_remote(
    run: Path, field_path: Path, big_path: Path | None, broker: str, threads: int
) -> Remote:
    """A publisher of a root holding the data, and a subscriber following it."""
    runid = uuid.uuid4().hex[:8]
    root = f"bench-{runid}"
    rootdir = run / "pubroot"
    for name in ("cold-a.b2nd", "cold-b.b2nd", "warm.b2nd"):
        link(field_path, rootdir / name)
    if big_path is not None:
        link(big_path, rootdir / "big.b2nd")
    (rootdir / "prop").mkdir(parents=True)
    pub = Publisher("publisher", run / "logs", root=root, rootdir=rootdir, statedir=run / "pub")
    pub.broker_url = broker
    pub.start()
    sub = Subscriber(
        "subscriber-remote",
        run / "logs",
        statedir=run / "sub-remote",
        login=False,
        broker_url=broker,
        sub_id=root,
        threads=threads,
    )
    sub.start()
    remote = Remote(pub, sub, root, cat2.Client(sub.url))
    wait_for(
        lambda: root in get_json(f"{sub.url}/api/roots"), f"{root} announced", 60, ignore=NOT_YET
    )
    remote.client.subscribe(root)
    names = sorted(p.relative_to(rootdir).as_posix() for p in rootdir.rglob("*.b2nd"))
    wait_for(
        lambda: get_json(f"{sub.url}/api/list/{root}") == names,
        "the remote listing",
        60,
        ignore=NOT_YET,
    )
    return remote


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
    return info


def versions() -> dict[str, str]:
    """Versions of the packages on the hot paths."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("caterva2", "blosc2", "numpy", "httpx", "falcon", "waitress", "gunicorn"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--short"))}


def describe_plan(plan: Plan) -> str:
    """One line saying what data this mode uses."""
    f, full = plan.field, PLANS["full"].field
    dims = "×".join(map(str, f.shape))
    chunks = "×".join(map(str, f.chunks))
    text = (
        f"{plan.mode} run: float64 array {dims} ({f.nbytes / 1e6:.0f} MB) in chunks {chunks}; "
        f"memory figure on a {plan.big.nbytes / 1e9:.2g} GB array"
    )
    if plan.mode == "quick":
        text += (
            f" — quick data: the same chunk proportions as the full "
            f"{'×'.join(map(str, full.shape))} ({full.nbytes / 1e6:.0f} MB) array, fewer reps"
        )
    return text


def processes(ctx: Context, name: str) -> dict[str, int]:
    """The processes a figure drives, by label."""
    pids = {"subscriber": ctx.sub.pid, "client": os.getpid()}
    if ctx.remote is not None and name in USES_REMOTE:
        pids["subscriber-remote"] = ctx.remote.sub.pid
        pids["publisher"] = ctx.remote.pub.pid
    return pids


def run_figures(
    ctx: Context, names: list[str], profile: Path | None = None, idle: bool = False
) -> tuple[list[Figure], dict[str, float]]:
    """Run each figure, turning a failure into a skipped figure with the reason."""
    figures, seconds = [], {}
    for n, name in enumerate(names, 1):
        print(f"[{n}/{len(names)}] {name} ...", end="", flush=True)
        recorders = []
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for label, pid in processes(ctx, name).items():
                out = profile / f"{name}-{label}.txt"
                recorders.append(profiles.Recorder(pid, out, idle=idle).start())
        t0 = time.perf_counter()
        try:
            fig = FIGURES[name](ctx)
        except Exception as exc:
            traceback.print_exc()
            fig = Figure(name, name, "latency", [], skipped=f"error: {exc!r}")
        seconds[name] = round(time.perf_counter() - t0, 2)
        for rec in recorders:
            rec.stop()
            if rec.out.exists():
                rec.out.with_suffix(".top.txt").write_text(profiles.summarize(rec.out))
        print(f" {seconds[name]:.1f} s{' (' + fig.skipped + ')' if fig.skipped else ''}")
        figures.append(fig)
    return figures, seconds


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    plan = PLANS["quick" if args.quick else "full"]
    names = selected(args)
    workdir = (args.workdir or REPO / "_caterva2" / "bench").resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.json or REPO / "bench" / "results" / f"{stamp}-{plan.mode}.json"
    print(describe_plan(plan))
    load_before = os.getloadavg()
    if load_before[0] > 1.0:
        print(
            f"warning: load average {load_before[0]:.1f} on {os.cpu_count()} cores before the "
            "run: other processes compete with the servers and the figures will be pessimistic"
        )
    field_path = data.ensure(plan.field, workdir / "data")
    big_path = data.ensure(plan.big, workdir / "data") if "rss" in names else None

    run = workdir / "runs" / stamp
    run.mkdir(parents=True, exist_ok=True)
    sub = Subscriber(
        "subscriber",
        run / "logs",
        statedir=run / "sub",
        threads=args.threads,
        server=args.server,
    )
    link(field_path, sub.statedir / "public" / "field.b2nd")
    if big_path is not None:
        link(big_path, sub.statedir / "public" / "big.b2nd")
    sub.add_user(*USER)
    broker = args.broker or os.environ.get("CATERVA2_BROKER_URL") or DEFAULT_BROKER
    remote, problem, failed = None, None, False
    try:
        sub.start()
        client = cat2.Client(sub.url, USER)
        if USES_REMOTE & set(names):
            problem = broker_problem(broker)
            if problem is None:
                remote = start_remote(run, field_path, big_path, broker, args.threads)
            else:
                print(f"publisher figures skipped: {problem}")
        tmpdir = run / "tmp"
        tmpdir.mkdir()
        ctx = Context(plan, field_path, big_path, sub, client, tmpdir, remote, problem)
        ctx.server_note = f"{args.server}, {args.threads} threads"
        figures, seconds = run_figures(ctx, names, args.profile, args.profile_idle)
        failed = any(f.skipped and f.skipped.startswith("error") for f in figures)
    finally:
        for server in (remote.sub, remote.pub) if remote else ():
            server.stop()
        sub.stop()
        if remote is not None:
            with contextlib.suppress(Exception):
                delete_queue(broker, remote.root)
        if not (args.keep or failed):
            shutil.rmtree(run, ignore_errors=True)
        elif failed:
            print(f"kept {run} (logs) since a figure failed")

    meta = {
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "mode": plan.mode,
        "started": stamp,
        "seconds": round(time.perf_counter() - t_start, 1),
        "figure_seconds": seconds,
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "server": ctx.server_note,
        "data": {
            "field": data.describe(plan.field, field_path),
            **({"big": data.describe(plan.big, big_path)} if big_path else {}),
        },
        "checks": ctx.checks,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "units": "MB = 10^6 bytes; latency figures in seconds, memory in bytes",
    }
    write_json(json_path, meta, figures)
    print()
    print(text_table(figures))
    if notes := notes_text(figures):
        print("\nnotes:\n" + notes)
    if args.markdown:
        print("\n" + markdown_table(figures))
    m = meta["machine"]
    print(
        f"\n{plan.mode} run in {meta['seconds']:.0f} s on {m.get('cpu', '?')}, {m['cpus']} cores, "
        f"{m.get('memory_gb', '?')} GB; client and servers on one machine; {ctx.server_note}"
    )
    print(f"results: {json_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
