"""The one error type of the stages: a stage that cannot go on says so in one line (the path, what is
wrong, what to do) and exits with status 2. Models and algorithms raise plain exceptions; the stage
that calls them turns the expected ones into this error with `as_stage_error`."""
import contextlib


class StageError(Exception):
    """A stage cannot go on (bad input, missing file, diverged loss)."""


def one_line(error):
    """The message of a StageError on one line, also when a DataLoader worker re-raised it with its
    traceback (the message follows the last `...StageError: `) or it quotes a multi-line error."""
    text = str(error)
    prefix = f"{StageError.__module__}.{StageError.__name__}: "
    if prefix in text:
        text = text[text.rindex(prefix) + len(prefix):]
    return " ".join(text.split())


@contextlib.contextmanager
def as_stage_error(*types):
    """Re-raise the exceptions of `types` (default: ValueError, FileNotFoundError) as StageError:
    a model refusing an unknown architecture or a missing weight file is the user's input at fault."""
    try:
        yield
    except (types or (ValueError, FileNotFoundError)) as error:
        raise StageError(str(error)) from error
