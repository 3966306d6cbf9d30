"""The `autoprompt` click group: logging set-up, the method commands from the registry, and the exit
codes (2 for a user mistake, in the command's own words; 130 for Ctrl-C or SIGTERM)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from autoprompt_cli.flags import to_flags
from autoprompt_cli.run import CliError, build_command
from frozen_lm import __version__
from frozen_lm.errors import Interrupted, UserError


def families() -> dict[str, list]:
    """{command name: the registered methods that share it}, in registration order."""
    from frozen_lm.methods import methods

    out: dict[str, list] = {}
    for m in methods().values():
        if m.command is not None:
            out.setdefault(m.command.name, []).append(m)
    return out


def _default(methods: list):
    return next((m for m in methods if m.command.default), methods[0])


def _peek(args: list[str], option: str) -> str | None:
    """The value given to `option` in raw arguments (--opt VALUE or --opt=VALUE), else None."""
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def chosen_method(methods: list, args: list[str]):
    """The method a command line asks for: --method NAME, else the method of the run given to
    --resume, else the method its --config file names, else the command's default."""
    name = _peek(args, "--method")
    found = {m.name: m for m in methods}
    if name in found:
        return found[name]
    config = _peek(args, "--config")
    if name is None and config and not _peek(args, "--resume"):
        from autoprompt_cli.config_file import method_in

        named = method_in(config)
        if named in found:
            return found[named]
    resume = _peek(args, "--resume")
    if name is None and resume:
        try:
            from frozen_lm.artifact import read_artifact
            from frozen_lm.methods import for_artifact

            meta = read_artifact(resume).meta
            saved = for_artifact(meta["method"], meta.get("config"), meta.get("module"))
            if saved.name in found:
                return found[saved.name]
        except UserError:
            pass  # the command reports what is wrong with the folder
    return _default(methods)


class Group(click.Group):
    """Builds the method commands from the registry on demand; maps errors to exit codes."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(families()))

    def get_command(self, ctx, name):
        methods = families().get(name)
        if methods:
            return build_command(methods, _default(methods))
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        methods = families().get(args[0]) if args else None
        if methods:
            return args[0], build_command(methods, chosen_method(methods, args[1:])), args[1:]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise CliError(to_flags(str(e), [])) from None
        except Interrupted as e:
            how = ""
            if e.out is not None and e.resumable and ctx.invoked_subcommand:
                how = f"; continue with: autoprompt {ctx.invoked_subcommand} --resume {e.out}"
            click.echo(f"Interrupted: {e.message}{how}", err=True)
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
    """Prompts for frozen language models: discrete prompt search (AutoPrompt, GCG), prompt and prefix
    tuning and PEZ, fine-tuning baselines, intrinsic dimension and comparisons, all on one template
    language and one evaluator. Every method is a plug-in: `pip install` one and it appears here.

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
