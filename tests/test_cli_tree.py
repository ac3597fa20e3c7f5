"""`cat2cli tree` and `cat2cli show --json`: `main()` in this process against a subscriber."""

from __future__ import annotations

import json

import blosc2
import h5py
import numpy as np
import pytest

from caterva2 import cli

from .app_support import serving

GRID = np.arange(12, dtype=np.int64).reshape(3, 4)
RECORDS = np.array(
    [(1, 2.5, b"ab"), (2, -1.0, b"cd")], dtype=[("a", "i4"), ("b", "f8"), ("c", "S2")]
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    statedir = tmp_path_factory.mktemp("cli-tree") / "state"
    public = statedir / "public"
    (public / "dir").mkdir(parents=True)
    blosc2.asarray(GRID, urlpath=str(public / "grid.b2nd"))
    blosc2.asarray(RECORDS, urlpath=str(public / "dir" / "records.b2nd"))
    blosc2.SChunk(data=b"hello, text\n", urlpath=str(public / "dir" / "text.b2frame"))
    blosc2.SChunk(data=bytes(range(256)), urlpath=str(public / "dir" / "binary.b2frame"))
    with blosc2.TreeStore(str(public / "dir" / "tree.b2z"), mode="w") as tree:
        tree["/a/x"] = GRID
        tree["/a/b/y"] = np.arange(3)
        tree["/z"] = np.arange(2)
    with h5py.File(public / "data.h5", "w") as f:
        f["g/d"] = GRID
    with serving(statedir, login=False) as base:
        yield base


def run(url, *args):
    cli.main(["--subscriber", url, *args])


def test_tree_draws_a_root_with_its_containers_expanded(url, capsys):
    run(url, "tree", "@public")
    out = capsys.readouterr().out
    assert out == (
        "@public\n"
        "├── data.h5\n"
        "│   └── g\n"
        "│       └── d\n"
        "├── dir\n"
        "│   ├── binary.b2frame\n"
        "│   ├── records.b2nd\n"
        "│   ├── text.b2frame\n"
        "│   └── tree.b2z\n"
        "│       ├── a\n"
        "│       │   ├── b\n"
        "│       │   │   └── y\n"
        "│       │   └── x\n"
        "│       └── z\n"
        "└── grid.b2nd\n"
        "\n"
        "6 groups, 8 datasets\n"
    )


def test_tree_of_a_container_or_inner_group(url, capsys):
    run(url, "tree", "@public/dir/tree.b2z/a")
    assert (
        capsys.readouterr().out
        == "@public/dir/tree.b2z/a\n├── b\n│   └── y\n└── x\n\n1 group, 2 datasets\n"
    )


def test_tree_json_is_the_flat_list_of_paths(url, capsys):
    run(url, "tree", "--json", "@public/dir")
    assert json.loads(capsys.readouterr().out) == [
        "binary.b2frame",
        "records.b2nd",
        "text.b2frame",
        "tree.b2z/a/b/y",
        "tree.b2z/a/x",
        "tree.b2z/z",
    ]


def test_tree_of_a_missing_path_is_one_line_on_stderr(url, capsys):
    with pytest.raises(SystemExit) as caught:
        run(url, "tree", "@public/dir/tree.b2z/nope")
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error:") and "nope" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "arg, want",
    [
        ("@public/grid.b2nd", GRID.tolist()),
        ("@public/grid.b2nd[1:3, 2]", GRID[1:3, 2].tolist()),
        ("@public/dir/tree.b2z/a/x[0]", GRID[0].tolist()),
        ("@public/data.h5/g/d[2]", GRID[2].tolist()),
        ("@public/dir/records.b2nd", [[1, 2.5, "ab"], [2, -1.0, "cd"]]),
        ("@public/dir/records.b2nd[a > 1]", [[2, -1.0, "cd"]]),
        ("@public/dir/text.b2frame", "hello, text\n"),
    ],
)
def test_show_json_prints_values_as_json(url, capsys, arg, want):
    run(url, "show", "--json", arg)
    assert json.loads(capsys.readouterr().out) == want


def test_show_json_of_binary_data_is_refused_with_a_reason(url, capsys):
    with pytest.raises(SystemExit) as caught:
        run(url, "show", "--json", "@public/dir/binary.b2frame")
    assert caught.value.code == 1
    assert "binary data" in capsys.readouterr().err
