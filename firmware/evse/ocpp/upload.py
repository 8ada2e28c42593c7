# GetDiagnostics and GetLog: a log's files uploaded to the central system's location over HTTP.
# The charge point loads this module for an upload (cp.start_diagnostics, cp.start_log) and lets
# it go with the upload (evse.update_job): a firmware update, the moment of most heap, runs
# without it.
import asyncio
from micropython import const

import evse
from evse.ocpp.fw import RETRY_INTERVAL_S, _attempts, _tell

UPLOAD_TIMEOUT_MS = const(30000)


def diagnostics_name(log):
    """The file name GetDiagnostics.conf carries, or None when there is no log to upload. Take
    it before the upload starts: the .conf goes out first."""
    if not log.files():
        return None
    stamp = "".join(c for c in log.now() if c.isalpha() or c.isdigit() or c == "-")
    return "diagnostics-%s.txt" % stamp


async def upload_diagnostics(url, root, log, notify, retries=1, retry_interval_s=60,
                             http_put=None, name=None, cadata=None):
    """GetDiagnostics: send the log files (oldest first, as one body) to `url`; a `url` ending
    in "/" gets the file name appended. The file name, or None when it failed (notified) or
    there was nothing to send (not notified: the .conf then carries no file name). `http_put`:
    in place of http.put_file."""
    from evse.ocpp import http
    await asyncio.sleep(0)   # the import (its .mpy loaded) a step of its own
    http_put = http_put or http.put_file
    name = name or diagnostics_name(log)
    if name is None:
        return None
    if url.endswith("/"):
        url += name
    await _tell(notify, "Uploading", log)
    await asyncio.sleep(0)   # the status in one step, the checks in the next
    try:
        http.parse_url(url)   # an ftp:// location fails now, not after every retry
        attempts = _attempts(retries)
    except http.HttpError as e:
        print("fw: diagnostics upload failed: %s" % e)
        attempts = 0
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(RETRY_INTERVAL_S if retry_interval_s is None else retry_interval_s)
        log.hold()   # no rotation while the files are read: they only grow
        try:
            paths = log.files()
            await asyncio.sleep(0)
            await http_put(url, paths, UPLOAD_TIMEOUT_MS, cadata=cadata)
            break
        except (http.HttpError, OSError) as e:
            print("fw: diagnostics upload %d of %d failed: %s" % (attempt + 1, attempts, e))
        finally:
            log.release()
    else:
        log.write("fw: diagnostics upload to %s failed" % url)
        await _tell(notify, "UploadFailed", log)
        return None
    await _tell(notify, "Uploaded", log)
    return name


def start_diagnostics(cp, location, retries, interval_s):
    """GetDiagnostics: the firmware's log uploaded to `location`; the file name it goes as."""
    async def notify(status):
        cp.diagnostics_status = status
        cp.send("DiagnosticsStatusNotification", {"status": status})

    return _upload_log(cp, cp.app.log, "diagnostics", location, retries, interval_s, notify)


def start_log(cp, kind, log, request_id, location, retries, interval_s):
    """GetLog: `log`, the diagnostics log or the security log (kind), uploaded to `location`,
    with LogStatusNotification for `request_id`; the file name."""
    cp.log_request_id = request_id

    async def notify(status):
        cp.log_status = "UploadFailure" if status == "UploadFailed" else status
        cp.send("LogStatusNotification", {"status": cp.log_status, "requestId": request_id})

    return _upload_log(cp, log, "security" if kind == "SecurityLog" else "diagnostics", location, retries,
                       interval_s, notify)


def _upload_log(cp, log, what, location, retries, interval_s, notify):
    """`log` uploaded to `location` in a task of its own (GetDiagnostics, GetLog), its
    statuses given to `notify`; the file name it goes as."""
    from evse.ocpp import clock
    evse.update_job(1)
    name = "%s-%s-%s.txt" % (what, cp.cp_id, clock.iso(cp.clock.now()).replace(":", "").replace("-", ""))

    async def upload():
        try:
            await upload_diagnostics(location, cp.root, log, notify, retries, interval_s,
                                     name=name, cadata=cp.trusted_ca())
        finally:
            evse.update_job(-1)

    asyncio.create_task(upload())
    return name
