"""The one exception type jbp raises for a value a caller can fix."""


class ValidationError(ValueError):
    """An argument, array or file that jbp rejects.

    The message names the value, what was expected and what was found, so that the
    command-line tools can print it as one line and exit with status 2. Errors of any
    other type are bugs and keep their traceback.
    """
