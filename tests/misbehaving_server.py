"""A small HTTP server on the loopback that misbehaves the ways a broken partner or proxy does.

Each path is one behaviour (after reading the request):

``/huge-announced``  ``Content-Length: 2 GiB`` and a stream of zeros
``/huge``            2 GiB of zeros with no length (ends when the connection closes)
``/chunked``         an endless chunked body
``/drip``            ``Content-Length: 100000``, then one byte every 0.25 s
``/silent``          the request is read, nothing ever comes back
``/header-drip``     the status line, then the headers one byte a second
``/reset``           ``Content-Length: 100000``, 5,000 bytes, then a TCP reset
``/html``            ``200 OK`` with an HTML page (a proxy's login page)
``/gzip-bomb``       1 MB of gzip (``Content-Encoding: gzip``) that expands to 1 GiB

It serves each connection in a thread; writes to a client that went away end that thread.
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from functools import cache

GIB = 1024 ** 3
_ZEROS = b"\0" * (1024 * 1024)


@cache
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzipped (about 1 MB): 1,024 gzip members of 1 MiB each, which a gzip reader
    decodes one after another (and which take no time to make)."""
    return gzip.compress(_ZEROS, compresslevel=9) * 1024


class MisbehavingServer:
    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()

    def __enter__(self) -> MisbehavingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> str:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return ""
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head.split(b" ")[1].decode()

    def _serve(self, conn: socket.socket) -> None:
        try:
            path = self._read_request(conn)
            self.requests.append(path)
            getattr(self, "_" + path.strip("/").split("?")[0].replace("-", "_"), self._not_found)(conn)
        except OSError:
            pass  # the client gave up: that is the point
        finally:
            try:
                conn.close()
            except OSError:
                pass

    # -- behaviours --------------------------------------------------------------------------
    def _not_found(self, conn):
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def _huge_announced(self, conn):
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {2 * GIB}\r\n\r\n".encode())
        for _ in range(2048):
            conn.sendall(_ZEROS)

    def _huge(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n")
        for _ in range(2048):
            conn.sendall(_ZEROS)

    def _chunked(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n" % len(_ZEROS) + _ZEROS + b"\r\n"
        while not self._stop.is_set():
            conn.sendall(piece)

    def _drip(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100000):
            if self._stop.is_set():
                return
            conn.sendall(b"<")
            time.sleep(0.25)

    def _silent(self, conn):
        while not self._stop.is_set() and conn.recv(1):
            pass

    def _header_drip(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for byte in b"X-Slow: " + b"a" * 10000:
            if self._stop.is_set():
                return
            conn.sendall(bytes([byte]))
            time.sleep(1.0)

    def _reset(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n" + b"<" * 5000)
        time.sleep(0.1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST

    def _html(self, conn):
        page = b"<html><body><h1>Proxy login required</h1></body></html>"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
                     + str(len(page)).encode() + b"\r\n\r\n" + page)

    def _gzip_bomb(self, conn):
        body = gzip_bomb()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Encoding: gzip\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n")
        conn.sendall(body)
