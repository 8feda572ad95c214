"""Stand-ins for the operator's own services, on 127.0.0.1: a PO-token provider and a recording proxy.

``FakePotProvider`` answers like the bgutil provider server (``GET /ping``, ``POST /get_pot``).
``RecordingProxy`` is a small HTTP proxy (absolute-form forwarding and CONNECT tunnels, optional
Basic proxy auth, or a fixed refusal for every request) and ``RecordingSocks`` a small SOCKS5 one;
both record what they were asked for, so a test can prove that a refused link never reached them.
Both connect to loopback only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

POT_VERSION = "2.0.2"  # the bgutil plugin pinned in requirements.txt refuses a server of another major version
LOOPBACK = ("127.0.0.1", "::1", "localhost")
POT_TOKEN = "TESTPOTOKEN0123456789xyz"  # base64url of a valid length, as yt-dlp checks


class _PotHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _PotServer

    def _json(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path, None))
        if self.path == "/ping":
            return self._json({"version": POT_VERSION, "server_uptime": 1.0})
        self.send_error(404)

    def do_POST(self) -> None:
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.seen.append(("POST", self.path, data))
        if self.path == "/get_pot":
            return self._json({"poToken": POT_TOKEN, "contentBinding": data.get("content_binding")})
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


class _PotServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, str, Any]]


class FakePotProvider:
    """A bgutil-like PO-token provider server; ``seen`` lists (method, path, JSON body) it was asked."""

    def __init__(self) -> None:
        self._server = _PotServer(("127.0.0.1", 0), _PotHandler)
        self._server.seen = []
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[tuple[str, str, Any]]:
        return list(self._server.seen)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ----------------------------------------------------------------------------- the proxy

def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The bytes up to the blank line after the headers, and what came after them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the headers")
        data += chunk
        if len(data) > 65536:
            raise ConnectionError("headers too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 30)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (b if sock is a else a).sendall(data)


def _with_close(head: bytes) -> bytes:
    """A response or request head whose connection closes after this message."""
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith((b"connection:", b"keep-alive:",
                                                                                 b"proxy-connection:",
                                                                                 b"proxy-authorization:"))]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        client: socket.socket = self.request
        try:
            head, rest = _read_head(client)
        except (ConnectionError, OSError):
            return
        request_line, *header_lines = head.split(b"\r\n")
        method, target, _version = request_line.decode("latin-1").split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.decode("latin-1").partition(":")
                                                                  for line in header_lines)}
        owner = self.server.owner
        owner._record(f"{method} {target}", headers)
        if owner.auth and headers.get("proxy-authorization") != owner._expected_auth:
            return self._answer(407, "proxy authentication required", {"Proxy-Authenticate": 'Basic realm="test"'})
        if owner.refuse_status:
            return self._answer(owner.refuse_status, "refused by the test proxy")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            host, number = host.strip("[]"), int(port)
        else:
            url = urllib.parse.urlsplit(target)
            host, number = url.hostname or "", url.port or 80
        if host not in LOOPBACK:  # a test never sends traffic off this machine, even through a guard bug
            return self._answer(502, "the test proxy connects to loopback only")
        if method == "CONNECT":
            return self._tunnel(client, host, number)
        self._forward(client, method, target, header_lines, rest)

    def _answer(self, status: int, text: str, extra: dict[str, str] | None = None) -> None:
        body = f"{text}\n".encode()
        lines = [f"HTTP/1.1 {status} {text}", "Content-Type: text/plain", f"Content-Length: {len(body)}",
                 "Connection: close", *(f"{k}: {v}" for k, v in (extra or {}).items())]
        with contextlib.suppress(OSError):
            self.request.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)

    def _tunnel(self, client: socket.socket, host: str, port: int) -> None:
        try:
            upstream = socket.create_connection((host, port), timeout=10)
        except OSError:
            return self._answer(502, "bad gateway")
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with contextlib.suppress(OSError):
                _relay(client, upstream)

    def _forward(self, client: socket.socket, method: str, target: str, header_lines: list[bytes],
                 rest: bytes) -> None:
        url = urllib.parse.urlsplit(target)
        path = url.path or "/"
        if url.query:
            path += f"?{url.query}"
        try:
            upstream = socket.create_connection((url.hostname or "", url.port or 80), timeout=10)
        except OSError:
            return self._answer(502, "bad gateway")
        with upstream:
            head = _with_close(b"\r\n".join([f"{method} {path} HTTP/1.1".encode(), *header_lines]))
            upstream.sendall(head + rest)
            with contextlib.suppress(OSError, ConnectionError):
                response_head, body = _read_head(upstream)
                client.sendall(_with_close(response_head) + body)
                while data := upstream.recv(65536):
                    client.sendall(data)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: RecordingProxy


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that records each request line it gets (``asked``).

    ``refuse_status``: answer every request with it (a proxy whose address a site distrusts);
    ``auth``: (user, password) it demands as Basic proxy authorization.
    """

    handler: type[socketserver.BaseRequestHandler] = _ProxyHandler

    def __init__(self, refuse_status: int | None = None, auth: tuple[str, str] | None = None) -> None:
        self.refuse_status = refuse_status
        self.auth = auth
        self._expected_auth = "Basic " + base64.b64encode(":".join(auth).encode()).decode() if auth else ""
        self._lock = threading.Lock()
        self._asked: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._server = _ProxyServer(("127.0.0.1", 0), self.handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def _record(self, line: str, headers: dict[str, str]) -> None:
        with self._lock:
            self._asked.append(line)
            self.headers.append(headers)

    @property
    def asked(self) -> list[str]:
        with self._lock:
            return list(self._asked)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def proxy_url(self, scheme: str = "http") -> str:
        """``scheme://[user:password@]127.0.0.1:port``."""
        creds = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"{scheme}://{creds}127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.proxy_url()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ----------------------------------------------------------------------------- SOCKS5

class _SocksHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.request.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            self._handle()

    def _handle(self) -> None:
        owner, client = self.server.owner, self.request
        _version, count = self._read(2)
        methods = self._read(count)
        if owner.auth:
            if 2 not in methods:
                return client.sendall(b"\x05\xff")
            client.sendall(b"\x05\x02")
            _, size = self._read(2)
            user = self._read(size)
            password = self._read(self._read(1)[0])
            if (user.decode(), password.decode()) != owner.auth:
                return client.sendall(b"\x01\x01")
            client.sendall(b"\x01\x00")
        else:
            client.sendall(b"\x05\x00")
        _version, _command, _reserved, kind = self._read(4)
        if kind == 1:
            host, how = socket.inet_ntop(socket.AF_INET, self._read(4)), "address"
        elif kind == 4:
            host, how = socket.inet_ntop(socket.AF_INET6, self._read(16)), "address"
        else:
            host, how = self._read(self._read(1)[0]).decode(), "name"
        port = int.from_bytes(self._read(2), "big")
        owner._record(f"CONNECT {how} {host}:{port}", {})
        if host not in LOOPBACK:
            return client.sendall(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
        with socket.create_connection((host, port), timeout=10) as upstream:
            client.sendall(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
            _relay(client, upstream)


class RecordingSocks(RecordingProxy):
    """A SOCKS5 proxy on 127.0.0.1 that records each destination it is asked for, by name or by address."""

    handler = _SocksHandler
