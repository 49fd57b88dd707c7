"""Which requests a loopback server (serve, the live view) answers at all.

Binding loopback keeps other machines out but not web pages: a page can POST to it, and DNS
rebinding can read the answers. So a request is answered only when its Host is a loopback name or
the bound address, and its Origin, if any, is the server's own. Starlette's host middleware
misreads IPv6 hosts and ignores ports.
"""

from __future__ import annotations

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def split_host(value: str) -> tuple[str, int | None] | None:
    """Host and port (or None) of a Host header value; None when it is not one."""
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
    """Whether a Host header names this server (a missing one is refused: HTTP/1.1 requires it)."""
    parsed = split_host(value) if value else None
    if parsed is None:
        return False
    host, given = parsed
    return (given is None or given == port) and host in LOOPBACK_NAMES | {bound_host.lower()}


def origin_allowed(value: str | None, bound_host: str, port: int) -> bool:
    """Whether an Origin header is absent or the server's own."""
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
