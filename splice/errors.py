class UserError(Exception):
    """Something about the user's input or options is wrong. The CLI prints it as one line and exits 2."""
