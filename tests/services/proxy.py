"""A TCP proxy on 127.0.0.1 in front of a real service, for faults the service will not make.

``down()`` resets every connection (open ones and new ones): the service is
unreachable, as when a network or a server goes away; ``up()`` brings it back.
``corrupt_next_put()`` flips one byte of the body of the next HTTP ``PUT`` on its
way to the server: damage in transit, which the server must refuse.
``lose_next_put_reply()`` lets the next ``PUT`` reach the server and resets the
connection instead of passing its reply on: the client cannot know it was stored.
Everything else passes through unchanged; the service answers as itself.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from ._common import LOOPBACK

_LINGER_RESET = struct.pack('ii', 1, 0)  # close with RST, not FIN


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self._listener.getsockname()[1])
        self._down = False
        self._corrupt = False
        self._lose_reply = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name='proxy', daemon=True).start()

    @property
    def url(self) -> str:
        return f'http://{LOOPBACK}:{self.port}'

    def down(self) -> None:
        with self._lock:
            self._down = True
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            _reset(sock)

    def up(self) -> None:
        with self._lock:
            self._down = False

    def corrupt_next_put(self) -> None:
        with self._lock:
            self._corrupt = True

    def lose_next_put_reply(self) -> None:
        with self._lock:
            self._lose_reply = True

    def close(self) -> None:
        self._closed = True
        self.down()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            lost = threading.Event()  # this connection's next reply is to be lost
            for args in ((client, server, lost, True), (server, client, lost, False)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self, source: socket.socket, target: socket.socket, lost: threading.Event, upstream: bool
    ) -> None:
        pending = b''  # the start of a request, until its headers are complete
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not upstream and lost.is_set():
                    _reset(target)
                    _reset(source)
                    return
                if upstream and (self._corrupt or self._lose_reply):
                    pending += data
                    data, pending = self._inspect(pending, lost)
                target.sendall(data)
        except OSError:
            pass
        finally:
            if pending:
                with suppress(OSError):
                    target.sendall(pending)
            for sock in (source, target):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _inspect(self, buffer: bytes, lost: threading.Event) -> tuple[bytes, bytes]:
        """(what to send now, what to hold back) of a request's start: the first body byte
        of a PUT flipped, or its connection marked to lose the reply."""
        end = buffer.find(b'\r\n\r\n')
        if end < 0:
            return b'', buffer
        body = end + 4
        if not buffer.startswith(b'PUT '):
            return buffer, b''
        if len(buffer) <= body:
            return b'', buffer
        with self._lock:
            corrupt, self._corrupt = self._corrupt, False
            lose, self._lose_reply = self._lose_reply, False
        if lose:
            lost.set()
        if not corrupt:
            return buffer, b''
        damaged = bytearray(buffer)
        damaged[body] ^= 0xFF
        return bytes(damaged), b''


def _reset(sock: socket.socket) -> None:
    """Cut the connection now (a thread blocked reading it wakes up: shutdown first)."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


@contextmanager
def proxy_to(host: str, port: int) -> Iterator[Proxy]:
    proxy = Proxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
