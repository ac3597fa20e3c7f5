"""`cat2cli`: its `main()` called in this process against a real subscriber.

The subscriber is a real one (real SQLite, the example files, waitress on
127.0.0.1) served from a thread of the test process: each test costs one
call, not a process start. Only what needs a process runs as one (the
program's exit status and its streams as a shell sees them).
"""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass

import blosc2
import pytest

import caterva2 as cat2
from caterva2 import cli

from .app_support import SUPERUSER, USER, in_process_subscriber, served
from .services import EXPECTED_PUBLIC, populate_from_examples


def unique(prefix: str = "t") -> str:
    """A name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Server:
    urlbase: str
    user: tuple[str, str] = USER
    superuser: tuple[str, str] = SUPERUSER


def _serve(tmp_path_factory, name: str, **settings):
    statedir = tmp_path_factory.mktemp(name) / "state"
    populate_from_examples(statedir / "public")
    app = in_process_subscriber(statedir, **settings)
    try:
        with served(app.subscriber.app) as url:
            yield Server(url)
    finally:
        app.subscriber.close()


@pytest.fixture(scope="module")
def sub(tmp_path_factory):
    """A subscriber with logins; @public holds the example files."""
    yield from _serve(tmp_path_factory, "cli-sub")


@pytest.fixture(scope="module")
def sub_nologin(tmp_path_factory):
    """A subscriber without logins (every write is refused)."""
    yield from _serve(tmp_path_factory, "cli-sub-nologin", login=False)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    """``run(*args, url=..., auth=...)``: cat2cli's `main()` in an empty working directory."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, url: str | None = None, auth=None) -> Result:
        argv = [*(["--subscriber", url] if url is not None else [])]
        if auth is not None:
            argv += ["--username", auth[0], "--password", auth[1]]
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level  # main() sets up logging for itself
        capsys.readouterr()
        try:
            cli.main([*argv, *args])
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out = capsys.readouterr()
        return Result(status, out.out, out.err)

    return run


def ok(result: Result) -> str:
    """Stdout of a run that must have succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def failed(result: Result) -> str:
    """The one stderr line of a run that must have failed the documented way."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines()[-1].startswith("Error: "), result.stderr
    return result.stderr.splitlines()[-1]


@pytest.fixture
def anon(sub, run):
    """Run cat2cli anonymously, in an empty working directory."""
    return lambda *args: run(*args, url=sub.urlbase)


@pytest.fixture
def user(sub, run):
    """Run cat2cli logged in as the plain user, in an empty working directory."""
    return lambda *args: run(*args, url=sub.urlbase, auth=sub.user)


@pytest.fixture
def superuser(sub, run):
    """Run cat2cli logged in as the superuser, in an empty working directory."""
    return lambda *args: run(*args, url=sub.urlbase, auth=sub.superuser)


def example(examples_dir, name: str):
    return blosc2.open(str(examples_dir / name), mode="r")


# --- roots, list, url, info -------------------------------------------------


def test_roots_anonymous_prints_public_only(anon):
    assert ok(anon("roots")) == "@public\n"


def test_roots_logged_in_prints_special_roots_unmarked(user):
    assert ok(user("roots")).splitlines() == ["@public", "@personal", "@shared"]


def test_roots_json_is_the_roots_object(user):
    roots = json.loads(ok(user("roots", "--json")))
    assert list(roots) == ["@public", "@personal", "@shared"]
    assert roots["@public"]["name"] == "@public"


def test_roots_marks_followed_remote_roots(monkeypatch, capsys, tmp_path):
    roots = {
        "@public": {"name": "@public", "http": "", "subscribed": True},
        "foo": {"name": "foo", "http": "localhost:8001", "subscribed": True},
        "bar": {"name": "bar", "http": "localhost:8002", "subscribed": None},
    }
    monkeypatch.setattr(cat2.Client, "get_roots", lambda self: roots)
    monkeypatch.chdir(tmp_path)  # no caterva2.toml around
    cli.main(["--subscriber", "http://localhost:1", "roots"])
    assert capsys.readouterr().out.splitlines() == ["@public", "foo (subscribed)", "bar"]


@pytest.mark.parametrize("command", ["list", "ls"])
def test_list_prints_one_path_per_line(anon, command):
    assert ok(anon(command, "@public")).splitlines() == EXPECTED_PUBLIC


def test_list_json(anon):
    assert json.loads(ok(anon("list", "--json", "@public/dir1"))) == ["ds-2d.b2nd", "ds-3d.b2nd"]


