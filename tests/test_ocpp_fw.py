"""OCPP FirmwareManagement under the real MicroPython against a real HTTP server: a bundle built by
host_tools/fwbundle.py is downloaded, verified and installed on a "flash" (a temp directory), or
refused with the old files byte-identical; the log is uploaded byte-identical. The bundle parser
is fuzzed under CPython."""
import asyncio
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from evse.ocpp import bundle, fw, http as fw_http
from host_tools import fwbundle

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
SCRIPTS = Path(__file__).resolve().parent / "fw_mpy"
ENV = dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen")
VERSION = "9.9.9"
OLD_FILES = {"main.py": b"# old main\n", "boot.py": b"# old boot\n", "evse/__init__.py": b'VERSION = "0.0.1"\n',
             "evse/app.py": b"# old app\n" * 50, "board.json": b'{"name": "sim"}', "config.json": b"{}"}
HEAP_BUDGET_BYTES = 26 * 1024   # of the 40 KB all of OCPP may use; the server's address stays cached (evse.ocpp.names)


# --- the server ---------------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.path)
        route = srv.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        mode, body = route
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", body)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if mode == "length":
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sizes, at, i = (1, 7, 1000, 4096, 3, 2500), 0, 0
            while at < len(body):
                piece = body[at:at + sizes[i % len(sizes)]]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
                at, i = at + len(piece), i + 1
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif mode == "close":   # no length: the body ends when the connection does
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        elif mode == "short":   # promises more than it sends, then hangs up
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv.uploads.append((self.command, self.path, body))
        status = 500 if self.path.startswith("/fail") else 201
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes, self.requests, self.uploads = {}, [], []
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.url = "%s://%s:%d" % ("https" if tls else "http", "localhost" if tls else "127.0.0.1",
                                   self.server_address[1])
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def serve(self, path, body, mode="length"):
        self.routes[path] = (mode, body)
        return self.url + path


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(bundle bytes, {path: bytes}) of a snapshot of firmware/ (others edit it meanwhile)."""
    snap = tmp_path_factory.mktemp("release") / "firmware"
    shutil.copytree(REPO / "firmware", snap, ignore=shutil.ignore_patterns("__pycache__"))
    data = fwbundle.build(snap, VERSION)
    return data, {p: (snap / p).read_bytes() for p in fwbundle.bundle_files(snap)}


@pytest.fixture
def flash(tmp_path):
    root = tmp_path / "flash"
    for path, data in OLD_FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def run_mpy(script, *args, timeout=30):
    r = subprocess.run([MICROPYTHON, str(SCRIPTS / script), *map(str, args)], capture_output=True,
                       text=True, env=ENV, timeout=timeout)
    return events(r.stdout, r.stderr)


def events(stdout, stderr=""):
    lines = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
    assert lines and ("result" in lines[-1] or "cut" in lines[-1]), stdout + stderr
    return lines, stdout + stderr


def statuses(lines):
    return [e["status"] for e in lines if "status" in e]


def make_bundle(files, version=VERSION):
    """A bundle written here by hand from the format bundle.py documents (not by fwbundle)."""
    manifest = {"version": version, "files": [
        {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for p, b in files]}
    raw = json.dumps(manifest).encode()
    return b"EVSEFW1 %d\n" % len(raw) + raw + b"".join(b for _, b in files)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- update -------------------------------------------------------------------------------------

def test_a_download_by_name_looks_the_name_up_once_and_reuses_the_address(server, flash):
    # On a board getaddrinfo blocks the whole loop for a DNS round trip: once per boot.
    if socket.getaddrinfo("localhost", 80, 0, socket.SOCK_STREAM)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    url = server.serve("/named.bin", b"x" * 3000).replace("127.0.0.1", "localhost")
    lines, out = run_mpy("fwrun.py", "get2", url, flash)
    assert lines[-1]["sizes"] == [3000, 3000], out
    assert lines[-1]["result"] == ["localhost"], out


@pytest.mark.parametrize("mode", ["length", "chunked", "close"])
def test_a_good_update_installs_every_file_and_reports_installed_after_the_reboot(server, release, flash, mode):
    data, files = release
    url = server.serve("/good-%s.bin" % mode, data, mode)
    lines, out = run_mpy("fwrun.py", "update", url, flash)
    assert statuses(lines) == ["Downloading", "Downloaded", "Installing"], out
    assert lines[-1]["result"] is True
    assert lines[-1]["heap_bytes"] < HEAP_BUDGET_BYTES, out
    # The HTTP client is let go once the bundle is down: the install, the update's peak, runs without it.
    assert [e["http_loaded"] for e in lines if "status" in e] == [True, False, False], out
    after = tree(flash)
    for path, content in files.items():
        assert after.pop(path) == content, path
    assert after.pop("board.json") == OLD_FILES["board.json"]
    assert after.pop("config.json") == OLD_FILES["config.json"]
    assert set(after) == {"fw.state"}   # no fw.new, no fw.pending, no staged .new left

    lines, out = run_mpy("fwrun.py", "boot", flash)   # after the reboot
    assert lines[-1]["result"] == [None, "Installed", None, VERSION], out


def test_one_redirect_is_followed(server, release, flash):
    data, _ = release
    target = server.serve("/moved-here.bin", data)
    url = server.serve("/moved.bin", target, "redirect")
    lines, out = run_mpy("fwrun.py", "update", url, flash)
    assert statuses(lines) == ["Downloading", "Downloaded", "Installing"] and lines[-1]["result"] is True, out


def _flip(data, at):
    data = bytearray(data)
    data[at] ^= 0x01
    return bytes(data)


BROKEN = {
    "one byte flipped in the last file": (lambda d: _flip(d, len(d) - 10), "length", "InstallationFailed"),
    "one byte flipped in the header": (lambda d: _flip(d, 3), "length", "InstallationFailed"),
    "one byte flipped in the manifest": (lambda d: _flip(d, 40), "length", "InstallationFailed"),
    "truncated bundle": (lambda d: d[:-100], "length", "InstallationFailed"),
    "trailing garbage": (lambda d: d + b"\0", "chunked", "InstallationFailed"),
    "connection lost before Content-Length": (lambda d: d[:50000], "short", "DownloadFailed"),
    "empty body": (lambda d: b"", "length", "InstallationFailed"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_bundle_is_refused_and_leaves_the_old_files_byte_identical(server, release, flash, case):
    data, _ = release
    corrupt, mode, failure = BROKEN[case]
    url = server.serve("/broken-%d.bin" % sorted(BROKEN).index(case), corrupt(data), mode)
    lines, out = run_mpy("fwrun.py", "update", url, flash)
    expected = ["Downloading", "DownloadFailed"] if failure == "DownloadFailed" else \
        ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert statuses(lines) == expected and lines[-1]["result"] is False, out
    assert tree(flash) == OLD_FILES
    lines, out = run_mpy("fwrun.py", "boot", flash)
    assert lines[-1]["result"] == [None, None, None, None], out


def test_a_bundle_of_evse_files_is_refused_on_a_board_that_runs_its_package_from_a_romfs_image(
        server, release, flash, tmp_path):
    from host_tools.flash import romfs_image
    module = tmp_path / "app.mpy"
    module.write_bytes(b"M\x06\x00\x1f")
    image = tmp_path / "evse.romfs"
    image.write_bytes(romfs_image({"evse/app.mpy": module}))
    data, _ = release
    url = server.serve("/romfs-board.bin", data)
    lines, out = run_mpy("fwrun.py", "update", url, flash, "romfs=%s" % image)
    assert statuses(lines) == ["Downloading", "Downloaded", "Installing", "InstallationFailed"] and lines[-1]["result"] is False
    assert "runs its package from a ROMFS image" in out and "evsectl flash --romfs" in out, out
    assert tree(flash) == OLD_FILES


# --- a board that runs its package from a ROMFS image -----------------------------------------

def bundle_entries(data):
    """{path: bytes} of a bundle."""
    length, header = bundle.parse_header(data[:bundle.HEADER_MAX])
    _, files = bundle.parse_manifest(data[header:header + length])
    out, at = {}, header + length
    for path, size, _ in files:
        out[path] = data[at:at + size]
        at += size
    return out


@pytest.fixture(scope="module")
def romfs_release(tmp_path_factory):
    """A snapshot of firmware/ as a bundle for esp32-devkitc, which runs its package from /rom:
    (bundle bytes, {path: bytes} of its files)."""
    snap = tmp_path_factory.mktemp("romfs-release") / "firmware"
    shutil.copytree(REPO / "firmware", snap, ignore=shutil.ignore_patterns("__pycache__"))
    data = fwbundle.build(snap, VERSION, romfs_board="esp32-devkitc")
    return data, bundle_entries(data)


@pytest.fixture
def romfs_board(tmp_path, flash):
    """A board running an old package from its ROMFS image: (the image file mounted at /rom, its
    256 KiB partition file holding it), with romfs_update.py on its filesystem."""
    from host_tools.flash import romfs_image
    module = tmp_path / "app.mpy"
    module.write_bytes(b"M\x06\x00\x1f")
    old = romfs_image({"evse/app.mpy": module})
    image = tmp_path / "old.romfs"
    image.write_bytes(old)
    partition = tmp_path / "partition"
    partition.write_bytes(old + b"\xff" * (256 * 1024 - len(old)))
    shutil.copyfile(REPO / "firmware" / "romfs_update.py", flash / "romfs_update.py")
    return image, partition


def rom_files(partition):
    lines, out = run_mpy("romfsrun.py", "mount", partition)
    return lines[-1]["result"], out


def test_a_romfs_bundle_is_staged_and_its_image_written_to_the_partition_at_the_next_boot(
        server, romfs_release, flash, romfs_board):
    data, files = romfs_release
    image, partition = romfs_board
    assert rom_files(partition)[0] == ["/rom/evse", "/rom/evse/app.mpy"]
    url = server.serve("/romfs.bin", data)
    lines, out = run_mpy("fwrun.py", "update", url, flash, "romfs=%s" % image, "partition=%s" % partition)
    assert statuses(lines) == ["Downloading", "Downloaded", "Installing"] and lines[-1]["result"] is True, out
    held = tree(flash)
    for path in ("main.py", "romfs_update.py", "evse.romfs"):
        assert held[path] == files[path], path
    assert "evse/app.py" in held   # nothing under evse/ on the filesystem was touched

    lines, out = run_mpy("romfsrun.py", "install", flash, partition)
    assert lines[-1]["result"] is True and not lines[-1]["staged"], out
    assert "app.mpy" in lines[-1]["rom"] and "ocpp" in lines[-1]["rom"], out   # the boot goes on from it
    assert partition.read_bytes()[:len(files["evse.romfs"])] == files["evse.romfs"]
    found, out = rom_files(partition)
    assert {"/rom/evse/app.mpy", "/rom/evse/ocpp/fw.mpy", "/rom/evse/hal/esp32.mpy"} <= set(found), out
    lines, out = run_mpy("romfsrun.py", "install", flash, partition)   # the boot after: nothing to do
    assert lines[-1]["result"] is False and lines[-1]["writes"] == 0, out


def test_a_power_cut_while_the_image_is_written_leaves_no_image_or_the_old_one_and_the_next_boot_writes_it(
        tmp_path, romfs_release, flash, romfs_board):
    _, files = romfs_release
    _, partition = romfs_board
    (flash / "evse.romfs").write_bytes(files["evse.romfs"])   # staged and renamed by the update
    old_partition, old_flash = partition.read_bytes(), tree(flash)
    lines, out = run_mpy("romfsrun.py", "install", flash, partition)
    total = lines[-1]["writes"]   # an erase and a write per block
    assert total == 2 * -(-len(files["evse.romfs"]) // 4096), out
    for cut in (1, 2, total // 2, total):
        partition.write_bytes(old_partition)
        for path, body in old_flash.items():
            (flash / path).write_bytes(body)
        run_until_cut("romfsrun.py", "install", flash, partition, "cut=%d" % cut)
        found, out = rom_files(partition)
        # Block 0, the header, is erased first and written last: the old image or none at all.
        assert found == (["/rom/evse", "/rom/evse/app.mpy"] if cut == 1 else None), (cut, out)
        assert (flash / "evse.romfs").exists()
        lines, out = run_mpy("romfsrun.py", "install", flash, partition)
        assert lines[-1]["result"] is True and not lines[-1]["staged"] and "ocpp" in lines[-1]["rom"], (cut, out)
        assert partition.read_bytes()[:len(files["evse.romfs"])] == files["evse.romfs"], cut


@pytest.mark.parametrize("board, says", [
    ("evse-files", "runs its package from evse/ on its filesystem"),
    ("small-partition", "over this board's 65536-byte ROMFS partition"),
    ("no-partition", "has no ROMFS partition"),
    ("no-installer", "romfs_update.py, which writes the image to the partition at boot, is neither"),
])
def test_a_romfs_bundle_the_board_cannot_install_is_refused_and_changes_nothing(
        server, romfs_release, flash, romfs_board, tmp_path, board, says):
    data, files = romfs_release
    image, partition = romfs_board
    if board == "small-partition":
        partition.write_bytes(partition.read_bytes()[:64 * 1024])
    if board == "no-installer":   # a bundle without it, for a board without it
        data = fwbundle.build(REPO / "firmware", VERSION, romfs_board="esp32-devkitc")
        entries = bundle_entries(data)
        entries.pop("romfs_update.py")
        (flash / "romfs_update.py").unlink()
        raw = json.dumps({"version": VERSION, "files": [
            {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for p, b in entries.items()]}).encode()
        data = fwbundle.MAGIC + b"%d\n" % len(raw) + raw + b"".join(entries.values())
    before = tree(flash)
    url = server.serve("/romfs-%s.bin" % board, data)
    opts = [] if board == "evse-files" else ["romfs=%s" % image]
    opts += [] if board == "no-partition" else ["partition=%s" % partition]
    lines, out = run_mpy("fwrun.py", "update", url, flash, *opts)
    assert statuses(lines) == ["Downloading", "Downloaded", "Installing", "InstallationFailed"] and lines[-1]["result"] is False
    assert says in out, out
    assert tree(flash) == before


@pytest.mark.parametrize("where", ["404", "connection refused", "ftp", "no such host"])
def test_a_download_that_cannot_start_fails_after_every_retry_and_leaves_the_old_files(server, flash, where):
    url = {"404": server.url + "/nothing-here.bin",
           "connection refused": "http://127.0.0.1:%d/fw.bin" % closed_port(),
           "ftp": "ftp://user:pw@127.0.0.1/fw.bin",
           "no such host": "http://no-such-host.invalid/fw.bin"}[where]
    before = len(server.requests)
    lines, out = run_mpy("fwrun.py", "update", url, flash, 3)
    assert statuses(lines) == ["Downloading", "DownloadFailed"] and lines[-1]["result"] is False, out
    assert out.count("failed:") == (1 if where == "ftp" else 3), out   # ftp: no point in retrying
    if where == "404":
        assert server.requests[before:] == ["/nothing-here.bin"] * 3
        assert "404" in out
    if where == "ftp":
        assert "ftp:// is not supported here; use http:// or https://" in out
    assert tree(flash) == OLD_FILES


@pytest.mark.parametrize("path", ["../board.json", "board.json", "config.json", "/main.py", "evse/../board.json",
                                  "evse/settings.json", "evse/.hidden.py", "lib/x.py", "evse//app.py",
                                  "evse\\app.py", "evse/app.py.new"])
def test_a_manifest_path_outside_the_firmware_is_refused(server, flash, path):
    data = make_bundle([("evse/app.py", b"# new app\n"), (path, b"# sneaky\n")])
    url = server.serve("/unsafe-%s.bin" % hashlib.sha256(path.encode()).hexdigest()[:8], data)
    lines, out = run_mpy("fwrun.py", "update", url, flash)
    assert statuses(lines) == ["Downloading", "Downloaded", "Installing", "InstallationFailed"], out
    assert "path" in out and "refused" in out
    assert tree(flash) == OLD_FILES


def _cut_power(url, flash, cut):
    run_until_cut("fwrun.py", "update", url, flash, "cut=" + cut)


def run_until_cut(script, *args):
    """Runs a script until it says the power goes (a line {"cut": ...}), and kills it there."""
    p = subprocess.Popen([MICROPYTHON, str(SCRIPTS / script), *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        out = []
        for line in p.stdout:
            out.append(line)
            if line.startswith('{"cut"'):
                break
        p.send_signal(signal.SIGKILL)   # no finally, no cleanup: like the supply going away
    finally:
        p.wait(timeout=10)
    assert out and out[-1].startswith('{"cut"'), "".join(out) + p.stderr.read()


def test_a_power_cut_while_renaming_is_finished_at_boot(server, release, flash):
    data, files = release
    url = server.serve("/cut-rename.bin", data)
    _cut_power(url, flash, "rename:5")
    half = tree(flash)
    assert "fw.pending" in half and any(p.endswith(".new") for p in half if p != "fw.new")
    assert sum(half.get(p) == c for p, c in files.items()) == 5   # five renamed, the rest staged

    lines, out = run_mpy("fwrun.py", "boot", flash)
    assert lines[-1]["result"] == ["Installed", "Installed", None, VERSION], out
    after = tree(flash)
    assert {p: after[p] for p in files} == files
    assert set(after) - set(files) == {"board.json", "config.json", "fw.state"}


def test_a_romfs_install_cut_after_its_image_was_written_at_boot_is_reported_installed(
        server, romfs_release, flash, romfs_board):
    """Cut after evse.romfs was renamed into place but before the install was closed: at the next
    boot romfs_update writes the image and removes it first, then resume_install finishes."""
    data, files = romfs_release
    image, partition = romfs_board
    url = server.serve("/romfs-cut.bin", data)
    run_until_cut("fwrun.py", "update", url, flash, "romfs=%s" % image, "partition=%s" % partition,
                  "cut=state:0")   # every file renamed, the install not closed: fw.pending still there
    assert "fw.pending" in tree(flash) and "evse.romfs" in tree(flash)
    lines, out = run_mpy("romfsrun.py", "install", flash, partition)
    assert lines[-1]["result"] is True and "evse.romfs" not in tree(flash), out
    lines, out = run_mpy("fwrun.py", "boot", flash)
    assert lines[-1]["result"] == ["Installed", "Installed", None, VERSION], out


def test_a_staged_file_the_flash_damaged_before_the_boot_is_reported_as_installation_failed(server, release, flash):
    data, files = release
    url = server.serve("/cut-damaged.bin", data)
    _cut_power(url, flash, "rename:2")
    staged = sorted(p for p in tree(flash) if p.endswith(".py.new"))
    (flash / staged[-1]).write_bytes(b"# not what the manifest says\n")
    lines, out = run_mpy("fwrun.py", "boot", flash)
    assert lines[-1]["result"] == ["InstallationFailed", "InstallationFailed", None, None], out
    assert staged[-1][:-len(".new")] in out
    lines, out = run_mpy("fwrun.py", "boot", flash)   # nothing pending any more
    assert lines[-1]["result"] == [None, None, None, None], out


def test_a_power_cut_while_staging_is_rolled_back_at_boot(server, release, flash):
    data, _ = release
    url = server.serve("/cut-stage.bin", data)
    _cut_power(url, flash, "stage:4")
    assert "fw.pending" in tree(flash)
    lines, out = run_mpy("fwrun.py", "boot", flash)
    assert lines[-1]["result"] == ["InstallationFailed", "InstallationFailed", None, None], out
    after = tree(flash)
    assert after.pop("fw.state")
    assert after == OLD_FILES


def test_https_downloads_with_the_ca_and_refuses_a_server_the_ca_did_not_sign(tmp_path, release, flash):
    trustme = pytest.importorskip("trustme")
    ca, other_ca = trustme.CA(), trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(ctx)
    srv = Server(tls=ctx)
    try:
        url = srv.serve("/tls.bin", release[0])
        (tmp_path / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(other_ca.cert_pem.bytes().decode()))
        lines, out = run_mpy("fwrun.py", "update", url, flash, "ca=%s" % (tmp_path / "ca.der"))
        assert statuses(lines) == ["Downloading", "DownloadFailed"], out
        assert tree(flash) == OLD_FILES
        (tmp_path / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
        lines, out = run_mpy("fwrun.py", "update", url, flash, "ca=%s" % (tmp_path / "ca.der"))
        assert statuses(lines) == ["Downloading", "Downloaded", "Installing"], out
    finally:
        srv.shutdown()


# --- diagnostics and the log --------------------------------------------------------------------

def test_the_diagnostics_upload_arrives_byte_identical(server, tmp_path):
    before = len(server.uploads)
    lines, out = run_mpy("fwrun.py", "upload", server.url + "/upload/", tmp_path, 400, 8192)
    name = lines[-1]["result"]
    assert statuses(lines) == ["Uploading", "Uploaded"] and name == "diagnostics-2030-01-02T030405Z.txt", out
    assert lines[-1]["heap_bytes"] < HEAP_BUDGET_BYTES, out
    assert [Path(p).name for p in lines[-1]["files"]] == ["log.1.txt", "log.txt"]   # it has rotated
    (method, path, body), = server.uploads[before:]
    assert (method, path) == ("POST", "/upload/" + name)
    assert body == (tmp_path / "log.1.txt").read_bytes() + (tmp_path / "log.txt").read_bytes()
    assert body.endswith(b"line 399 of the controller log\n")


def test_a_server_error_makes_the_upload_fail_after_every_retry(server, tmp_path):
    before = len(server.uploads)
    lines, out = run_mpy("fwrun.py", "upload", server.url + "/fail/diag.txt", tmp_path, 10, 8192, 2)
    assert statuses(lines) == ["Uploading", "UploadFailed"] and lines[-1]["result"] is None, out
    assert len(server.uploads) - before == 2 and "500" in out


def test_an_ftp_diagnostics_location_fails_at_once_with_a_message(tmp_path):
    lines, out = run_mpy("fwrun.py", "upload", "ftp://csms.example/diag/", tmp_path, 3, 8192, 3)
    assert statuses(lines) == ["Uploading", "UploadFailed"] and lines[-1]["result"] is None, out
    assert "ftp:// is not supported" in out


def test_the_log_rotates_within_its_budget_and_never_raises_on_a_failing_flash(tmp_path):
    r = subprocess.run([MICROPYTHON, str(SCRIPTS / "logrun.py"), str(tmp_path)], capture_output=True,
                       text=True, env=ENV, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert [Path(p).name for p in out["files"]] == ["log.1.txt", "log.txt"]
    assert sum(out["sizes"]) <= 2048
    assert out["tail3"] == ["t00198 event 197", "t00199 event 198", "t00200 event 199"]
    numbers = [int(line.split()[-1]) for line in out["tail_all"]]
    assert numbers == list(range(numbers[0], 200)) and numbers[0] > 0   # whole lines, in order, oldest gone
    assert out["tail0"] == []
    assert "\n" not in out["long"] and out["long"].startswith("t00201 two lines xxx")
    assert out["lost"] == 5 and out["tail_of_broken"] == []
    assert out["after_repair"][-2].endswith("log: 5 lines lost (flash full or failing)")
    assert out["after_repair"][-1].endswith("back")
    held = out["held"]
    assert all(d >= b for b, d in zip(held["before"], held["during"]))   # only grew: safe to upload
    assert sum(held["during"]) <= 1024 and held["lost"] > 0
    assert sum(held["after"]) <= 1024


# --- CPython: the bundle format and URLs ----------------------------------------------------------

def test_fwbundle_bundles_the_top_level_files_and_every_evse_module_and_nothing_else(tmp_path):
    out = tmp_path / "fw.bin"
    assert fwbundle.main([str(REPO / "firmware"), str(out), "--version", "1.2.3"]) == 0
    data = out.read_bytes()
    length, header = bundle.parse_header(data[:bundle.HEADER_MAX])
    version, files = bundle.parse_manifest(data[header:header + length])
    expected = {"main.py", "boot.py", "romfs_update.py"} | {p.relative_to(REPO / "firmware").as_posix()
                                         for p in (REPO / "firmware" / "evse").rglob("*.py")}
    assert version == "1.2.3" and {p for p, _, _ in files} == expected
    assert all(p.endswith(".py") for p, _, _ in files)
    assert fwbundle.main([str(REPO / "firmware"), str(out), "--version", "x" * 51]) == 2


def test_fwbundle_romfs_bundles_the_top_level_files_and_the_package_as_one_image_for_the_board(tmp_path):
    from host_tools.flash import compile_package, romfs_image
    out = tmp_path / "fw.bin"
    assert fwbundle.main([str(REPO / "firmware"), str(out), "--version", "1.2.3", "--romfs", "esp32-devkitc"]) == 0
    entries = bundle_entries(out.read_bytes())
    # main.py, which imports romfs_update, is renamed into place after it
    assert list(entries) == ["romfs_update.py", "boot.py", "main.py", "evse.romfs"]
    assert entries["evse.romfs"] == romfs_image(compile_package("xtensawin"))
    assert fwbundle.main([str(REPO / "firmware"), str(out), "--version", "1", "--romfs", "rp2040-pico"]) == 2
    mpy_only = tmp_path / "firmware"
    (mpy_only / "evse").mkdir(parents=True)
    (mpy_only / "evse" / "__init__.mpy").write_bytes(b"M")
    with pytest.raises(ValueError, match="no evse/\\*.py sources"):
        fwbundle.build(mpy_only, "1", romfs_board="esp32-devkitc")


@pytest.mark.parametrize("url, parsed", [
    ("http://example.com/fw.bin", (False, "example.com", 80, "/fw.bin", None)),
    ("https://example.com/fw.bin", (True, "example.com", 443, "/fw.bin", None)),
    ("http://u:p@10.0.0.1:8080/a/b?x=1#frag", (False, "10.0.0.1", 8080, "/a/b?x=1", "u:p")),
    ("HTTPS://[::1]:8443", (True, "::1", 8443, "/", None)),
    ("http://host?q", (False, "host", 80, "/?q", None)),
])
def test_urls_parse_into_scheme_host_port_and_target(url, parsed):
    assert fw_http.parse_url(url) == parsed


@pytest.mark.parametrize("url, message", [
    ("ftp://ftp.example.com/fw.bin", "ftp:// is not supported"),
    ("example.com/fw.bin", "must start with http:// or https://"),
    ("http://host:99999/", "port"),
    ("http://host:abc/", "port"),
    ("http:///path", "no host"),
    ("http://host/a b", "space"),
])
def test_a_bad_url_is_refused_with_a_message_naming_it(url, message):
    with pytest.raises(fw_http.HttpError, match=message):
        fw_http.parse_url(url)


def _verify(tmp, data):
    path = os.path.join(tmp, "fw.new")
    with open(path, "wb") as f:
        f.write(data)
    return asyncio.run(bundle.verify_bundle(path))


GOOD = make_bundle([("main.py", b"# main\n"), ("evse/app.py", b"# app\n" * 100), ("evse/x/y.mpy", b"\x00" * 70)])


def test_a_good_hand_made_bundle_verifies(tmp_path):
    version, files, offset = _verify(tmp_path, GOOD)
    assert version == VERSION and [p for p, _, _ in files] == ["main.py", "evse/app.py", "evse/x/y.mpy"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_garbage_manifest_bytes_fail_cleanly(raw):
    try:
        bundle.parse_manifest(raw)
    except fw.BundleError:
        pass


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                       max_leaves=20)
ENTRY = st.fixed_dictionaries({"path": st.sampled_from(["evse/a.py", "main.py", "../x.py", "evse/a.py", ""]) | JSONISH,
                               "size": st.integers(-2, 300000) | JSONISH,
                               "sha256": st.just("0" * 64) | st.text(max_size=64) | JSONISH})


@settings(max_examples=300)
@given(st.one_of(JSONISH, st.fixed_dictionaries({"version": st.text(max_size=60) | JSONISH,
                                                 "files": st.lists(ENTRY, max_size=4) | JSONISH})))
def test_structurally_wrong_manifests_fail_cleanly(manifest):
    try:
        version, files = bundle.parse_manifest(json.dumps(manifest).encode())
    except fw.BundleError:
        return
    for path, size, sha in files:   # anything accepted is something we would install
        assert bundle.check_path(path) == path and 0 <= size and len(sha) == 64


@pytest.mark.parametrize("paths", [("evse/a.py", "evse/a.py"), ("evse/Gun.py", "evse/gun.py"), ("evse/gun.py", "evse/GUN.py"),
                                   ("evse/ocpp/x.mpy", "evse/app.py", "evse/OCPP/X.mpy")])
def test_a_file_listed_twice_in_any_case_is_refused(paths):
    # littlefs tells names apart by case, a FAT card or a technician's copy may not.
    manifest = {"version": "1", "files": [{"path": p, "size": 1, "sha256": "0" * 64} for p in paths]}
    with pytest.raises(fw.BundleError, match="listed twice"):
        bundle.parse_manifest(json.dumps(manifest).encode())


def test_the_room_an_install_asks_for_covers_what_staging_takes_on_littlefs_and_not_much_more(tmp_path):
    """bundle.check_room against littlefs itself (MicroPython's VfsLfs2 on a 1.4 MB RAM device,
    a Pico's filesystem): the package's files as a board holds them (.mpy), staged again as .new
    files. Asking for a block a file on top (as it once did) wanted far more than staging took,
    and refused a signed update on the virtual board's flash."""
    from host_tools.sim.supervisor import compile_to_mpy
    shutil.copytree(REPO / "firmware" / "evse", tmp_path / "evse", ignore=shutil.ignore_patterns("__pycache__"))
    compile_to_mpy(tmp_path / "evse")
    lines, out = run_mpy("room.py", tmp_path / "evse")
    room = lines[-1]
    assert room["result"] is True, out
    assert room["used"] <= room["needed"] <= 1.3 * room["used"], room


HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@settings(max_examples=500)
@given(HEX64 | st.builds(lambda h, at, c: h[:at] + c + h[at + 1:], HEX64, st.integers(0, 64),
                         st.sampled_from("ABCDEFxg \u00e9\u0130\n") | st.just("") | st.just("00"))
       | st.text(max_size=70))
def test_a_sha256_is_64_lowercase_hex_digits_and_nothing_else(sha):
    assert bundle._is_sha256_hex(sha) == (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_mutated_bundle_is_refused_cleanly_or_still_exactly_its_manifest(tmp_path, data):
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "replace-head"]))
    mutated = bytearray(GOOD)
    at = data.draw(st.integers(0, len(GOOD) - 1))
    if kind == "flip":
        mutated[at] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        del mutated[at:]
    elif kind == "insert":
        mutated[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        mutated[:at] = data.draw(st.binary(max_size=40))
    try:
        version, files, offset = _verify(tmp_path, bytes(mutated))
    except fw.BundleError:
        return
    # Accepted: only when a change in the manifest still described these very bytes.
    assert offset + sum(size for _, size, _ in files) == len(mutated)
    at_data = len(mutated) - sum(size for _, size, _ in files)
    for path, size, sha in files:
        assert hashlib.sha256(bytes(mutated[at_data:at_data + size])).hexdigest() == sha
        at_data += size


@given(st.text(max_size=70))
def test_check_path_accepts_only_firmware_files(path):
    try:
        assert bundle.check_path(path) == path
    except fw.BundleError:
        return
    parts = path.split("/")
    assert ".." not in parts and not path.startswith("/") and "\\" not in path
    assert path in ("main.py", "boot.py", "romfs_update.py", "evse.romfs") or \
        (parts[0] == "evse" and path.endswith((".py", ".mpy")))
