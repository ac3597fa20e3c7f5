"""The GUI reads only what it shows: `/web/image` samples big planes, sorting has a limit."""

from __future__ import annotations

import io

import blosc2
import numpy as np
import pytest
from PIL import Image

from caterva2.subscriber.web.access import Access
from caterva2.subscriber.web.images import MAX_IMAGE_SIDE

from .app_support import in_process_subscriber


@pytest.fixture
def sub(tmp_path):
    app = in_process_subscriber(tmp_path)
    yield app
    app.subscriber.close()


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """The number of values of every read the pages make."""
    sizes: list[int] = []
    real = Access.read

    def counting(self, *args, **kwargs):
        values = real(self, *args, **kwargs)
        sizes.append(np.asarray(values).size)
        return values

    monkeypatch.setattr(Access, "read", counting)
    return sizes


def picture(resp) -> Image.Image:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(resp.content))


def test_a_huge_plane_of_zeros_is_drawn_from_sampled_rows(sub, tmp_path, reads):
    side = 8 * MAX_IMAGE_SIDE  # 64 Mi values in a few hundred bytes
    zeros = blosc2.zeros((side, side), dtype=np.uint8, urlpath=str(tmp_path / "public" / "z.b2nd"))
    assert zeros.schunk.cbytes < 64 * 1024
    image = picture(sub.client.simulate_get("/web/image/@public/z.b2nd"))
    assert image.size == (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
    assert max(reads) <= side and sum(reads) <= MAX_IMAGE_SIDE * side


def test_a_slice_of_a_big_stack_is_sampled_the_same_way(sub, tmp_path, reads):
    values = np.arange(3 * 3000 * 2000, dtype=np.uint16).reshape(3, 3000, 2000)
    blosc2.asarray(values, urlpath=str(tmp_path / "public" / "s.b2nd"))
    resp = sub.client.simulate_get("/web/image/@public/s.b2nd", query_string="axis=0&i=1")
    image = picture(resp)
    assert image.size == (2000 // 3 + 1, 1000)  # every 3rd row and column
    assert max(reads) <= 2000
    expected = values[1, ::3, ::3].astype(np.float64)
    shown = np.asarray(image, dtype=np.float64)
    scaled = (expected - expected.min()) * 255 / (expected.max() - expected.min())
    np.testing.assert_allclose(shown, np.round(scaled), atol=1)


def test_small_pictures_are_read_at_once(sub, tmp_path, reads):
    blosc2.asarray(
        np.arange(100 * 50).reshape(100, 50), urlpath=str(tmp_path / "public" / "p.b2nd")
    )
    assert picture(sub.client.simulate_get("/web/image/@public/p.b2nd")).size == (50, 100)
    assert reads == [100 * 50]


def test_sorting_a_dataset_bigger_than_the_compute_limit_is_refused_unread(tmp_path, reads):
    app = in_process_subscriber(tmp_path, compute_max_size=1000)
    try:
        rows = np.zeros(1000, dtype=[("x", "<i4")])  # 4000 bytes
        blosc2.asarray(rows, urlpath=str(tmp_path / "public" / "rows.b2nd"))
        resp = app.client.simulate_get("/roots/@public/rows.b2nd", query_string="view=data&sort=x")
        assert resp.status_code == 400 and "compute_max_size" in resp.text
        assert reads == []
        small = app.client.simulate_get(
            "/roots/@public/rows.b2nd", query_string="view=data&s0=0:10"
        )
        assert small.status_code == 200 and reads == [10]
    finally:
        app.subscriber.close()
