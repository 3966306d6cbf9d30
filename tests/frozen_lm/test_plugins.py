"""A new method is one folder plus one entry point: a throwaway plug-in distribution, installed with pip
into a temporary folder (the project is not edited), is found by the Python API, gets its own
`autoprompt` command, runs there, and is in `compare --methods`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
"""A tiny method: the hand-written template with its label words swapped (a plug-in for tests)."""
from dataclasses import dataclass, field

from frozen_lm import Command, Method, Result, register_method
from frozen_lm.configs import at_least
from frozen_lm.evaluate import Bound, evaluate


@dataclass
class EchoConfig:
    scale: int = field(default=1, metadata={"help": "how loud the echo is"})
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self):
        at_least(self, 1, "scale")


@dataclass
class EchoResult(Result):
    module = "echo_method"

    def bind(self, task):
        return Bound(task)


def fit(run):
    metrics = {"dev": evaluate(run.task, run.dev)} if run.dev is not None else {}
    return EchoResult(**run.fields(), metrics=metrics)


register_method(Method(
    name="echo", config=EchoConfig, fit=fit, result=EchoResult, trains="nothing", template="manual",
    space={"scale": [1, 2]}, needs_dev=False, summary="the template as written, by a plug-in",
    command=Command(name="echo", help="Score the template as written (a plug-in method).",
                    summary=lambda r: {"accuracy_dev": r.metrics.get("dev", {}).get("accuracy")}, default=True),
    module=__name__))
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The plug-in distribution built from its source folder and installed with pip into a folder."""
    src = tmp_path_factory.mktemp("echo-src")
    (src / "echo_method").mkdir()
    (src / "echo_method" / "__init__.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "echo-method"
        version = "0.1"

        [project.entry-points."frozen_lm.methods"]
        echo = "echo_method"

        [tool.setuptools]
        packages = ["echo_method"]
        '''))
    target = tmp_path_factory.mktemp("echo-site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return target


def _python(target: Path, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_plugin_is_in_the_api_the_cli_and_compare(installed, tiny_folder, tmp_path):
    api = _python(installed, "-c", "import frozen_lm, json; m = frozen_lm.methods()['echo']; "
                  "print(json.dumps([m.trains, m.template, m.space, m.module]))")
    assert api.returncode == 0, api.stderr
    assert json.loads(api.stdout.splitlines()[-1]) == ["nothing", "manual", {"scale": [1, 2]}, "echo_method"]
    top = _python(installed, "-m", "autoprompt_cli", "--help")
    assert top.returncode == 0 and "echo" in top.stdout and "Score the template as written" in top.stdout
    own = _python(installed, "-m", "autoprompt_cli", "echo", "--help")
    assert own.returncode == 0 and "--scale" in own.stdout
    ran = _python(installed, "-m", "autoprompt_cli", "echo", "--model", tiny_folder("llama"), "--out",
                  str(tmp_path / "echo"), "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1])["accuracy_dev"] is not None
    assert json.loads((tmp_path / "echo" / "config.json").read_text())["method"] == "echo"
    bad = _python(installed, "-m", "autoprompt_cli", "echo", "--scale", "0")
    assert bad.returncode == 2 and bad.stderr.strip() == "Error: --scale must be at least 1, got 0"
    compare = _python(installed, "-m", "autoprompt_cli", "compare", "--help")
    assert compare.returncode == 0 and "echo" in compare.stdout
    again = _python(installed, "-c", f"import frozen_lm; print(type(frozen_lm.load_result({str(tmp_path / 'echo')!r})).__name__)")
    assert again.returncode == 0 and again.stdout.strip() == "EchoResult"