def test_url_is_printed_without_contacting_the_server(run):
    result = run("url", "@public/ds-1d.b2nd", url="http://127.0.0.1:1")
    assert ok(result) == "http://127.0.0.1:1/api/fetch/@public/ds-1d.b2nd\n"
    result = run("url", "--json", "@public/ds-1d.b2nd", url="http://127.0.0.1:1")
    assert json.loads(ok(result)) == "http://127.0.0.1:1/api/fetch/@public/ds-1d.b2nd"


def test_info_prints_a_header_then_the_metadata(anon):
    out = ok(anon("info", "@public/dir1/ds-2d.b2nd"))
    first, rest = out.split("\n", 1)
    assert first == "Getting info for @public/dir1/ds-2d.b2nd"
    assert "'shape'" in rest and "'chunks'" in rest and "uint16" in rest


def test_info_json_prints_only_json(sub, anon):
    info = json.loads(ok(anon("info", "--json", "@public/dir1/ds-2d.b2nd")))
    with cat2.Client(sub.urlbase) as client:
        expected = client.get_info("@public/dir1/ds-2d.b2nd")
    assert info["shape"] == expected["shape"] == [10, 20]
    assert info["chunks"] == [5, 5] and info["dtype"] == "uint16"


# --- show -------------------------------------------------------------------


def test_show_regular_file_prints_its_text(anon, examples_dir):
    assert ok(anon("show", "@public/README.md")) == (examples_dir / "README.md").read_text()


def test_show_scalar(anon):
    assert ok(anon("show", "@public/ds-sc-attr.b2nd")) == "foobar\n"


@pytest.mark.parametrize(
    "name, text, key",
    [
        ("ds-1d.b2nd", "0:5", slice(0, 5)),
        ("ds-1d.b2nd", "-3:", slice(-3, None)),
        ("dir1/ds-2d.b2nd", "1, 2:4", (1, slice(2, 4))),
        ("dir1/ds-2d.b2nd", "3", 3),
        ("dir1/ds-3d.b2nd", "1, :, 2:4", (1, slice(None), slice(2, 4))),
    ],
)
def test_show_with_slice_prints_that_part(anon, examples_dir, name, text, key):
    expected = example(examples_dir, name)[key]
    assert ok(anon("show", f"@public/{name}[{text}]")) == f"{expected}\n"


def test_show_byte_stream_slice(anon):
    assert ok(anon("show", "@public/ds-hello.b2frame[12:24]")) == "Hello world!\n"


def test_show_with_filter_prints_matching_rows(anon, examples_dir):
    local = example(examples_dir, "ds-1d-fields.b2nd")[:]
    out = ok(anon("show", "@public/ds-1d-fields.b2nd[(a < 5) & d]"))
    assert out == f"{local[(local['a'] < 5) & local['d']]}\n"


def test_show_with_field_name_prints_that_field(anon, examples_dir):
    local = example(examples_dir, "ds-2d-fields.b2nd")[:]
    assert ok(anon("show", "@public/ds-2d-fields.b2nd[b]")) == f"{local['b']}\n"


def test_show_with_step_fails(anon):
    assert failed(anon("show", "@public/ds-1d.b2nd[::2]")) == "Error: Only step=1 is supported"


def test_show_filter_on_regular_file_fails(anon):
    assert "structured" in failed(anon("show", "@public/README.md[a < 3]"))


def test_show_missing_dataset_fails_with_not_found(anon):
    error = failed(anon("show", "@public/no-such.b2nd"))
    assert error == "Error: @public/no-such.b2nd: Not Found (HTTP 404)"


# --- writes -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["copy", "cp"])
def test_copy_prints_source_and_destination(user, command):
    folder = unique()
    out = ok(user(command, "@public/ds-1d.b2nd", f"@personal/{folder}/"))
    assert out == f"Dataset @public/ds-1d.b2nd copied to @personal/{folder}/ds-1d.b2nd\n"
    assert ok(user("ls", f"@personal/{folder}")) == "ds-1d.b2nd\n"


@pytest.mark.parametrize("command", ["move", "mv"])
def test_move_prints_source_and_destination(user, command):
    folder = unique()
    ok(user("cp", "@public/README.md", f"@shared/{folder}/"))
    src, dst = f"@shared/{folder}/README.md", f"@shared/{folder}/moved.md"
    assert ok(user(command, src, dst)) == f"Dataset {src} moved to {dst}\n"
    assert ok(user("ls", f"@shared/{folder}")) == "moved.md\n"


