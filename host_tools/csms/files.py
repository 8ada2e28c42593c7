"""The central system's HTTP file service, for UpdateFirmware and GetDiagnostics:
GET /files/<path> serves the files folder, PUT or POST /upload/<name> stores the body in
<files>/uploads/<name> (a multipart/form-data POST stores its first file part)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

UPLOAD_MAX = 64 << 20     # bytes
UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BadUpload(ValueError):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


def _read_chunked(rfile) -> bytes:
    body = bytearray()
    while True:
        size_line = rfile.readline(1024)
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise BadUpload(400, "bad chunk size in a chunked body")
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):   # trailers
                pass
            return bytes(body)
        if len(body) + size > UPLOAD_MAX:
            raise BadUpload(413, f"an upload may be at most {UPLOAD_MAX} bytes")
        body += rfile.read(size)
        rfile.readline(1024)


def first_multipart_file(body: bytes, content_type: str) -> bytes:
    """The content of the first part with a filename (else the first part) of a form upload."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise BadUpload(400, "multipart/form-data without a boundary")
    delimiter = b"--" + m[1].encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break                                   # the closing delimiter
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        parts.append((head, content[:-2] if content.endswith(b"\r\n") else content))
    if not parts:
        raise BadUpload(400, "a multipart/form-data body with no part")
    for head, content in parts:
        if b"filename=" in head:
            return content
    return parts[0][1]


class FileService:
    def __init__(self, host: str, port: int, root: Path, say):
        self.root = root.resolve()
        self.uploads_dir = self.root / "uploads"
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        service = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "evsectl-csms"

            def log_message(self, fmt, *args):
                say(f"http {self.client_address[0]} " + (fmt % args))

            def _text(self, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _file_path(self) -> Path | None:
                path = urlsplit(self.path).path
                if not path.startswith("/files/"):
                    return None
                target = (service.root / unquote(path[len("/files/"):])).resolve()
                if service.root not in target.parents or not target.is_file():
                    return None
                return target

            def do_GET(self):
                target = self._file_path()
                if target is None:
                    self._text(404, f"no such file: {self.path}; GET /files/<name> serves {service.root}\n")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(target.stat().st_size))
                self.end_headers()
                if self.command != "HEAD":
                    with target.open("rb") as f:
                        shutil.copyfileobj(f, self.wfile)

            do_HEAD = do_GET

            def do_PUT(self):
                path = urlsplit(self.path).path
                name = unquote(path[len("/upload/"):]) if path.startswith("/upload/") else ""
                try:
                    if not path.startswith("/upload/"):
                        raise BadUpload(404, f"uploads go to PUT or POST /upload/<name>, not {path}")
                    if not UPLOAD_NAME.match(name):
                        raise BadUpload(400, f"upload name {name!r} must be letters, digits, '.', '_' or '-' "
                                             "(at most 128, not starting with '.')")
                    body = self._body()
                    content_type = self.headers.get("Content-Type", "")
                    if self.command == "POST" and content_type.startswith("multipart/form-data"):
                        body = first_multipart_file(body, content_type)
                except BadUpload as e:
                    self._text(e.status, f"{e}\n")
                    return
                tmp = service.uploads_dir / f".{name}.{threading.get_ident()}.part"
                tmp.write_bytes(body)
                tmp.replace(service.uploads_dir / name)
                say(f"http upload {name}: {len(body)} bytes")
                self._text(200, json.dumps({"ok": True, "name": name, "bytes": len(body)}) + "\n",
                           "application/json")

            do_POST = do_PUT

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    return _read_chunked(self.rfile)
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    raise BadUpload(411, "send a Content-Length header or a chunked body")
                if not 0 <= length <= UPLOAD_MAX:
                    raise BadUpload(413, f"an upload may be at most {UPLOAD_MAX} bytes, not {length}")
                return self.rfile.read(length)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="csms-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
        self.httpd.server_close()

    def uploads(self) -> list[dict]:
        found = []
        for path in sorted(self.uploads_dir.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                data = path.read_bytes()
                found.append({"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        return found
