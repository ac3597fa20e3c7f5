"""Small modules with one job: no Python module of the repository over 600 lines."""

from __future__ import annotations

from .services import REPO

LIMIT = 600
SKIPPED_DIRS = {".venv", ".cache", "_caterva2", "build", "dist", ".git"}


def test_no_module_is_over_600_lines():
    sizes = {
        path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
        for path in REPO.rglob("*.py")
        if not SKIPPED_DIRS & set(path.relative_to(REPO).parts)
    }
    assert len(sizes) > 100  # the walk found the repository
    over = {name: n for name, n in sizes.items() if n > LIMIT}
    assert over == {}, f"over {LIMIT} lines: {over}"
