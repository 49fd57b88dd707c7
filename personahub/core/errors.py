"""Errors that carry a one-line, user-facing message naming the file/line or setting at fault."""


class PersonahubError(Exception):
    """Base for errors the CLI reports as one line and a non-zero exit."""


class ResumableStop(PersonahubError):
    """The endpoint or the failure policy stopped a job after its last commit: the job is
    marked ``failed`` and a resume goes on from there (the kernel adds the resume command)."""


class AwaitingResults(ResumableStop):
    """A job wrote its requests to a batch file (``--batch-file``) and waits for their results
    (``personahub batch import``): marked ``awaiting_results``, not an error (exit 0)."""


class StillAwaiting(AwaitingResults):
    """A job resumed while its batch file still waits for its results: nothing was asked or
    written; not an error, but not done either (exit 3, so a script can tell: docs/cli.md)."""


class InputFileError(PersonahubError):
    """An input file cannot be read: the message names the file and line (when there is one)."""

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
