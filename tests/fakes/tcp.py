"""Plain TCP fakes on 127.0.0.1: a server that accepts and never answers, a proxy that
can stop answering, and the base of the database-protocol fakes."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class TcpFake:
    """A listening socket on a free loopback port whose connections are each served by
    :meth:`serve` in a thread of their own; everything received is kept in
    :attr:`received`. Used as a context manager: stopping closes every connection."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.received = bytearray()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.stopped = threading.Event()

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:  # under the lock: track() closes what comes after this
            self.stopped.set()
            sockets, self._open = self._open, []
        self._listener.close()
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if not self.track(sock):
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve_quietly, args=(sock,), daemon=True).start()

    def track(self, sock: socket.socket) -> bool:
        """Keep ``sock`` to be closed at stop; if the fake has stopped already (a
        connection accepted, or opened, while it stopped), close it now and say so.
        Otherwise a socket no one closes is left to the garbage collector, whose
        ResourceWarning lands in whichever test runs then."""
        with self._lock:
            if not self.stopped.is_set():
                self._open.append(sock)
                return True
        _close(sock)
        return False

    def _serve_quietly(self, sock: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError, ConnectionError, EOFError):
                self.serve(sock)
        finally:
            _close(sock)

    def serve(self, sock: socket.socket) -> None:
        """Serve one connection (here: hold it open, answering nothing)."""
        while not self.stopped.is_set() and self.recv(sock, 4096):
            pass

    def recv(self, sock: socket.socket, size: int) -> bytes:
        """Up to ``size`` bytes from the client, kept in :attr:`received` (b"": closed)."""
        data = sock.recv(size)
        with self._lock:
            self.received += data
        return data

    def recv_exactly(self, sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.recv(sock, size - len(data))
            if not chunk:
                raise EOFError("the client closed the connection")
            data += chunk
        return data


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class SilentServer(TcpFake):
    """Accepts every connection and never sends a byte (a server that hangs)."""


class FreezableProxy(TcpFake):
    """Relays connections to ``target`` until :meth:`freeze`; from then on it still
    accepts and reads, but nothing reaches either side (a server that hangs mid-way)."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target
        self.frozen = threading.Event()

    def freeze(self) -> None:
        self.frozen.set()

    def serve(self, sock: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        if not self.track(upstream):
            return
        threading.Thread(target=self._pump, args=(upstream, sock), daemon=True).start()
        self._pump(sock, upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not self.frozen.is_set():
                    sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