@pytest.mark.parametrize("command", ["remove", "rm"])
def test_remove_prints_removed_path(user, command):
    path = f"@personal/{unique()}.b2nd"
    ok(user("cp", "@public/ds-1d.b2nd", path))
    assert ok(user(command, path)) == f"Dataset (or directory contents) removed: {path}\n"
    assert failed(user("info", path)) == f"Error: {path}: Not Found (HTTP 404)"


def test_remove_missing_path_fails(user):
    assert failed(user("rm", f"@personal/{unique()}")).startswith("Error: ")


def test_write_as_anonymous_fails(anon):
    failed(anon("cp", "@public/ds-1d.b2nd", f"@public/{unique()}.b2nd"))


def test_copy_outside_the_roots_fails(user):
    failed(user("cp", "@public/ds-1d.b2nd", "foo/bar"))


# --- transfers ----------------------------------------------------------------


def test_upload_then_download_roundtrip(user, tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "blob.bin").write_bytes(data)
    dst = f"@personal/{unique()}/blob.bin"
    assert ok(user("upload", "blob.bin", dst)) == f"Dataset stored in {dst}\n"
    assert ok(user("download", dst, "back.bin")) == "Dataset saved to back.bin\n"
    assert (tmp_path / "back.bin").read_bytes() == data


def test_upload_into_a_directory_keeps_the_file_name(user, examples_dir):
    folder = f"@shared/{unique()}"
    ok(user("cp", "@public/README.md", f"{folder}/"))
    local = str(examples_dir / "dir1" / "ds-3d.b2nd")
    assert ok(user("upload", local, folder)) == f"Dataset stored in {folder}/ds-3d.b2nd\n"


def test_download_defaults_to_the_dataset_path(anon, examples_dir, tmp_path):
    assert ok(anon("download", "@public/README.md")) == "Dataset saved to @public/README.md\n"
    saved = tmp_path / "@public" / "README.md"
    assert saved.read_bytes() == (examples_dir / "README.md").read_bytes()
    assert [p.name for p in saved.parent.iterdir()] == ["README.md"]


def test_download_dataset_into_directory_is_byte_identical(anon, examples_dir, tmp_path):
    (tmp_path / "out").mkdir()
    assert ok(anon("download", "--json", "@public/dir2/ds-4d.b2nd", "out")) == (
        "Dataset saved to out/ds-4d.b2nd\n"
    )
    saved = tmp_path / "out" / "ds-4d.b2nd"
    assert saved.read_bytes() == (examples_dir / "dir2" / "ds-4d.b2nd").read_bytes()


def test_upload_of_missing_local_file_fails(user):
    assert (
        failed(user("upload", "nope.bin", "@personal/nope.bin")) == "Error: No such file: nope.bin"
    )


