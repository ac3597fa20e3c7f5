"""The Python client (`caterva2.Client`, `Root`, `File`, `Dataset`) against a real subscriber."""

from __future__ import annotations

import ast
import http.client
import pathlib
import socket
import uuid

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2
from caterva2 import api_utils
from caterva2.common import http_transport as transport

from .services import EXPECTED_PUBLIC

ARRAYS = [
    "ds-1d.b2nd",
    "ds-1d-b.b2nd",
    "ds-1d-fields.b2nd",
    "ds-2d-fields.b2nd",
    "dir1/ds-2d.b2nd",
    "dir1/ds-3d.b2nd",
    "dir2/ds-4d.b2nd",
]


def unique(prefix: str = "t") -> str:
    """A name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def example(examples_dir: pathlib.Path, name: str):
    """Open an example file with Blosc2, to compare with what the server returns."""
    return blosc2.open(str(examples_dir / name), mode="r")


def mock_client(handler) -> cat2.Client:
    """A client whose requests go to ``handler`` instead of the network."""
    client = cat2.Client("http://server.invalid")
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    return client


# --- package surface and helpers (no server) --------------------------------


def test_package_exports_the_public_surface():
    assert cat2.__version__ == "2025.8.7"
    assert cat2.sub_urlbase_default == "http://localhost:8000"
    for name in ("Client", "Root", "File", "Dataset", "BasicAuth"):
        assert hasattr(cat2, name)


def test_client_imports_no_server_code():
    import subprocess
    import sys

    # `common` is shared (the client depends on it alone), but nothing that needs a server extra.
    code = (
        "import sys, caterva2, caterva2.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['caterva2','subscriber'],"
        " ['caterva2','publisher'], ['caterva2','broker'])"
        " or m.split('.')[0] in ('falcon', 'waitress', 'pika', 'sqlite_utils', 'watchdog')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "key, text",
    [
        (None, ""),
        ((), ""),
        (slice(None), ""),
        (3, "3"),
        (np.int64(4), "4"),
        (slice(2, 5), "2:5"),
        (slice(None, 5), ":5"),
        (slice(-3, None), "-3:"),
        (slice(0, 0), "0:0"),
        ((1, slice(2, 4)), "1, 2:4"),
        ((slice(1, 2, 1), 0), "1:2, 0"),
        ((0, Ellipsis), "0"),
    ],
)
def test_slice_to_string_encodes_ints_and_slices(key, text):
    assert api_utils.slice_to_string(key) == text


def test_slice_to_string_expands_ellipsis_when_ndim_known():
    assert api_utils.slice_to_string((Ellipsis, 1), ndim=3) == ":, :, 1"


@pytest.mark.parametrize("key", [slice(None, None, 2), (0, slice(1, 9, 3))])
def test_slice_to_string_refuses_steps(key):
    with pytest.raises(IndexError, match="Only step=1 is supported"):
        api_utils.slice_to_string(key)


@pytest.mark.parametrize(
    "text, key",
    [
        ("", None),
        ("3", 3),
        ("-1", -1),
        ("2:5", slice(2, 5)),
        (":", slice(None, None)),
        ("1, 2:4", (1, slice(2, 4))),
        (" 0 , : , 3: ", (0, slice(None), slice(3, None))),
        ("::2", slice(None, None, 2)),
    ],
)
def test_parse_slice_reads_the_slice_grammar(text, key):
    assert api_utils.parse_slice(text) == key


@pytest.mark.parametrize("text", ["a", "1,,2", "1:2:3:4", "(a < 3)", "1.5"])
def test_parse_slice_rejects_non_slices(text):
    with pytest.raises(ValueError):
        api_utils.parse_slice(text)


@pytest.mark.parametrize("urlbase", ["localhost:8000", "ftp://host", "", None])
def test_client_rejects_urlbase_without_http_scheme(urlbase):
    with pytest.raises(ValueError):
        cat2.Client(urlbase)


@pytest.mark.parametrize("auth", ["user:pass", ["u", "p"], ("only-one",), {"u": "p"}])
def test_client_rejects_auth_that_is_not_a_pair(auth):
    with pytest.raises(ValueError):
        cat2.Client("http://localhost:8000", auth)


def test_read_timeout_becomes_timeout_error():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TimeoutError, match="Timeout after"):
        mock_client(handler).get_roots()


def test_fetch_timeout_becomes_timeout_error():
    # A server that takes the connection and never answers.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with cat2.Client(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.2) as client:
            with pytest.raises(TimeoutError, match="Timeout after 0.2 seconds"):
                client.fetch("@public/ds-1d.b2nd", "0:10")


def test_fetch_errors_are_httpx_errors_as_with_any_other_call(anon):
    with pytest.raises(httpx.HTTPStatusError) as fetched:
        anon.fetch("@public/no-such.b2nd", "0:10")
    with pytest.raises(httpx.HTTPStatusError) as listed:
        anon._get(anon._url("fetch", "@public/no-such.b2nd"), params={"slice_": "0:10"})
    assert str(fetched.value) == str(listed.value)
    assert "404 Not Found" in str(fetched.value)
    assert api_utils.error_detail(fetched.value) == api_utils.error_detail(listed.value)


def test_small_slices_fetched_as_npy_equal_the_stored_data(anon, examples_dir):
    for path in ARRAYS:
        expected = example(examples_dir, path)[()]
        key = (slice(0, 2),) + (slice(None),) * (expected.ndim - 1)
        got = anon.fetch(f"@public/{path}", "0:2")
        assert isinstance(got, np.ndarray) and got.flags.writeable
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected[key])


def test_transport_keeps_no_connection_the_server_closed():
    left, right = socket.socketpair()
    conn = http.client.HTTPConnection("unused")
    conn.sock = left
    assert transport._reusable(conn)
    right.close()
    assert not transport._reusable(conn)
    left.close()


def test_subscribe_on_server_without_the_route_warns_and_returns_ok():
    client = mock_client(lambda request: httpx.Response(404, json={"detail": "Not Found"}))
    with pytest.warns(UserWarning):
        assert client.subscribe("foo") == "Ok"


def test_subscribe_to_unknown_root_raises():
    def handler(request):
        return httpx.Response(404, json={"detail": "foo not known by the broker"})

    with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
        mock_client(handler).subscribe("foo")


def test_step_is_refused_before_any_request():
    requests = []

    def handler(request):
        requests.append(request)
        return httpx.Response(500)

    with pytest.raises(IndexError):
        mock_client(handler).get_slice("@public/ds-1d.b2nd", slice(0, 10, 2))
    assert requests == []


# --- connection, login, roots -------------------------------------------------


def test_client_keeps_one_connection_for_all_calls(sub):
    peers = set()

    def remember_local_address(response):
        stream = response.extensions["network_stream"]
        peers.add(stream.get_extra_info("client_addr"))

    with cat2.Client(sub.urlbase, sub.user) as client:
        client.http.event_hooks["response"].append(remember_local_address)
        client.get_roots()
        client.get_list("@public")
        ds = client.get("@public/ds-1d.b2nd")
        ds[0:10]
        client.get_chunk(ds.path, 0)
    assert len(peers) == 1


def test_closed_client_reopens_on_next_call(sub):
    client = cat2.Client(sub.urlbase)
    first = client.http
    client.close()
    assert first.is_closed
    assert "@public" in client.get_roots()
    assert client.http is not first
    client.close()


def test_trailing_slash_in_urlbase_is_harmless(sub):
    with cat2.Client(sub.urlbase + "/") as client:
        assert client.get_list("@public") == EXPECTED_PUBLIC


def test_login_sets_auth_cookie(user):
    assert user.cookie.startswith("c2subauth=")


def test_login_with_wrong_password_is_bad_request(sub):
    with pytest.raises(httpx.HTTPStatusError, match="Bad Request"):
        cat2.Client(sub.urlbase, (sub.user[0], "wrong-password"))


@pytest.mark.parametrize("auth", [None, cat2.BasicAuth(), ("", ""), ("user@example.com", "")])
def test_incomplete_credentials_mean_anonymous(sub, auth):
    with cat2.Client(sub.urlbase, auth) as client:
        assert client.cookie is None
        assert list(client.get_roots()) == ["@public"]


def test_roots_of_anonymous_and_logged_in_clients(anon, user):
    assert list(anon.get_roots()) == ["@public"]
    assert list(user.get_roots()) == ["@public", "@personal", "@shared"]


def test_get_root_and_its_file_list(anon):
    root = anon.get("@public")
    assert isinstance(root, cat2.Root)
    assert (repr(root), str(root)) == ("<Root: @public>", "@public")
    assert root.file_list == EXPECTED_PUBLIC
    assert list(root) == EXPECTED_PUBLIC and len(root) == len(EXPECTED_PUBLIC)
    assert "dir1/ds-2d.b2nd" in root and "nope.b2nd" not in root


@pytest.mark.parametrize("path", ["@public/dir1", "@public/dir1/"])
def test_get_list_of_directory(anon, path):
    assert anon.get_list(path) == ["ds-2d.b2nd", "ds-3d.b2nd"]


def test_get_gives_dataset_for_blosc2_and_file_otherwise(anon):
    ds = anon.get("@public/dir1/ds-3d.b2nd")
    frame = anon.get("@public/ds-hello.b2frame")
    readme = anon.get("@public/README.md")
    assert type(ds) is cat2.Dataset and type(frame) is cat2.Dataset
    assert type(readme) is cat2.File
    assert repr(ds) == "<Dataset: @public/dir1/ds-3d.b2nd>"
    assert repr(readme) == "<File: @public/README.md>"
    assert ds.path == pathlib.PurePosixPath("@public/dir1/ds-3d.b2nd")
    assert ds.name == "dir1/ds-3d.b2nd"
    assert ds.get_download_url() == f"{anon.urlbase}/api/fetch/@public/dir1/ds-3d.b2nd"


def test_missing_dataset_is_not_found(anon):
    with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
        anon.get("@public/no-such-file.b2nd")


def test_unknown_root_is_not_found(anon):
    with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
        anon.get_list("@no-such-root")


@pytest.mark.parametrize("root", ["@personal", "@shared"])
def test_private_roots_refuse_anonymous_clients(anon, root):
    with pytest.raises(httpx.HTTPStatusError, match="Unauthorized"):
        anon.get_list(root)


# --- metadata -----------------------------------------------------------------


@pytest.mark.parametrize("name", ARRAYS)
def test_dataset_metadata_matches_the_example_file(anon, examples_dir, name):
    ds = anon.get(f"@public/{name}")
    local = example(examples_dir, name)
    assert ds.shape == local.shape
    assert ds.chunks == local.chunks
    assert ds.blocks == local.blocks
    assert server_dtype(ds.dtype) == local.dtype


def server_dtype(text: str) -> np.dtype:
    """Parse the dtype text of /api/info (structured ones are Python literals)."""
    try:
        return np.dtype(text)
    except TypeError:
        return np.dtype(ast.literal_eval(text))


def test_vlmeta_of_scalar_dataset(anon):
    assert anon.get("@public/ds-sc-attr.b2nd").vlmeta == {"a": 1, "b": "foo", "c": 123.456}


def test_regular_file_has_empty_vlmeta_and_its_size(anon, examples_dir):
    readme = anon.get("@public/README.md")
    assert readme.vlmeta == {}
    assert readme.meta["nbytes"] == (examples_dir / "README.md").stat().st_size


def test_get_info_of_frame(anon):
    info = anon.get_info("@public/ds-hello.b2frame")
    assert info["nbytes"] == 1200 and info["cparams"]["typesize"] == 1


# --- reading data -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key",
    [
        ("ds-1d.b2nd", slice(10, 25)),
        ("ds-1d.b2nd", 7),
        ("ds-1d.b2nd", slice(-3, None)),
        ("ds-1d.b2nd", slice(None)),
        ("ds-1d-b.b2nd", slice(995, 1000)),
        ("ds-1d-fields.b2nd", slice(3, 8)),
        ("ds-2d-fields.b2nd", (slice(90, 100), slice(0, 3))),
        ("dir1/ds-2d.b2nd", (1, slice(2, 4))),
        ("dir1/ds-2d.b2nd", (slice(3, 9), slice(4, 17))),
        ("dir1/ds-3d.b2nd", (slice(1, 3), 2, slice(None))),
        ("dir1/ds-3d.b2nd", (Ellipsis, 1)),
        ("dir2/ds-4d.b2nd", (1, slice(0, 2), slice(1, 4), 3)),
    ],
)
def test_indexing_a_dataset_returns_numpy_equal_to_the_file(anon, examples_dir, name, key):
    expected = example(examples_dir, name)[key]
    got = anon.get(f"@public/{name}")[key]
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype


def test_whole_dataset_fetch(anon, examples_dir):
    got = anon.fetch("@public/dir1/ds-2d.b2nd")
    np.testing.assert_array_equal(got, example(examples_dir, "dir1/ds-2d.b2nd")[:])


def test_fetch_with_textual_slice(anon):
    np.testing.assert_array_equal(anon.fetch("@public/ds-1d.b2nd", "5:8"), [5, 6, 7])


def test_scalar_dataset_fetches_a_0d_array(anon):
    value = anon.fetch("@public/ds-sc-attr.b2nd")
    assert isinstance(value, np.ndarray) and value.ndim == 0
    assert value == "foobar"


def test_regular_file_slices_are_bytes(anon, examples_dir):
    text = (examples_dir / "README.md").read_bytes()
    assert anon.fetch("@public/README.md", slice_=1) == text[1:2]
    assert ord(anon.fetch("@public/README.md", slice_=0)) == text[0]
    assert anon.get("@public/README.md")[0:10] == text[:10]
    assert anon.fetch("@public/README.md") == text


def test_frame_slices_are_bytes(anon):
    assert anon.get("@public/ds-hello.b2frame")[0:24] == b"Hello world!" * 2


def test_slice_returns_blosc2_objects(anon, examples_dir):
    arr = anon.get("@public/dir1/ds-3d.b2nd").slice((0, slice(1, 3)))
    assert isinstance(arr, blosc2.NDArray)
    np.testing.assert_array_equal(arr[:], example(examples_dir, "dir1/ds-3d.b2nd")[0, 1:3])
    sc = anon.get("@public/ds-hello.b2frame").slice(slice(0, 12))
    assert isinstance(sc, blosc2.SChunk)
    assert sc[:] == b"Hello world!"


def test_get_slice_as_numpy(anon, examples_dir):
    got = anon.get_slice("@public/dir1/ds-2d.b2nd", (slice(0, 2), 3), as_blosc2=False)
    np.testing.assert_array_equal(got, example(examples_dir, "dir1/ds-2d.b2nd")[0:2, 3])


def test_string_key_naming_a_field_gets_that_field(anon, examples_dir):
    got = anon.get("@public/ds-1d-fields.b2nd")["b"]
    assert isinstance(got, blosc2.NDArray)
    np.testing.assert_array_equal(got[:], example(examples_dir, "ds-1d-fields.b2nd")[:]["b"])


def test_string_key_otherwise_is_a_filter(anon, examples_dir):
    local = example(examples_dir, "ds-1d-fields.b2nd")[:]
    got = anon.get("@public/ds-1d-fields.b2nd")["(a < 500) & (b >= .1)"][:]
    np.testing.assert_array_equal(got, local[(local["a"] < 500) & (local["b"] >= 0.1)])


def test_filter_by_boolean_field_name(anon, examples_dir):
    local = example(examples_dir, "ds-1d-fields.b2nd")[:]
    got = anon.get_slice("@public/ds-1d-fields.b2nd", "d", as_blosc2=False)
    np.testing.assert_array_equal(got, local[local["d"]])


def test_string_key_on_plain_array_is_value_error(anon):
    with pytest.raises(ValueError):
        anon.get("@public/ds-1d.b2nd")["a > 3"]


def test_string_key_on_regular_file_is_attribute_error(anon):
    with pytest.raises(AttributeError):
        anon.get("@public/README.md")["a > 3"]


def test_step_in_dataset_index_is_index_error(anon):
    with pytest.raises(IndexError, match="Only step=1 is supported"):
        anon.get("@public/ds-1d.b2nd")[::2]


def test_get_chunk_is_the_stored_compressed_chunk(anon, examples_dir):
    local = example(examples_dir, "ds-1d.b2nd")
    chunk = anon.get_chunk("@public/ds-1d.b2nd", 3)
    assert chunk == local.schunk.get_chunk(3)
    values = np.frombuffer(blosc2.decompress2(chunk), dtype=np.int64)
    np.testing.assert_array_equal(values, np.arange(300, 400))


# --- downloads ----------------------------------------------------------------


def test_download_defaults_to_the_dataset_path_and_decompresses(
    anon, examples_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = anon.get("@public/README.md").download()
    assert path == pathlib.PurePosixPath("@public/README.md")
    assert (tmp_path / path).read_bytes() == (examples_dir / "README.md").read_bytes()
    assert sorted(p.name for p in (tmp_path / "@public").iterdir()) == ["README.md"]


@pytest.mark.parametrize("name", ["ds-1d.b2nd", "ds-hello.b2frame", "dir2/ds-4d.b2nd"])
def test_download_of_blosc2_file_is_byte_identical(anon, examples_dir, tmp_path, name):
    path = anon.download(f"@public/{name}", tmp_path / "copy.b2")
    assert path == tmp_path / "copy.b2"
    assert path.read_bytes() == (examples_dir / name).read_bytes()


def test_download_into_existing_directory_keeps_the_name(anon, examples_dir, tmp_path):
    path = anon.download("@public/dir1/ds-2d.b2nd", tmp_path)
    assert path == tmp_path / "ds-2d.b2nd"
    np.testing.assert_array_equal(
        blosc2.open(str(path))[:], example(examples_dir, "dir1/ds-2d.b2nd")[:]
    )


def test_download_of_missing_dataset_leaves_no_file(anon, tmp_path):
    with pytest.raises(httpx.HTTPStatusError, match="Not Found"):
        anon.download("@public/no-such.b2nd", tmp_path / "x.b2nd")
    assert list(tmp_path.iterdir()) == []


def test_download_reports_progress(anon, tmp_path):
    calls = []
    anon.download("@public/ds-1d.b2nd", tmp_path / "x.b2nd", progress=lambda *a: calls.append(a))
    done = [d for d, _ in calls]
    assert calls and done == sorted(done)
    assert done[-1] == (tmp_path / "x.b2nd").stat().st_size
