"""The real upstream client (caterva2 2025.8.7, blosc2 3.7.2) works unchanged against our server.

The upstream packages live in their own venv, ``.cache/upstream-venv``, built
once from PyPI and reused (a lock serialises builders; a marker file written
last tells a finished venv from a half-built one, which is rebuilt). They are
used only as black boxes: ``tests/interop/upstream_driver.py`` runs under that
venv's python and reports JSON, and the venv's own ``cat2cli`` is run as a
user would. If the venv cannot be built (e.g. PyPI unreachable) the tests
fail with a clear message; they never skip.

Fixtures (from conftest): ``sub`` — a running login-enabled subscriber whose
``@public`` holds the root-example files; ``examples_dir`` — root-example/.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
VENV = CACHE / "upstream-venv"
LOCK = CACHE / "upstream-venv.lock"
MARKER = VENV / ".caterva2-interop-ready"
DRIVER = Path(__file__).resolve().parent / "interop" / "upstream_driver.py"
# The client as a user installs it: no server extras ("clients" brings rich,
# which cat2cli imports). blosc2 pinned to the release upstream tested with.
REQUIREMENTS = ("caterva2[clients]==2025.8.7", "blosc2==3.7.2")
EXPECTED = {"caterva2": "2025.8.7", "blosc2": "3.7.2"}
DATA_SUFFIXES = {".b2nd", ".b2frame", ".h5", ".md"}
PIP_TIMEOUT = 1800
RUN_TIMEOUT = 300


def clean_env() -> dict[str, str]:
    """Return an environment that cannot leak our packages into the upstream venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def venv_bin(name: str) -> Path:
    """Return the path of an executable of the upstream venv."""
    return VENV / "bin" / name


def venv_spec() -> str:
    """Return what the marker records: the requirements and the base interpreter."""
    return json.dumps(
        {"requirements": list(REQUIREMENTS), "python": list(sys.version_info[:2])},
        sort_keys=True,
    )


def venv_ready() -> bool:
    """Tell whether a complete venv for the current spec exists."""
    try:
        marker = MARKER.read_text()
    except OSError:
        return False
    return marker == venv_spec() and venv_bin("python").exists() and venv_bin("cat2cli").exists()


def build_failure(what: str, proc: subprocess.CompletedProcess[str] | None, err: str = "") -> None:
    """Fail the test with a clear message about the upstream venv build."""
    output = err
    if proc is not None:
        output = (proc.stdout or "") + (proc.stderr or "")
    tail = "\n".join(output.strip().splitlines()[-25:])
    pytest.fail(
        f"Could not build the upstream client venv at {VENV}: {what}.\n"
        f"This test installs {' '.join(REQUIREMENTS)} from PyPI once (then reuses "
        "the venv) and never skips: is PyPI reachable from this machine?\n"
        f"--- last output ---\n{tail}",
        pytrace=False,
    )


def run_build_step(cmd: list[str], what: str, timeout: float) -> None:
    """Run one build command; fail the test clearly if it does not succeed."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=clean_env(), check=False
        )
    except subprocess.TimeoutExpired as exc:
        build_failure(f"{what} timed out after {timeout:.0f} s", None, str(exc.output or ""))
        return
    if proc.returncode != 0:
        build_failure(f"{what} exited with status {proc.returncode}", proc)


def build_venv() -> None:
    """Create the venv from scratch and install the upstream client into it."""
    shutil.rmtree(VENV, ignore_errors=True)
    run_build_step([sys.executable, "-m", "venv", str(VENV)], "creating the venv", 300)
    pip = [str(venv_bin("python")), "-m", "pip", "install", "--disable-pip-version-check"]
    run_build_step(
        [*pip, "--retries", "2", "--timeout", "60", *REQUIREMENTS],
        f"pip install {' '.join(REQUIREMENTS)}",
        PIP_TIMEOUT,
    )
    probe = (
        "import json, blosc2, caterva2, httpx, numpy, rich; "
        "print(json.dumps({'caterva2': caterva2.__version__, 'blosc2': blosc2.__version__}))"
    )
    proc = subprocess.run(
        [str(venv_bin("python")), "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        cwd=CACHE,
        check=False,
    )
    if proc.returncode != 0:
        build_failure("the installed client does not import", proc)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got != EXPECTED:
        build_failure(f"installed versions {got} differ from {EXPECTED}", proc)
    tmp = MARKER.with_suffix(".tmp")
    tmp.write_text(venv_spec())
    tmp.replace(MARKER)


def ensure_upstream_venv() -> Path:
    """Return the upstream venv, building it (once, under a lock) if needed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not venv_ready():
                build_venv()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return VENV


@pytest.fixture(scope="session")
def upstream_venv() -> Path:
    """The venv holding the real upstream client."""
    return ensure_upstream_venv()


