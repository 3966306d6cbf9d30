"""The one exception type for mistakes a user can fix (bad template, bad data, bad option).

The command line turns it into a one-line message and exit code 2; library callers can catch it.
"""


class UserError(ValueError):
    """A problem with the user's input, with a message that says what is wrong and how to fix it."""
