"""A PostgreSQL-protocol server of our own, as a hostile source database would be: it
refuses TLS and GSS encryption, then either asks for the password in clear text (and
keeps it, in :attr:`received`) or lets any login in and never answers a query."""

from __future__ import annotations

import socket
import struct

from tests.fakes.tcp import TcpFake

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
PARAMETERS = {
    "server_version": "15.0",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "standard_conforming_strings": "on",
    "DateStyle": "ISO, MDY",
    "integer_datetimes": "on",
    "TimeZone": "UTC",
}


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


class FakePostgres(TcpFake):
    """``asks_password``: answers a login with a clear-text password request, then
    refuses it; else logs anybody in and never answers a query (the server hangs)."""

    def __init__(self, *, asks_password: bool) -> None:
        super().__init__()
        self.asks_password = asks_password

    def startup(self, sock: socket.socket) -> bytes:
        """The client's startup message, after refusing any TLS or GSS request."""
        while True:
            length = struct.unpack("!I", self.recv_exactly(sock, 4))[0]
            body = self.recv_exactly(sock, length - 4)
            if struct.unpack("!I", body[:4])[0] in (SSL_REQUEST, GSSENC_REQUEST):
                sock.sendall(b"N")
                continue
            return body

    def serve(self, sock: socket.socket) -> None:
        self.startup(sock)
        if self.asks_password:
            sock.sendall(message(b"R", struct.pack("!I", 3)))  # clear-text password
            kind = self.recv_exactly(sock, 1)
            length = struct.unpack("!I", self.recv_exactly(sock, 4))[0]
            self.recv_exactly(sock, length - 4)  # the password, kept in received
            if kind == b"p":
                error = b"SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"
                sock.sendall(message(b"E", error))
            return
        sock.sendall(message(b"R", struct.pack("!I", 0)))  # authentication ok
        for name, value in PARAMETERS.items():
            sock.sendall(message(b"S", name.encode() + b"\x00" + value.encode() + b"\x00"))
        sock.sendall(message(b"K", struct.pack("!II", 4242, 1234)))
        sock.sendall(message(b"Z", b"I"))
        super().serve(sock)  # every query: no answer, ever