def example_files(examples: Path) -> list[str]:
    """Return the relative POSIX paths of the example datasets."""
    return sorted(
        p.relative_to(examples).as_posix()
        for p in examples.rglob("*")
        if p.is_file() and p.suffix in DATA_SUFFIXES and "__pycache__" not in p.parts
    )


def cred(pair: tuple[str, str]) -> str:
    """Render a (user, password) pair as the driver's ``USER:PASSWORD``."""
    return f"{pair[0]}:{pair[1]}"


def run_driver(sub: Any, examples_dir: Path, workdir: Path, *sections: str) -> dict[str, Any]:
    """Run the upstream driver for ``sections`` and return its JSON report."""
    cmd = [
        str(venv_bin("python")),
        str(DRIVER),
        "--urlbase",
        sub.urlbase,
        "--examples",
        str(examples_dir),
        "--workdir",
        str(workdir),
        "--user",
        cred(sub.user),
        "--other",
        cred(sub.other),
        *sections,
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=clean_env(),
        cwd=workdir,
        check=False,
    )
    assert proc.returncode == 0, f"driver crashed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"driver printed no JSON ({exc}):\n{proc.stdout[-2000:]}") from exc
    versions = report["versions"]
    assert versions["caterva2"] == EXPECTED["caterva2"], versions
    assert versions["blosc2"] == EXPECTED["blosc2"], versions
    assert Path(versions["caterva2_file"]).is_relative_to(VENV), versions
    return report


def assert_all_ok(report: dict[str, Any], required: list[str]) -> None:
    """Fail listing every failed check, and any required check prefix that did not run."""
    checks = report["checks"]
    names = [c["name"] for c in checks]
    missing = [p for p in required if not any(n.startswith(p) for n in names)]
    assert not missing, f"checks that did not run: {missing}"
    failed = [c for c in checks if not c["ok"]]
    if failed:
        lines = [f"{len(failed)} of {len(checks)} upstream-client checks failed:"]
        for c in failed:
            detail = "\n    ".join(c["detail"].strip().splitlines()[:12])
            lines.append(f"- [{c['section']}] {c['name']}:\n    {detail}")
        pytest.fail("\n".join(lines), pytrace=False)


READ_CHECKS = [
    "roots anonymous",
    "roots logged in",
    "list @public",
    "list dir1",
    "list of a file",
    "Root object",
    "info ds-1d.b2nd",
    "info ds-sc-attr.b2nd",
    "info ds-1d-fields.b2nd",
    "info ds-hello.b2frame",
    "info README.md",
    "info root-example.h5",
    "slice dir2/ds-4d.b2nd",
    "slice ds-sc-attr.b2nd",
    "fields and filters",
    "slices of ds-hello.b2frame",
    "bytes of README.md",
    "raw chunks",
    "download ds-1d.b2nd",
    "download ds-hello.b2frame",
    "download README.md",
    "download to the default path",
    "download url",
    "error statuses",
]
WRITE_CHECKS = [
    "upload .b2nd",
    "upload regular file",
    "upload into an existing directory",
    "anonymous writes refused",
    "copy from @public",
    "move within @personal",
    "move to @shared",
    "@personal is private",
    "move to a non-root destination",
    "remove files",
    "remove directories",
]


def test_upstream_client_reads(
    sub: Any, examples_dir: Path, upstream_venv: Path, tmp_path: Path
) -> None:
    """Roots, list, info, slices, bytes, chunks and downloads through the real client."""
    report = run_driver(sub, examples_dir, tmp_path, "read")
    assert_all_ok(report, READ_CHECKS)


def test_upstream_client_writes(
    sub: Any, examples_dir: Path, upstream_venv: Path, tmp_path: Path
) -> None:
    """Upload, copy, move and remove through the real client, with user isolation."""
    report = run_driver(sub, examples_dir, tmp_path, "write")
    assert_all_ok(report, WRITE_CHECKS)


# ------------------------------------------------------------------- cat2cli


def cat2cli(sub: Any, cwd: Path, *args: str, login: bool = False) -> str:
    """Run the upstream cat2cli; require exit 0 and no error, and return stdout."""
    cmd = [str(venv_bin("cat2cli")), "--subscriber", sub.urlbase]
    if login:
        cmd += ["--username", sub.user[0], "--password", sub.user[1]]
    cmd += list(args)
    # cwd is a fresh directory so that no caterva2.toml of ours is picked up.
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env=clean_env(), cwd=cwd, check=False
    )
    shown = " ".join(args)
    assert proc.returncode == 0, f"cat2cli {shown}: exit {proc.returncode}\n{proc.stderr}"
    # cat2cli prints HTTP errors as "Error: ..." and still exits 0.
    assert not proc.stdout.startswith("Error") and "\nError:" not in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def last_json(out: str) -> Any:
    """Parse the last non-empty line of ``out`` as JSON."""
    return json.loads([line for line in out.splitlines() if line.strip()][-1])


CliCheck = Callable[[Any, Path, Path], None]


