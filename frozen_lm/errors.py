"""The one exception type for mistakes a user can fix (bad template, bad data, bad option).

The command line turns it into a one-line message and exit code 2; library callers can catch it.
"""


class UserError(ValueError):
    """A problem with the user's input, with a message that says what is wrong and how to fix it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a run. `result` is the best-so-far result, saved first in `out`
    when the run had an out folder; `resumable`: `resume=out` continues it."""

    def __init__(self, message: str, result=None, out=None, resumable: bool = False):
        super().__init__(message)
        self.message, self.result, self.out, self.resumable = message, result, out, resumable

    def __str__(self) -> str:
        return self.message
