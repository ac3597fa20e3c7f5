"""`cat2pub` as a command (arguments, errors) and its state directory, without a broker."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from caterva2.publisher import server
from caterva2.publisher.root_adapters import DirectoryRoot
from caterva2.publisher.state import State, StateError

from .test_publisher import make_array

# -- the command line --------------------------------------------------------------------


def test_missing_root_directory_exits_1_with_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "caterva2.publisher.server", "r", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"cat2pub: error: root directory {str(tmp_path / 'nope')!r} does not exist\n"
    )
    assert not (tmp_path / "_caterva2").exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["r", __file__], "is not a directory"),
        (["@public", "."], "Invalid root name '@public'"),
        (["a/b", "."], "Invalid root name 'a/b'"),
        (["a*b", "."], "use 1-100 of A-Z a-z 0-9 . _ -"),
        (["r" * 101, "."], "Invalid root name"),
        (["r", ".", "--url", "ftp://x/"], "Invalid publisher URL"),
        (["r", ".", "--url", "http://x/" + "a" * 2100], "longer than 2048"),
        (["r"], "ROOTDIR is required"),
        (["r", ".", "--heartbeat", "0"], "heartbeat must be positive"),
        (["r", ".", "--broker", "http://x/"], "amqp://"),
        (["r", ".", "--id", "nope"], "no [publisher.nope] section"),
    ],
)
def test_bad_arguments_exit_1_with_a_clear_error(tmp_path, monkeypatch, capsys, args, error):
    monkeypatch.chdir(tmp_path)  # no caterva2.toml here
    assert server.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("cat2pub: error:") and error in err


def test_state_written_by_a_newer_version_is_refused(tmp_path):
    State(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.sqlite") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="newer"):
        State(tmp_path)


def test_state_directory_inside_the_root_is_not_published(tmp_path):
    statedir = tmp_path / "_caterva2" / "pub.x"
    make_array(tmp_path / "a.b2nd", np.arange(10))
    (tmp_path / "b.txt").write_text("b")
    adapter = DirectoryRoot(tmp_path, statedir / "cache", exclude=[statedir])
    State(statedir).close()
    adapter.info("b.txt")  # builds its copy in the cache, inside the root
    assert (statedir / "cache" / "b.txt.b2").is_file()
    assert adapter.datasets() == ["a.b2nd", "b.txt"]
    assert adapter.is_ignored("_caterva2/pub.x/state.sqlite")
    assert adapter.stat("_caterva2/pub.x/state.sqlite") is None