def test_download_of_missing_dataset_fails_and_leaves_nothing(anon, tmp_path):
    error = failed(anon("download", "@public/nope.b2nd", "x.b2nd"))
    assert error == "Error: @public/nope.b2nd: Not Found (HTTP 404)"
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_draws_for_big_transfers_only(monkeypatch):
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    small = cli._ProgressBar("small")
    small(10, 10)
    small.close()
    assert term.getvalue() == ""
    big = cli._ProgressBar("big")
    total = cli.PROGRESS_THRESHOLD * 2
    for done in range(0, total + 1, total // 4):
        big(done, total)
    big.close()
    assert "big" in term.getvalue() and "100%" in term.getvalue()


# --- users --------------------------------------------------------------------


def test_adduser_listusers_deluser(superuser, user):
    email = f"{unique('cli')}@example.com"
    out = ok(superuser("adduser", email, "clipassword"))
    assert out == f"User added: username='{email}' password='clipassword' superuser=False\n"
    users = [ast.literal_eval(line) for line in ok(superuser("lsu", email)).splitlines()]
    assert [(u["email"], u["is_superuser"]) for u in users] == [(email, False)]
    listed = json.loads(ok(superuser("listusers", "--json")))
    assert email in [u["email"] for u in listed]
    assert failed(user("lsu")) == (
        "Error: /api/listusers/: Listing users is for superusers only (HTTP 403)"
    )
    assert ok(superuser("deluser", email)) == f"User deleted: {email}\n"
    assert ok(superuser("lsu", email)) == ""


def test_adduser_superuser_with_random_password_can_log_in(sub, superuser, run):
    email = f"{unique('rnd')}@example.com"
    out = ok(superuser("adduser", "-S", email))
    match = re.fullmatch(
        rf"User added: username='{email}' password='([A-Za-z]{{8}})' "
        r"superuser=True\n",
        out,
    )
    assert match, out
    result = run("roots", url=sub.urlbase, auth=(email, match.group(1)))
    assert "@personal" in ok(result)
    ok(superuser("deluser", email))


def test_adduser_as_plain_user_fails(user):
    error = failed(user("adduser", f"{unique()}@example.com", "password123"))
    assert error == "Error: /api/adduser/: Only superusers can add users (HTTP 401)"


def test_deluser_of_unknown_user_fails(superuser):
    email = f"{unique()}@example.com"
    assert failed(superuser("deluser", email)) == (
        f"Error: {email}: Error in deleting {email}: UserNotExists (HTTP 400)"
    )


def test_subscribe_prints_the_answer(anon):
    assert ok(anon("subscribe", "@public")) == "Ok\n"


# --- configuration and options -------------------------------------------------


def test_configuration_file_in_working_directory(sub, tmp_path, run):
    (tmp_path / "caterva2.toml").write_text(
        f'[subscriber]\nurl = "{sub.urlbase}"\n'
        f'[client]\nusername = "{sub.user[0]}"\npassword = "{sub.user[1]}"\n'
    )
    assert ok(run("roots")).splitlines() == ["@public", "@personal", "@shared"]


def test_conf_option_and_command_line_override(sub, tmp_path, run):
    conf = tmp_path / "other.toml"
    conf.write_text(f'[subscriber]\nurl = "{sub.urlbase}"\n[client]\nusername = "nobody"\n')
    result = run("--conf", str(conf), "--password", "x", "roots")
    assert failed(result) == (
        f"Error: login as nobody at {sub.urlbase} failed: wrong user name or password (HTTP 400)"
    )
    result = run(
        "--conf",
        str(conf),
        "--username",
        sub.user[0],
        "--password",
        sub.user[1],
        "roots",
    )
    assert "@shared" in ok(result)


def test_abbreviated_user_and_pass_options(sub, run):
    cmd = ["--subscriber", sub.urlbase, "--user", sub.user[0], "--pass", sub.user[1], "roots"]
    assert "@personal" in ok(run(*cmd))


def test_missing_conf_file_fails(run):
    assert "nope.toml" in failed(run("--conf", "nope.toml", "roots"))


def test_broken_conf_file_fails(tmp_path, run):
    (tmp_path / "caterva2.toml").write_text("[subscriber\n")
    assert "caterva2.toml" in failed(run("roots"))


def test_wrong_password_fails(sub, run):
    result = run("roots", url=sub.urlbase, auth=(sub.user[0], "wrong"))
    assert failed(result) == (
        f"Error: login as {sub.user[0]} at {sub.urlbase} failed: "
        "wrong user name or password (HTTP 400)"
    )
    assert len(result.stderr.splitlines()) == 1  # one line, no traceback


def test_unreachable_server_fails(run):
    error = failed(run("roots", url="http://127.0.0.1:1"))
    assert error.startswith("Error: cannot reach http://127.0.0.1:1")


def test_non_http_subscriber_url_fails(run):
    assert "http" in failed(run("roots", url="ftp://example.com"))


@pytest.mark.parametrize("args", [["bogus"], [], ["list"], ["cp", "only-one"]])
def test_bad_arguments_fail_with_status_1(args, run):
    result = run(*args, url="http://127.0.0.1:1")
    failed(result)
    assert "usage: cat2cli" in result.stderr


def test_anonymous_access_to_personal_fails(anon):
    failed(anon("ls", "@personal"))


def test_version_option(run):
    assert ok(run("--version")).strip() == cat2.__version__


# --- server without logins ----------------------------------------------------


def test_nologin_server_lists_public_and_refuses_writes(sub_nologin, run):
    def nologin(*args):
        return run(*args, url=sub_nologin.urlbase)

    assert ok(nologin("ls", "@public")).splitlines() == EXPECTED_PUBLIC
    assert ok(nologin("show", "@public/ds-1d.b2nd[2:4]")) == "[2 3]\n"
    failed(nologin("rm", "@public/ds-1d.b2nd"))
    assert failed(nologin("lsu")) == "Error: /api/listusers/: Not Found (HTTP 404)"


# --- as a program: what a shell sees --------------------------------------------


def program(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "caterva2.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_program_prints_results_on_stdout_and_exits_0(sub, tmp_path):
    result = program("--subscriber", sub.urlbase, "ls", "@public/dir1", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ds-2d.b2nd\nds-3d.b2nd\n", "")


def test_program_error_is_one_stderr_line_naming_the_path_and_exit_1(sub, tmp_path):
    result = program("--subscriber", sub.urlbase, "show", "@public/nope.b2nd", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "Error: @public/nope.b2nd: Not Found (HTTP 404)\n"
