"""Which log-probe patterns a backtracking matcher may take exponential time over. Pure.

A log probe's pattern runs on the supervisor's loop against every line its service prints,
with Python's `re`, which backtracks and cannot be interrupted: `^(a+)+$` against 27 `a`s and
a `b` takes seconds, during which `status` does not answer. The usual cause is a repetition
inside a repeated group (star height 2: `(a+)+`, `(\\w+\\s?)*`), which `validate` refuses. This
is the check safe-regex and similar linters make; an alternation of overlapping branches under
a repetition (`(a|a)*`) is not caught.
"""

from __future__ import annotations

import re

_REPEAT = re.compile(r"\*|\+|\{\d*,(\d*)\}|\{(\d+)\}")


def _repeats(match: re.Match[str]) -> bool:
    """Whether a quantifier lets its item repeat more than once."""
    text = match.group(0)
    if text in "*+":
        return True
    high, exact = match.group(1, 2)
    if exact is not None:
        return int(exact) > 1
    return not high or int(high) > 1


def nested_repetition(pattern: str) -> str | None:
    """The first repeated group of `pattern` that holds a repetition itself, as written (with
    its quantifier), or None when there is none."""
    stack: list[tuple[int, bool]] = []  # each open group: where it starts, whether its level held one
    holds = False  # the level being read holds a repetition
    closed: tuple[int, int, bool] | None = None  # the group just closed: start, end, whether it holds one
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            closed, i = None, i + 2
            continue
        if c == "[":  # a character class: its contents are characters, not syntax
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            closed, i = None, j + 1
            continue
        if c == "(":
            stack.append((i, holds))
            holds, closed, i = False, None, i + 1
            continue
        if c == ")":
            start, outer = stack.pop() if stack else (0, False)
            closed = (start, i + 1, holds)
            holds = outer or holds
            i += 1
            continue
        quantifier = _REPEAT.match(pattern, i)
        if quantifier is not None and _repeats(quantifier):
            if closed is not None and closed[2]:
                return pattern[closed[0] : quantifier.end()]
            holds = True
        closed = None
        i = quantifier.end() if quantifier is not None else i + 1
    return None
