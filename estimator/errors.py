"""The one exception type for problems the user can fix (bad file, bad option, bad profile).

The CLI turns it into a one-line message on stderr and exit code 2; anything else is a bug.
"""


class UserError(Exception):
    """A problem with the user's input. The message names the file, key, node or option."""
