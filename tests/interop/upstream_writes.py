"""The upstream driver's ``write`` section: upload, copy, move, remove across
``@personal`` and ``@shared``, and user isolation (see `upstream_driver.py`)."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path, PurePosixPath

import blosc2
import numpy as np
from upstream_common import (
    PUBLIC,
    Report,
    expect,
    expect_http_error,
)

import caterva2 as cat2

# --------------------------------------------------------------- write section


def write_checks(
    rep: Report,
    urlbase: str,
    examples: Path,
    workdir: Path,
    auth: tuple[str, str] | None,
    other: tuple[str, str] | None,
) -> None:
    """Exercise upload, copy, move and remove as a logged-in user."""
    rep.section = "write"
    if not auth:
        rep.run("login", lambda: expect(False, "no --user given"))
        return
    client = cat2.Client(urlbase, auth)
    anon = cat2.Client(urlbase)
    base = f"interop-{uuid.uuid4().hex[:10]}"
    personal = f"@personal/{base}"
    shared = f"@shared/{base}"
    readme = (examples / "README.md").read_bytes()
    ds1d = examples / "ds-1d.b2nd"

    def listed(root: str) -> list[str]:
        return client.get_list(root)

    def upload_b2nd() -> str:
        got = client.upload(ds1d, f"{personal}/ds-1d.b2nd")
        expect(got == PurePosixPath(f"{personal}/ds-1d.b2nd"), f"returned {got!r}")
        expect(f"{base}/ds-1d.b2nd" in listed("@personal"), "not listed in @personal")
        ds = client.get(str(got))
        expect(ds.shape == (1000,) and ds.dtype == "int64", f"{ds.shape} {ds.dtype}")
        target = workdir / "up" / "ds-1d.b2nd"
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download(str(got), target)
        expect(target.read_bytes() == ds1d.read_bytes(), "round trip bytes differ")
        expect(np.array_equal(ds[5:9], np.arange(5, 9)), "slice of upload")
        return str(got)

    rep.run("upload .b2nd to @personal", upload_b2nd)

    def upload_regular_with_root() -> str:
        local = workdir / "README.md"
        local.write_bytes(readme)
        root = client.get("@personal")
        f = root.upload(local, f"{base}/docs/README.md")
        expect(type(f) is cat2.File, f"Root.upload gave {type(f)}")
        expect(str(f.path) == f"{personal}/docs/README.md", f"path {f.path}")
        expect(f[:] == readme, "uploaded README content differs")
        expect(f.meta["nbytes"] == len(readme), f"nbytes {f.meta.get('nbytes')}")
        expect(f"{base}/docs/README.md" in listed("@personal"), "not listed")
        return str(f.path)

    rep.run("upload regular file with Root.upload", upload_regular_with_root)

    def upload_into_directory() -> str:
        got = client.upload(examples / "ds-hello.b2frame", personal)
        expect(got == PurePosixPath(f"{personal}/ds-hello.b2frame"), f"returned {got!r}")
        expect(client.fetch(str(got), slice_=slice(0, 12)) == b"Hello world!", "content")
        return str(got)

    rep.run("upload into an existing directory", upload_into_directory)

    def anonymous_write() -> str:
        out = [
            expect_http_error(
                lambda: anon.upload(ds1d, f"{PUBLIC}/{base}-anon.b2nd"), "Unauthorized"
            ),
            expect_http_error(lambda: anon.remove(f"{PUBLIC}/ds-1d.b2nd"), "Unauthorized"),
            expect_http_error(
                lambda: anon.copy(f"{PUBLIC}/ds-1d.b2nd", f"{PUBLIC}/{base}.b2nd"),
                "Unauthorized",
            ),
        ]
        return "; ".join(out)

    rep.run("anonymous writes refused", anonymous_write)

    def copy_from_public() -> str:
        got = client.copy(f"{PUBLIC}/ds-1d-fields.b2nd", f"{personal}/copies")
        expect(got == PurePosixPath(f"{personal}/copies/ds-1d-fields.b2nd"), f"{got!r}")
        local = blosc2.open(str(examples / "ds-1d-fields.b2nd"))[()]
        expect(np.array_equal(client.get(str(got))[10:20], local[10:20]), "copied data")
        got2 = client.copy(f"{PUBLIC}/README.md", f"{personal}/copies/")
        expect(got2 == PurePosixPath(f"{personal}/copies/README.md"), f"{got2!r}")
        expect(client.get(str(got2))[:] == readme, "copied README differs")
        got3 = client.get(f"{PUBLIC}/dir1/ds-2d.b2nd").copy(f"{personal}/copies/two.b2nd")
        expect(got3 == PurePosixPath(f"{personal}/copies/two.b2nd"), f"{got3!r}")
        return f"{got}, {got2}, {got3}"

    rep.run("copy from @public", copy_from_public)

    def move_within_personal() -> str:
        src = f"{personal}/ds-1d.b2nd"
        dst = f"{personal}/moved/ds-1d-moved.b2nd"
        got = client.move(src, dst)
        expect(got == PurePosixPath(dst), f"returned {got!r}")
        names = listed("@personal")
        expect(f"{base}/moved/ds-1d-moved.b2nd" in names, "destination not listed")
        expect(f"{base}/ds-1d.b2nd" not in names, "source still listed")
        expect_http_error(lambda: client.get_info(src), "Not Found")
        expect(np.array_equal(client.fetch(dst, slice_=slice(0, 5)), np.arange(5)), "data")
        return str(got)

    rep.run("move within @personal", move_within_personal)

    def move_to_shared() -> str:
        src = f"{personal}/docs/README.md"
        got = client.get(src).move(f"{shared}/README.md")
        expect(got == PurePosixPath(f"{shared}/README.md"), f"returned {got!r}")
        expect(f"{base}/README.md" in listed("@shared"), "not listed in @shared")
        expect(client.get(str(got))[:] == readme, "moved README differs")
        if other:
            peer = cat2.Client(urlbase, other)
            expect(peer.get(str(got))[:] == readme, "other user cannot read @shared file")
        return str(got)

    rep.run("move to @shared (seen by another user)", move_to_shared)

    def isolation() -> str:
        expect(other, "no --other given")
        peer = cat2.Client(urlbase, other)
        names = peer.get_list("@personal")
        expect(not any(n.startswith(base) for n in names), f"other sees {names}")
        return expect_http_error(
            lambda: peer.get_info(f"{personal}/moved/ds-1d-moved.b2nd"), "Not Found"
        )

    rep.run("@personal is private", isolation)

    def bad_destinations() -> str:
        out = []
        for dst in ("foo", "foo/bar", "..", "."):
            out.append(
                expect_http_error(
                    lambda dst=dst: client.move(f"{personal}/copies/two.b2nd", dst),
                    "Bad Request",
                )
            )
        return "; ".join(out)

    rep.run("move to a non-root destination", bad_destinations)

    def remove() -> str:
        path = f"{personal}/moved/ds-1d-moved.b2nd"
        got = client.remove(path)
        expect(got == PurePosixPath(path), f"returned {got!r}")
        expect_http_error(lambda: client.get_info(path), "Not Found")
        got = client.get(f"{personal}/copies/README.md").remove()
        expect(got == PurePosixPath(f"{personal}/copies/README.md"), f"returned {got!r}")
        expect(f"{base}/copies/README.md" not in listed("@personal"), "README still listed")
        return str(got)

    rep.run("remove files", remove)

    def remove_directories() -> str:
        got = client.remove(personal)
        expect(got == PurePosixPath(personal), f"returned {got!r}")
        left = [n for n in listed("@personal") if n.startswith(base)]
        expect(not left, f"left behind: {left}")
        client.remove(shared)
        left = [n for n in listed("@shared") if n.startswith(base)]
        expect(not left, f"left behind in @shared: {left}")
        return str(got)

    rep.run("remove directories", remove_directories)

    for leftover in (personal, shared):  # best effort, in case a check failed midway
        with contextlib.suppress(Exception):
            if any(n.startswith(base) for n in listed(leftover.split("/")[0])):
                client.remove(leftover)
