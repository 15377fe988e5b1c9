"""A real HTTP server on 127.0.0.1 for download tests (stdlib http.server in a thread).

Each route serves fixed bytes and can misbehave on purpose: answer with another status, a given
Content-Type, ignore ``Range``, or cut the connection after some bytes. Every request is logged.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Route:
    """What one path answers. ``cuts``: for each of the next requests, the number of body bytes
    sent before the connection is dropped (consumed one per request). ``rate``: bytes per second
    (None: as fast as possible). ``location``: a redirect target (with status 302)."""

    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    ignore_range: bool = False
    cuts: list[int] = field(default_factory=list)
    rate: float | None = None
    location: str | None = None


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    path: str
    query: dict[str, list[str]]
    range: str | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        rng = self.headers.get("Range")
        with self.server.lock:
            self.server.seen.append(Seen(parts.path, parse_qs(parts.query), rng))
            route = self.server.routes.get(parts.path)
            cut = route.cuts.pop(0) if route and route.cuts else None
        if route is None:
            route = Route(b"<html><body>Not Found</body></html>", 404, "text/html")
        status, body, headers = route.status, route.body, {}
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and status == 200 and not route.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                status, body = 416, b""
                headers["Content-Range"] = f"bytes */{len(route.body)}"
            else:
                status, body = 206, body[start:]
                headers["Content-Range"] = f"bytes {start}-{len(route.body) - 1}/{len(route.body)}"
        if route.location is not None:
            status, headers["Location"] = 302, route.location
        self.send_response(status)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        body = body if cut is None else body[:cut]
        try:
            if route.rate is None:
                self.wfile.write(body)
            else:  # trickle: a piece every 0.05 s
                piece = max(1, int(route.rate * 0.05))
                for start in range(0, len(body), piece):
                    self.wfile.write(body[start:start + piece])
                    self.wfile.flush()
                    time.sleep(0.05)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()


class LocalServer:
    """Context manager: ``with LocalServer() as srv: srv.add("/f", data); srv.url("/f")``."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add(self, path: str, body: bytes, **kwargs) -> str:
        """Serve ``body`` at ``path`` (see :class:`Route` for ``kwargs``); return its URL."""
        self._server.routes[path] = Route(body, **kwargs)
        return self.url(path)

    def add_json(self, path: str, obj: object, status: int = 200) -> str:
        return self.add(path, json.dumps(obj).encode(), status=status,
                        content_type="application/json")

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    @property
    def seen(self) -> list[Seen]:
        """Requests received so far, oldest first."""
        with self._server.lock:
            return list(self._server.seen)

    def hits(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]
