"""Errors that carry a one-line, user-facing message naming the file, line or setting at fault."""


class PersonahubError(Exception):
    """Base for errors the CLI reports as one line and a non-zero exit."""


class ResumableStop(PersonahubError):
    """The endpoint or the failure policy stopped a job after its last commit: marked failed, and a
    resume goes on from there.
    """


class AwaitingResults(ResumableStop):
    """A job wrote its requests to a batch file and waits for their results: not an error (exit 0)."""


class StillAwaiting(AwaitingResults):
    """A job resumed while its batch file still waits: not an error, but not done (exit 3)."""


class InputFileError(PersonahubError):
    """An input file cannot be read: the message names the file and line."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class PersonaFileError(InputFileError):
    """A persona file cannot be read: the message names the file and line."""


class UsageError(PersonahubError):
    """A flag, option or scenario value is unusable: the CLI exits 2, as for a bad flag."""
