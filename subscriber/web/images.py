"""A dataset page's pictures: which arrays can be drawn, and their PNG images."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...common.errors import BadRequest
from ..store import User
from .access import Access

if TYPE_CHECKING:
    from .views import Meta

MAX_IMAGE_SIDE = 1024


@dataclass
class ImageSpec:
    """How a numeric array is shown as pictures: one image, or a stack with a slider."""

    ndim: int
    rgb: bool
    axes: list[tuple[int, int]]  # (axis, size) that a slider may run over

    @property
    def stack(self) -> bool:
        return bool(self.axes)


def image_spec(meta: Meta, vlmeta: dict | None = None) -> ImageSpec | None:
    """Whether (and how) a dataset can be drawn: 2-D images, 3-D stacks, RGB(A) pictures."""
    if meta.shape is None or meta.dtype is None or meta.structured:
        return None
    if meta.dtype.kind not in "biufc":
        return None
    shape = meta.shape
    if any(s == 0 for s in shape):
        return None
    tomo = (vlmeta or {}).get("contenttype") == "tomography"
    rgb = meta.dtype == np.uint8 and shape[-1:] in ((3,), (4,)) and not tomo
    plane_ndim = 3 if rgb else 2
    if len(shape) == plane_ndim:
        return ImageSpec(len(shape), rgb, [])
    if len(shape) == plane_ndim + 1:
        return ImageSpec(
            len(shape), rgb, [(a, shape[a]) for a in range(3)] if not rgb else [(0, shape[0])]
        )
    return None


def to_uint8(plane: np.ndarray) -> np.ndarray:
    """Scale a plane of any numeric type to 0-255 for a PNG (min to max of the plane)."""
    if np.iscomplexobj(plane):
        plane = np.abs(plane)
    if plane.dtype == np.uint8:
        return plane
    if plane.dtype == np.bool_:
        return plane.astype(np.uint8) * 255
    data = plane.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(plane.shape, np.uint8)
    lo, hi = float(data[finite].min()), float(data[finite].max())
    data = np.where(finite, data, lo)
    if hi <= lo:
        return np.full(plane.shape, 128 if hi else 0, np.uint8)
    return np.round((data - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_plane(
    access: Access, path: str, user: User | None, shape: tuple[int, ...], key: tuple
) -> np.ndarray:
    """The plane `key` selects, sampled down to MAX_IMAGE_SIDE on its longer side.

    A big plane is read one sampled row at a time: memory and reads grow with the
    picture shown, never with the array (a tiny upload of zeros may be huge).
    """
    free = [a for a, item in enumerate(key) if not isinstance(item, int)]
    rows, cols = free[0], free[1]
    height, width = shape[rows], shape[cols]
    step = -(-max(height, width) // MAX_IMAGE_SIDE)
    if step == 1:
        return np.asarray(access.read(path, user, key))
    sampled = []
    for row in range(0, height, step):
        row_key = tuple(row if a == rows else item for a, item in enumerate(key))
        sampled.append(np.asarray(access.read(path, user, row_key))[::step])
    return np.stack(sampled)


def render_png(
    access: Access,
    path: str,
    user: User | None,
    spec: ImageSpec,
    shape: tuple[int, ...],
    axis: int,
    index: int,
) -> bytes:
    """One picture of a dataset (a slice of a stack) as PNG bytes."""
    from PIL import Image

    key: tuple = ()
    if spec.stack:
        if axis not in [a for a, _ in spec.axes]:
            raise BadRequest(f"Axis {axis} cannot be browsed (axes: {[a for a, _ in spec.axes]})")
        size = shape[axis]
        if not 0 <= index < size:
            raise BadRequest(f"Slice {index} is out of range for axis {axis} (size {size})")
        key = tuple(index if a == axis else slice(None) for a in range(len(shape)))
    plane = read_plane(access, path, user, shape, key or tuple(slice(None) for _ in shape))
    if spec.rgb:
        image = Image.fromarray(
            np.ascontiguousarray(plane), "RGBA" if plane.shape[-1] == 4 else "RGB"
        )
    else:
        image = Image.fromarray(np.ascontiguousarray(to_uint8(plane)), "L")
    if max(image.size) > MAX_IMAGE_SIDE:
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()
