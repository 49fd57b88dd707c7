"""Which requests a loopback server (``personahub serve``, the live view) answers at all.

Binding 127.0.0.1 keeps other machines out, not web pages: a page the user opens can make the
browser send requests to 127.0.0.1 (a cross-origin POST, for one), and a page served from a
name that re-resolves to 127.0.0.1 (DNS rebinding) can even read the answers, since the browser
thinks it talks to the page's own site. Both show in the headers: a rebinding request carries
the attacker's name in ``Host``, and a browser marks a cross-origin request with an ``Origin``
that is not the server's. So a request is answered only when its ``Host`` is a loopback name
or the bound address (and the bound port, when it names one), and, if it has an ``Origin``,
when that is the server's own (``http://`` one of those names and the port).

Starlette's ``TrustedHostMiddleware`` does the first half for the live view's framework, but
reads ``[::1]:8765`` as the host ``[`` and ignores ports; these ten lines serve both servers.
"""

from __future__ import annotations

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def split_host(value: str) -> tuple[str, int | None] | None:
    """(host, port or None) of a ``Host`` header value (``[::1]:8000``, ``localhost``); None
    when it is not one."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
    else:
        host, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return host.lower(), int(rest[1:]) if rest else None


def host_allowed(value: str | None, bound_host: str, port: int) -> bool:
    """Whether a ``Host`` header names this server: a loopback name or the bound address, with
    the bound port if it gives one. A missing header is refused (HTTP/1.1 requires it)."""
    parsed = split_host(value) if value else None
    if parsed is None:
        return False
    host, given = parsed
    return (given is None or given == port) and host in LOOPBACK_NAMES | {bound_host.lower()}


def origin_allowed(value: str | None, bound_host: str, port: int) -> bool:
    """Whether an ``Origin`` header is absent (not a browser's cross-origin request) or the
    server's own: ``http://`` a loopback name or the bound address, and the bound port."""
    if value is None:
        return True
    scheme, sep, rest = value.strip().partition("://")
    if scheme.lower() != "http" or not sep or "/" in rest:
        return False  # includes "null" (sandboxed frames, file:// pages)
    parsed = split_host(rest)
    if parsed is None:
        return False
    host, given = parsed
    return (given or 80) == port and host in LOOPBACK_NAMES | {bound_host.lower()}
