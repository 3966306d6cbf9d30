"""`python -m autoprompt` runs the `autoprompt` command."""

from autoprompt_cli import main

if __name__ == "__main__":
    main(prog_name="autoprompt")
