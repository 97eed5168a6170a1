"""The one exception type the CLI turns into a single line and exit code 2."""


class UserError(Exception):
    """Bad input the user can fix: the message names the file/line or value and the fix."""
