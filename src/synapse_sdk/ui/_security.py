"""Who may talk to the server: the bind rule, the access token, and CSRF for the buttons.

Loopback only by default. Another address reaches other people, so it needs a
token that every request then carries (a header, or the cookie set once from
``?token=``). The buttons POST forms that carry the session's CSRF token, also
kept in a cookie (double submit): a page of another site cannot read the
cookie, so it cannot forge the form.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from urllib.parse import urlencode

TOKEN_VARIABLE = 'SYNAPSE_UI_TOKEN'
TOKEN_COOKIE = 'synapse_ui_token'
TOKEN_HEADER = 'x-synapse-token'
CSRF_COOKIE = 'synapse_ui_csrf'
CSRF_FIELD = 'csrf'


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: only this machine can connect."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None) -> str | None:
    """The token requests must carry: ``token``, else ``$SYNAPSE_UI_TOKEN``, else none.

    Binding an address other than loopback without one is refused with a
    ``ValueError`` that says what to do.
    """
    chosen = token or os.environ.get(TOKEN_VARIABLE) or None
    if chosen is None and not is_loopback(host):
        raise ValueError(
            f'binding {host} lets other machines reach the runs and their buttons: give'
            f' --token TOKEN (or set {TOKEN_VARIABLE}), or bind 127.0.0.1'
        )
    if chosen is not None and len(chosen) < 8:
        raise ValueError('the UI token is too short to guess-proof: use at least 8 characters')
    return chosen


def same(given: str | None, expected: str) -> bool:
    """Constant-time equality, so the comparison's time tells nothing about the token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def without_token(path: str, query: list[tuple[str, str]]) -> str:
    """The URL again without its ``token`` parameter (where ``?token=`` redirects to)."""
    kept = [(k, v) for k, v in query if k != 'token']
    return path + ('?' + urlencode(kept) if kept else '')
