"""A MySQL-protocol server of our own, as a hostile source database would be: it greets
(handshake v10, no TLS offered), accepts any login, lets the driver set its session up
(SET NAMES, SET AUTOCOMMIT), then answers every other query with a LOAD DATA LOCAL
request for a file of the client's host, or with nothing at all.

Whatever a client sends is kept (:attr:`received`), so a test can tell whether the file's
content ever left the client.
"""

from __future__ import annotations

import socket
import struct

from tests.fakes.tcp import TcpFake

# Capabilities offered: long password, found rows, long flag, connect with db, local
# files, protocol 4.1, transactions, secure connection, multi results, plugin auth.
CAPABILITIES = 0x1 | 0x2 | 0x4 | 0x8 | 0x80 | 0x200 | 0x2000 | 0x8000 | 0x20000 | 0x80000
SCRAMBLE = b"abcdefghijklmnopqrst"  # 20 bytes of "random" auth data
OK = b"\x00\x00\x00\x02\x00\x00\x00"  # header, 0 rows, insert id 0, autocommit, 0 warnings


def packet(sequence: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([sequence & 0xFF]) + payload


def greeting() -> bytes:
    return (
        b"\x0a"
        + b"8.0.36-fake\x00"
        + struct.pack("<I", 7)  # connection id
        + SCRAMBLE[:8]
        + b"\x00"
        + struct.pack("<H", CAPABILITIES & 0xFFFF)
        + b"\x21"  # utf8_general_ci
        + struct.pack("<H", 0x0002)  # autocommit
        + struct.pack("<H", CAPABILITIES >> 16)
        + bytes([len(SCRAMBLE) + 1])
        + b"\x00" * 10
        + SCRAMBLE[8:]
        + b"\x00"
        + b"mysql_native_password\x00"
    )


class FakeMySQL(TcpFake):
    """``infile``: the path each query is answered with a LOAD DATA LOCAL request for;
    None: queries are never answered (the server hangs after the login)."""

    def __init__(self, infile: str | None) -> None:
        super().__init__()
        self.infile = infile
        self.infile_requests = 0

    def read_packet(self, sock: socket.socket) -> tuple[int, bytes]:
        header = self.recv_exactly(sock, 4)
        length = int.from_bytes(header[:3], "little")
        return header[3], self.recv_exactly(sock, length)

    def serve(self, sock: socket.socket) -> None:
        sock.sendall(packet(0, greeting()))
        sequence, _login = self.read_packet(sock)
        sock.sendall(packet(sequence + 1, OK))
        sequence, command = self.read_packet(sock)
        while not self.stopped.is_set():
            if command[:1] == b"\x01":  # COM_QUIT
                return
            # Anything but a query (a ping), and the driver's session set-up (SET NAMES,
            # SET AUTOCOMMIT), which it reads as a bare OK: OK.
            if command[:1] != b"\x03" or command[1:5].upper() == b"SET ":
                sock.sendall(packet(sequence + 1, OK))
                sequence, command = self.read_packet(sock)
                continue
            if self.infile is None:
                super().serve(sock)  # hold the connection, answer nothing
                return
            self.infile_requests += 1
            sock.sendall(packet(sequence + 1, b"\xfb" + self.infile.encode()))
            # The client sends the file's content and then an empty packet, or refuses
            # and goes on with its next command (sequence 0), or hangs up.
            while True:
                sequence, content = self.read_packet(sock)
                if sequence == 0:
                    command = content
                    break
                if not content:
                    sock.sendall(packet(sequence + 1, OK))
                    sequence, command = self.read_packet(sock)
                    break
