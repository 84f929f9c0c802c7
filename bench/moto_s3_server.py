#!/usr/bin/env python3
"""moto's S3 application on loopback for the tiers bench, under a lighter server than moto's own.

  .venv/bin/python bench/moto_s3_server.py PORT [--server threaded|uvicorn]

moto's S3 code answers a ranged GET in about 0.4 ms here, but its standalone server (werkzeug) closes the
connection after every response and picks the AWS service anew for every request, and uvicorn's WSGI
bridge adds an event-loop and thread-pool hop: both cost more per GET than moto's S3 code does. ``threaded``
(the default) is a plain HTTP/1.1 keep-alive server, one thread per connection, calling the application
inline. The archive does not know the difference: it talks S3 to an endpoint URL either way.

Requests are counted by method; ``GET /__bench_request_counts`` answers the counts (JSON) and resets them.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

COUNTS_PATH = "/__bench_request_counts"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def counting(app: WSGIApp) -> WSGIApp:
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == COUNTS_PATH:
            with lock:
                body = json.dumps(counts).encode()
                counts.clear()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        with lock:
            counts[environ["REQUEST_METHOD"]] += 1
        return app(environ, start_response)

    return counted


def _read_chunked(rfile: Any) -> bytes:
    parts = []
    while size := int(rfile.readline().split(b";")[0].strip() or b"0", 16):
        parts.append(rfile.read(size))
        rfile.readline()
    while rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
        pass
    return b"".join(parts)


def handler_for(app: WSGIApp, port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # the answer goes out in two writes: headers, then body

        def handle_one_request(self) -> None:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._serve()
            self.wfile.flush()

        def _serve(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = _read_chunked(self.rfile)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            environ: dict[str, Any] = {
                "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "PATH_INFO": unquote(path, "latin-1"),
                "QUERY_STRING": query, "RAW_URI": self.path, "REQUEST_URI": self.path,
                "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port), "SERVER_PROTOCOL": self.request_version,
                "REMOTE_ADDR": self.client_address[0], "CONTENT_LENGTH": str(len(body)),
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
            for name, value in self.headers.items():
                key = "HTTP_" + name.upper().replace("-", "_")
                if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
                    environ[key] = f"{environ[key]},{value}" if key in environ else value
            answer: dict[str, Any] = {}

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
                answer["status"], answer["headers"] = status, headers

            result = app(environ, start_response)
            try:
                data = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            code, _, reason = answer["status"].partition(" ")
            self.send_response_only(int(code), reason)
            head = self.command == "HEAD"  # its Content-Length is the object's, from the application
            length = None if head else str(len(data))
            for name, value in answer["headers"]:
                lowered = name.lower()
                if lowered == "content-length" and head:
                    length = value
                elif lowered not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--server", choices=("threaded", "uvicorn"), default="threaded")
    args = parser.parse_args()
    from moto.moto_server.werkzeug_app import create_backend_app

    app = counting(create_backend_app("s3"))
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=args.port, interface="wsgi", log_level="warning", access_log=False)
        return
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(app, args.port))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
