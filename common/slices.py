"""The `slice_` query parameter: parsing it and deciding whether it is whole."""

from __future__ import annotations

from .errors import BadRequest

Key = int | slice | tuple[int | slice, ...] | None


def _parse_int(text: str, whole: str) -> int | None:
    text = text.strip()
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"Invalid slice {whole!r}: {text!r} is not an integer") from None


def parse_slice(text: str | None) -> Key:
    """Parse `"1, 2:5, :"` into a NumPy key; empty or absent means the whole dataset."""
    if text is None or not text.strip():
        return None
    items: list[int | slice] = []
    for item in text.split(","):
        if ":" in item:
            parts = item.split(":")
            if len(parts) > 3:
                raise BadRequest(f"Invalid slice {text!r}: too many ':' in {item.strip()!r}")
            bounds = [_parse_int(p, text) for p in parts]
            if len(bounds) == 3 and bounds[2] == 0:
                raise BadRequest(f"Invalid slice {text!r}: step cannot be zero")
            items.append(slice(*bounds))
        else:
            value = _parse_int(item, text)
            if value is None:
                raise BadRequest(f"Invalid slice {text!r}: empty item")
            items.append(value)
    return items[0] if len(items) == 1 else tuple(items)


def normalise_key(key: Key, shape: tuple[int, ...]) -> tuple[int | slice, ...]:
    """Check a key against a shape: indices in range, no more items than axes."""
    items = () if key is None else key if isinstance(key, tuple) else (key,)
    if len(items) > len(shape):
        raise BadRequest(
            f"Invalid slice: {len(items)} items for a dataset of {len(shape)} dimensions"
        )
    for axis, (item, size) in enumerate(zip(items, shape, strict=False)):
        if isinstance(item, int) and not -size <= item < size:
            raise BadRequest(
                f"Invalid slice: index {item} out of range for axis {axis} (size {size})"
            )
    return items


def is_whole(key: Key, shape: tuple[int, ...]) -> bool:
    """Whether a key selects the whole dataset, as the original decides (see 3.4 rule 4)."""
    if key is None or key == ():
        return True
    if not isinstance(key, tuple):
        return False
    if len(key) > len(shape):
        return False
    for item, size in zip(key, shape, strict=False):
        if not isinstance(item, slice) or item.step not in (None, 1):
            return False
        if item.start not in (None, 0) or (item.stop is not None and item.stop < size):
            return False
    return True
