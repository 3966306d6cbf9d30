"""`python -m autoprompt_cli` runs the `autoprompt` command."""

from autoprompt_cli.entry import run

if __name__ == "__main__":
    run()
