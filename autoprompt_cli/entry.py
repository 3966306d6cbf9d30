"""The `autoprompt` console script. Ctrl-C while torch and transformers are still importing (the first
seconds) ends with one line and exit code 130, not a traceback."""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from autoprompt_cli.app import main
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted before anything was worth saving.\n")
        sys.exit(130)
    main(prog_name="autoprompt")


if __name__ == "__main__":
    run()
