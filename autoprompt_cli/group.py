"""The `autoprompt` click group: logging set-up, method subcommands from the registry, and the
exit codes (2 for a user mistake, 130 for Ctrl-C)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from frozen_lm import __version__
from frozen_lm.errors import Interrupted, UserError


class CliError(click.ClickException):
    """Printed as one line 'Error: ...' with exit code 2."""

    exit_code = 2


class Group(click.Group):
    """Builds method subcommands from the registry on demand; maps errors to exit codes."""

    def _methods(self) -> dict:
        from autoprompt_cli import plugins
        from frozen_lm.methods import methods

        plugins.load()
        return {m.command.name: m for m in methods().values() if m.command is not None}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._methods()))

    def get_command(self, ctx, name):
        method = self._methods().get(name)
        if method is not None:
            from autoprompt_cli.run import build_command

            return build_command(method)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise CliError(str(e)) from None
        except Interrupted as e:
            click.echo(f"Interrupted: {e}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo("Interrupted before anything was worth saving.", err=True)
            sys.exit(130)


def _terminate(signum, frame):
    raise KeyboardInterrupt


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="autoprompt")
@click.option("-v", "--verbose", count=True, help="more log output (-v info, -vv debug)")
@click.option("-q", "--quiet", is_flag=True, help="only warnings and errors")
def main(verbose: int, quiet: bool) -> None:
    """Prompts for frozen language models: discrete trigger search (AutoPrompt), prompt and prefix
    tuning, and intrinsic dimension, all on one template language and one evaluator.

    Every command runs with no arguments on the built-in demo task and the default offline model.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own bars only
    signal.signal(signal.SIGTERM, _terminate)  # a killed run saves its state as Ctrl-C does
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # e.g. "Loading weights" bars: the CLI shows its own
    except ImportError:
        pass
    level = logging.WARNING if quiet else (logging.INFO if verbose <= 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s" if verbose > 1 else "%(message)s")
    for noisy in ("transformers", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR if verbose < 2 else logging.INFO)


from autoprompt_cli import commands, compare  # noqa: E402,F401  (register evaluate, models, label-search, nearest, compare)
