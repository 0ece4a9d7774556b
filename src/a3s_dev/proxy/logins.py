"""Who may use the dashboard where the kernel does not say which user is on the other end of a
loopback connection (macOS; a Linux kernel without sock_diag for TCP), or where the user asked
for it (`A3S_PROXY_LOGIN=1`).

Loopback reaches every user of the machine, and the dashboard shows this user's logs and stops
their services. Where the proxy cannot refuse other users by uid (`system.peers`), it asks for
a secret instead: a one-time login token that only this user can obtain, from the proxy's 0600
registration socket (the dashboard link `a3s up` prints carries one; `a3s ls` asks for one), is
exchanged for a cookie holding the proxy's own secret, `HttpOnly` and `SameSite=Strict`, for
the dashboard's host only. Pure: no I/O, the random source passed in.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable

LOGIN_SETTING = "A3S_PROXY_LOGIN"  # set (not 0) where `a3s up` starts the proxy: a login even on Linux
COOKIE = "a3s_login"
LOGIN_PARAMETER = "login"  # ?login=<token> on any dashboard address
# Login tokens handed out and not yet used: the newest are kept (a link printed by an `a3s up`
# days ago may still be opened), the oldest forgotten past this many.
MAX_OUTSTANDING = 64


class Logins:
    """The proxy's secret and the one-time tokens that lead to it."""

    def __init__(self, token: Callable[[int], str] = secrets.token_urlsafe) -> None:
        self._token = token
        self.secret = token(32)
        self._outstanding: OrderedDict[str, None] = OrderedDict()

    def issue(self) -> str:
        """A new one-time login token."""
        login = self._token(24)
        self._outstanding[login] = None
        while len(self._outstanding) > MAX_OUTSTANDING:
            self._outstanding.popitem(last=False)
        return login

    def redeem(self, login: str) -> bool:
        """Whether `login` is a token handed out and not used yet; it is used up by this call."""
        found = next((t for t in self._outstanding if hmac.compare_digest(t, login)), None)
        if found is None:
            return False
        del self._outstanding[found]
        return True

    def admits(self, cookie: str | None) -> bool:
        """Whether a request with this cookie value comes from a browser that logged in."""
        return cookie is not None and hmac.compare_digest(cookie, self.secret)

    def set_cookie(self) -> str:
        """The `Set-Cookie` value given in exchange for a login token: for the host that asked
        only (no Domain), never sent by another site's page, never read by a script."""
        return f"{COOKIE}={self.secret}; Path=/; HttpOnly; SameSite=Strict"
