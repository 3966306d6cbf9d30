"""Shared fixtures: tiny random models (built once per session), their saved folders for
`--model FOLDER`, a CliRunner helper, and where ../shared/data lives."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # before transformers is imported

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from frozen_lm.testing import save_tiny, tiny_lm  # noqa: E402


def shared_data_dir() -> Path:
    """../shared/data relative to the repository (or $SHARED_DATA)."""
    env = os.environ.get("SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny():
    """tiny("bert" | "gpt2" | "llama") -> a FrozenLM built once per session (frozen: safe to share)."""
    made = {}

    def get(kind: str):
        if kind not in made:
            made[kind] = tiny_lm(kind)
        return made[kind]

    return get


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """tiny_folder(kind) -> a folder with a saved tiny model + tokenizer, for `--model FOLDER`."""
    made = {}

    def get(kind: str) -> str:
        if kind not in made:
            made[kind] = str(save_tiny(kind, tmp_path_factory.mktemp(f"tiny-{kind}")))
        return made[kind]

    return get


@pytest.fixture
def cli():
    """cli(*args) -> click Result of `autoprompt ARGS` (stdout and stderr in result.output)."""
    from transformers.utils import logging as hf_logging

    from autoprompt_cli import main

    hf_logging.disable_progress_bar()  # the CLI disables them through the environment, too late in-process
    runner = CliRunner()

    def invoke(*args, **kwargs):
        kwargs.setdefault("prog_name", "autoprompt")
        return runner.invoke(main, [str(a) for a in args], **kwargs)

    return invoke


def need_cmaes(optimizer: str) -> None:
    """Skip (with the reason) a CMA-ES test where the optional cmaes package is not installed."""
    if optimizer == "cma":
        pytest.importorskip("cmaes", reason="--optimizer cma needs the optional cmaes package (pip install cmaes)")


def assert_user_error(result, *fragments: str) -> str:
    """Exit code 2, one line 'Error: ...', no traceback; each fragment appears in the message."""
    out = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert len(out.splitlines()) == 1, out
    assert out.startswith("Error:"), out
    for f in fragments:
        assert f in out, (f, out)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


SENTIMENT_ROWS = [
    {"sentence": "a great and fine movie", "label": 1},
    {"sentence": "a terrible and awful film", "label": 0},
    {"sentence": "really nice", "label": 1},
    {"sentence": "very bad", "label": 0},
]