def cli_roots(sub: Any, examples: Path, cwd: Path) -> None:
    """``roots`` anonymously, logged in, and as JSON."""
    anon = cat2cli(sub, cwd, "roots").split()
    assert "@public" in anon and "@personal" not in anon, anon
    logged = cat2cli(sub, cwd, "roots", login=True).split()
    assert {"@public", "@personal", "@shared"} <= set(logged), logged
    data = last_json(cat2cli(sub, cwd, "roots", "--json"))
    assert data["@public"]["name"] == "@public", data


def cli_list(sub: Any, examples: Path, cwd: Path) -> None:
    """``list`` of @public (text) and of dir1 (JSON, with and without a slash)."""
    lines = cat2cli(sub, cwd, "list", "@public").split()
    expected = example_files(examples)
    assert set(expected) <= set(lines), set(expected) - set(lines)
    for path in ("@public/dir1", "@public/dir1/"):
        data = last_json(cat2cli(sub, cwd, "list", "--json", path))
        assert data[:2] == ["ds-2d.b2nd", "ds-3d.b2nd"], data
    personal = cat2cli(sub, cwd, "ls", "@personal", login=True)
    assert "Error" not in personal


def cli_info(sub: Any, examples: Path, cwd: Path) -> None:
    """``info`` pretty-printed and as JSON."""
    out = cat2cli(sub, cwd, "info", "@public/ds-1d.b2nd")
    assert out.startswith("Getting info for @public/ds-1d.b2nd"), out
    assert "shape" in out and "1000" in out and "int64" in out, out
    meta = last_json(cat2cli(sub, cwd, "info", "--json", "@public/dir1/ds-2d.b2nd"))
    assert meta["shape"] == [10, 20] and meta["dtype"] == "uint16", meta
    assert meta["chunks"] == [5, 5] and meta["blocks"] == [2, 3], meta
    meta = last_json(cat2cli(sub, cwd, "info", "--json", "@public/ds-sc-attr.b2nd"))
    assert meta["schunk"]["vlmeta"] == {"a": 1, "b": "foo", "c": 123.456}, meta
    meta = last_json(cat2cli(sub, cwd, "info", "--json", "@public/README.md"))
    assert meta["nbytes"] == 87, meta


def cli_show(sub: Any, examples: Path, cwd: Path) -> None:
    """``show`` of an array, of a regular file and of a byte frame."""
    out = cat2cli(sub, cwd, "show", "@public/ds-1d.b2nd")
    assert out.lstrip().startswith("[") and "997 998 999]" in out, out
    out = cat2cli(sub, cwd, "show", "@public/dir1/ds-2d.b2nd")
    assert "199]]" in out, out
    out = cat2cli(sub, cwd, "show", "@public/README.md")
    assert out.startswith((examples / "README.md").read_text()), out
    out = cat2cli(sub, cwd, "show", "@public/ds-hello.b2frame")
    assert out.startswith("Hello world!Hello world!"), out


def cli_url(sub: Any, examples: Path, cwd: Path) -> None:
    """``url`` prints the fetch URL (plain and JSON)."""
    out = cat2cli(sub, cwd, "url", "@public/ds-1d.b2nd")
    assert out.strip() == f"{sub.urlbase}/api/fetch/@public/ds-1d.b2nd", out
    assert last_json(cat2cli(sub, cwd, "url", "--json", "@public/dir1/ds-3d.b2nd")) == (
        f"{sub.urlbase}/api/fetch/@public/dir1/ds-3d.b2nd"
    )


def cli_download(sub: Any, examples: Path, cwd: Path) -> None:
    """``download`` writes byte-identical files (README.md decompressed)."""
    out = cat2cli(sub, cwd, "download", "@public/ds-1d.b2nd", "d1.b2nd")
    assert "saved to" in out, out
    assert (cwd / "d1.b2nd").read_bytes() == (examples / "ds-1d.b2nd").read_bytes()
    cat2cli(sub, cwd, "download", "@public/README.md", "readme.md")
    assert (cwd / "readme.md").read_bytes() == (examples / "README.md").read_bytes()


CLI_CHECKS: dict[str, CliCheck] = {
    "roots": cli_roots,
    "list": cli_list,
    "info": cli_info,
    "show": cli_show,
    "url": cli_url,
    "download": cli_download,
}


@pytest.fixture
def cli_cwd(tmp_path: Path) -> Path:
    """A fresh working directory for cat2cli."""
    cwd = tmp_path / "cli"
    cwd.mkdir()
    return cwd


@pytest.mark.parametrize("command", list(CLI_CHECKS))
def test_upstream_cat2cli(
    command: str, sub: Any, examples_dir: Path, upstream_venv: Path, cli_cwd: Path
) -> None:
    """The upstream ``cat2cli`` runs each command successfully against our server."""
    CLI_CHECKS[command](sub, examples_dir, cli_cwd)
