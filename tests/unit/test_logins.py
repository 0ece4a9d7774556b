"""The dashboard's login where the kernel does not say who is on a connection (issue 21):
one-time tokens, a bounded number of them outstanding, and the cookie they lead to."""

from __future__ import annotations

import itertools

from a3s_dev.proxy.logins import COOKIE, MAX_OUTSTANDING, Logins


def counting() -> Logins:
    numbers = itertools.count()
    return Logins(token=lambda size: f"t{next(numbers)}-{size}")


def test_a_login_token_works_once_and_only_one_handed_out_works() -> None:
    logins = counting()
    first, second = logins.issue(), logins.issue()
    assert first != second
    assert not logins.redeem("t9-24") and not logins.redeem("")
    assert logins.redeem(second) and not logins.redeem(second)
    assert logins.redeem(first)


def test_the_oldest_tokens_are_forgotten_past_the_bound() -> None:
    logins = counting()
    tokens = [logins.issue() for _ in range(MAX_OUTSTANDING + 2)]
    assert not logins.redeem(tokens[0]) and not logins.redeem(tokens[1])
    assert all(logins.redeem(t) for t in tokens[2:])


def test_the_cookie_holds_the_secret_for_this_host_only_and_out_of_scripts() -> None:
    logins = Logins()
    name, _, rest = logins.set_cookie().partition("=")
    value, *attributes = rest.split("; ")
    assert name == COOKIE and value == logins.secret and len(value) >= 40
    assert attributes == ["Path=/", "HttpOnly", "SameSite=Strict"]
    assert logins.admits(value)
    assert not logins.admits(None) and not logins.admits("") and not logins.admits(value[:-1])
    assert Logins().secret != logins.secret
