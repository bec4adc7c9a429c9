"""HTTP/1.1 by hand over a socket, for what httpx will not do: send a request head and hold the
body back, send it slowly, go away half-way, send any Host."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes


class RawRequest:
    """One request on its own connection: `start` sends the head, `send` body bytes, `response`
    reads the answer (whenever the server gives it: before the body, if it does not wait)."""

    def __init__(self, url: str, method: str, target: str, headers: dict[str, str], *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self._head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self._buffer = b""

    def start(self) -> RawRequest:
        self.sock.sendall(self._head.encode("latin-1"))
        return self

    def send(self, data: bytes) -> bool:
        """Send body bytes; False if the server has closed the connection (it answered already)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def response_head(self) -> RawResponse:
        """The status line and headers only (`body` empty), e.g. of a stream that never ends."""
        while b"\r\n\r\n" not in self._buffer:
            self._read()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return RawResponse(int(status_line.split()[1]), headers, b"")

    def response(self) -> RawResponse:
        """The whole answer, its body as long as its Content-Length says."""
        answer = self.response_head()
        length = int(answer.headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._read()
        answer.body = self._buffer[:length]
        return answer

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed after {self._buffer[:200]!r}")
        self._buffer += data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
