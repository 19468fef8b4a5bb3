"""The one exception type for bad input.

Anything a user can get wrong (a flag, a file, a store, a sweep id) raises `UsageError` with a
one-line message that names the problem and the fix. The command-line entry points catch it,
print `error: <message>` to stderr and exit with code 2 — never a traceback.
"""


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit code 2. A ValueError, as scikit-learn
    and other callers expect of a bad argument."""

    exit_code = 2
