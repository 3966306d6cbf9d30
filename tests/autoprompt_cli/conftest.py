"""Fixtures of the command-line tests: a finished tiny search to protect, and a folder's bytes."""

from __future__ import annotations

import pytest

SEARCH = ("search", "--iters", "1", "--num-cand", "2", "--no-progress")


@pytest.fixture
def run(cli, tiny_folder, tmp_path):
    """A finished tiny search in tmp_path/run."""
    out = tmp_path / "run"
    result = cli(*SEARCH, "--model", tiny_folder("llama"), "--out", out)
    assert result.exit_code == 0, result.output
    return out


def files(folder) -> dict[str, bytes]:
    """{name: bytes} of every file in a folder."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
