"""The failures hailo-compile reports, each with the exit code a caller can branch on."""

from __future__ import annotations


class CompileError(Exception):
    exit_code = 1


class InputError(CompileError):
    """One or more inputs are invalid; nothing was run or written."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class ReleaseExists(CompileError):
    """The release folder holds a different build: versions are immutable."""

    exit_code = 3


class DfcError(CompileError):
    """The Dataflow Compiler is missing, or one of its stages failed."""

    exit_code = 4
