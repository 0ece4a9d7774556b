"""The A3sError hierarchy: every user mistake becomes one of these, with a message a human can act on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence


class A3sError(Exception):
    """Base of every error a user can cause. The CLI prints `message` on one line and exits `exit_code`."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def printed(self) -> str:
        """What the CLI prints: every line of the message prefixed with `a3s: `."""
        return "\n".join(f"a3s: {line}" for line in self.message.splitlines() or [""])


class ConfigError(A3sError):
    """The A3sfile could not be found, read or validated."""


class UsageError(A3sError):
    """The command line asks for something that cannot be done (unknown service, bad option)."""

    exit_code = 2


class RuntimeFailure(A3sError):
    """Something went wrong while running the stack (port in use, service failed)."""


def project_name_taken(name: str, where: str) -> str:
    """The one line for a project name another running A3sfile (`where`) holds: how to run both."""
    return (
        f'project "{name}" is already running from {where}; to run this one beside it, '
        f'give it another name: dev {{ name = "{name}-2" }} or A3S_PROJECT={name}-2'
    )


def unknown_service(names: Iterable[str], known: Sequence[str]) -> UsageError | None:
    """`unknown service 'wbe' (did you mean 'web'?)` for the first of `names` not in `known`, or None."""
    for name in names:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"services: {', '.join(known)}"
            return UsageError(f"unknown service '{name}' ({hint})")
    return None


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside `exc`, looking through the groups task groups wrap errors in,
    depth first (`exc` itself when it is no group)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def first_user_error(exc: BaseException) -> A3sError | None:
    """The first A3sError inside `exc` (an attachment's user error in a task group), or None."""
    return next((e for e in leaves(exc) if isinstance(e, A3sError)), None)


def one_line(exc: BaseException, *, typed: bool = True) -> str:
    """One line for an unexpected error: its innermost exception's message, led by its type
    with `typed` (a user error's own message as it is)."""
    inner = next(leaves(exc), exc)
    if isinstance(inner, A3sError):
        return inner.message
    text = str(inner)
    if not text:
        return type(inner).__name__
    return f"{type(inner).__name__}: {text}" if typed else text
