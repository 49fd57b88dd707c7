"""The loopback server bounds its connections: 3,000 connections sending
partial headers held 3,004 threads for as long as they liked. A request's head has
``header_timeout_s``, an idle connection ``keep_alive_s``, and at most ``max_connections`` are
open (one more is answered 503 and closed)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from personahub.core.errors import UsageError
from personahub.models.fake_server.server import RunningServer, ServerOptions, running_server

PARTIAL = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Say hi."}]}


def open_partial(url: str, count: int, stack: ExitStack, payload: bytes = PARTIAL) -> list[socket.socket]:
    """``count`` connections that each send ``payload`` (a head cut short) and then nothing."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    socks = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection((host, int(port)), timeout=30))
        if payload:
            sock.sendall(payload)
        socks.append(sock)
    return socks


def closed_by_server(sock: socket.socket, received: bytearray | None = None) -> bytes | None:
    """What the server sent before closing ``sock`` (None while it is still open).

    Bytes read before the close arrives are kept in ``received``: an answer can come one poll
    and the server's FIN the next, and dropping the first would read the answer as empty.
    """
    sock.setblocking(False)
    data = received if received is not None else bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except BlockingIOError:
        return None
    except ConnectionResetError:
        pass
    return bytes(data)


def wait_closed(socks: list[socket.socket], limit_s: float = 60.0) -> list[bytes]:
    """Poll until the server has closed every socket (a generous bound, not a timing claim)."""
    answers: dict[int, bytes] = {}
    received = [bytearray() for _ in socks]
    deadline = time.monotonic() + limit_s
    while len(answers) < len(socks):
        assert time.monotonic() < deadline, f"{len(socks) - len(answers)} still open"
        for i, sock in enumerate(socks):
            if i not in answers and (got := closed_by_server(sock, received[i])) is not None:
                answers[i] = got
        time.sleep(0.05)
    return [answers[i] for i in range(len(socks))]


def test_an_answer_read_before_the_close_is_kept() -> None:
    """The 503 can arrive one poll and the FIN the next; the answer is still the 503."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 503 ")
        received = bytearray()
        assert closed_by_server(ours, received) is None  # read, but not yet closed
        theirs.shutdown(socket.SHUT_WR)
        assert closed_by_server(ours, received) == b"HTTP/1.1 503 "


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(ServerOptions(**request.param)) as handle:
        yield handle


@pytest.mark.parametrize("server", [{"header_timeout_s": 0.5, "max_connections": 60}],
                         indirect=True)
def test_partial_heads_are_closed_and_threads_stay_bounded(server: RunningServer) -> None:
    baseline = threading.active_count()
    with ExitStack() as stack:
        socks = open_partial(server.base_url, 50, stack)
        # the server still answers while they are held: 50 of its 60 places are taken
        answer = httpx.post(server.base_url + "/chat/completions", json=CHAT, timeout=30)
        assert answer.status_code == 200, answer.text
        assert threading.active_count() <= baseline + 60
        answers = wait_closed(socks)
    assert answers == [b""] * 50  # closed without an answer, as uvicorn and nginx do
    assert server.stats.header_timeouts == 50
    assert server.stats.turned_away == 0


@pytest.mark.parametrize("server", [{"header_timeout_s": 1.0, "max_connections": 5}],
                         indirect=True)
def test_connections_past_the_cap_get_a_503_and_are_closed(server: RunningServer) -> None:
    baseline = threading.active_count()
    with ExitStack() as stack:
        held = open_partial(server.base_url, 5, stack)
        deadline = time.monotonic() + 30
        while server._server.open_connections < 5:  # the five are accepted and in their threads
            assert time.monotonic() < deadline
            time.sleep(0.01)
        extra = open_partial(server.base_url, 20, stack)
        turned = wait_closed(extra)
        # the five held connections' threads, and one that closes the refused ones once drained
        assert threading.active_count() <= baseline + 6
        wait_closed(held)
    assert all(t.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in t for t in turned), turned
    assert server.stats.turned_away == 20
    # their places are free again: a normal request is answered
    answer = httpx.post(server.base_url + "/chat/completions", json=CHAT, timeout=30)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("server", [{"keep_alive_s": 0.3, "header_timeout_s": 30}],
                         indirect=True)
def test_idle_connections_are_closed_after_keep_alive(server: RunningServer) -> None:
    with ExitStack() as stack:
        silent = open_partial(server.base_url, 3, stack, payload=b"")
        assert wait_closed(silent) == [b""] * 3
        # a kept-alive connection answers its requests, then is closed when idle
        with httpx.Client(timeout=30) as client:
            for _ in range(2):
                assert client.post(server.base_url + "/chat/completions", json=CHAT).status_code == 200
    assert server.stats.idle_closed >= 3


def test_a_slow_head_is_closed_though_it_keeps_sending(server_slow: RunningServer) -> None:
    """A byte now and then does not keep a head alive: the deadline is the head's, not a read's."""
    with ExitStack() as stack:
        (sock,) = open_partial(server_slow.base_url, 1, stack, payload=b"P")
        deadline = time.monotonic() + 60
        while closed_by_server(sock) is None:
            assert time.monotonic() < deadline, "the slow head was kept open"
            try:
                sock.setblocking(True)
                sock.sendall(b"O")  # one byte every 0.1 s, well inside any per-read timeout
            except OSError:
                break
            time.sleep(0.1)
    assert server_slow.stats.header_timeouts == 1


@pytest.fixture
def server_slow() -> Iterator[RunningServer]:
    with running_server(ServerOptions(header_timeout_s=0.5)) as handle:
        yield handle


@pytest.mark.parametrize(("field", "value", "message"), [
    ("header_timeout_s", 0.0, "--header-timeout must be > 0"),
    ("keep_alive_s", float("inf"), "--keep-alive must be a finite number"),
    ("max_connections", 0, "--max-connections must be an integer >= 1"),
])
def test_the_limits_are_checked(field: str, value: float, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ServerOptions(**{field: value})
