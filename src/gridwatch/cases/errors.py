"""Why a change to a case was not made; each layer above turns these into its own answer."""

from collections.abc import Mapping

from gridwatch.cases.lifecycle import Input


class CaseNotFoundError(Exception):
    """No such case (or not one the caller may see)."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        super().__init__(f"no case {case_id!r}")


class VersionMismatchError(Exception):
    """The case changed since the version the caller acted on."""

    def __init__(self, *, case_id: str, expected: frozenset[int], current: int | None) -> None:
        self.case_id = case_id
        self.expected = expected
        # None when a concurrent writer won the conditional update after the case was read.
        self.current = current
        wanted = ", ".join(str(version) for version in sorted(expected))
        now = f"version {current}" if current is not None else "a newer version"
        super().__init__(f"case {case_id} is at {now}, not {wanted}: read it again")


class InvalidRequestError(Exception):
    """Inputs missing, unexpected or out of range for the action, by field."""

    def __init__(self, problems: Mapping[Input, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in problems.items()))
