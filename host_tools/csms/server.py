"""The connections of the development central system: the OCPP WebSocket server (security
profiles 0, 1 and 2), the sessions of connected charge points, the human log on stdout, and
`evsectl csms` itself, which also runs the API (api.py), the file service (files.py) and the
terminal (terminal.py)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import signal
import ssl
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.v16 import call as ocpp_call
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHeader, NegotiationError
from websockets.typing import Subprotocol

from host_tools.csms import schema
from host_tools.csms.central import CentralChargePoint
from host_tools.csms.model import CentralModel, DEFAULT_TAGS, ModelError, load_tags_file
from host_tools.csms.schema import FrameChecker

if TYPE_CHECKING:
    from host_tools.csms.files import FileService

SUBPROTOCOL = "ocpp1.6"      # OCPP-J 1.6 section 3.1.2
DEFAULT_CALL_TIMEOUT_S = 30.0
REFUSALS_KEPT = 50            # refused connections the API's info shows


class CallFailed(ValueError):
    """A `call` that got no usable answer; the message says why."""


@dataclass
class Session:
    """One live WebSocket connection of a charge point."""
    identity: str
    ws: ServerConnection
    checker: FrameChecker
    cp: CentralChargePoint | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class Wire:
    """The connection the library talks through: every frame passes the frame log on its way."""

    def __init__(self, central: "CentralSystem", session: Session):
        self.central, self.session = central, session

    async def recv(self):
        text = await self.session.ws.recv()
        self.central.log_frame(self.session, "in", text)
        return text

    async def send(self, text: str) -> None:
        # Logged before it leaves, so the CALL is known when a fast answer comes back.
        self.central.log_frame(self.session, "out", text)
        await self.session.ws.send(text)


def identity_from_path(path: str) -> str:
    """OCPP-J 1.6 section 3.1.1: the URL ends with the charge point identity."""
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


class CentralSystem:
    def __init__(self, tags: dict[str, dict], basic_auth: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None, out=None):
        self.t0 = time.monotonic()
        self.model = CentralModel(tags, self.now_ms)
        self.basic_auth = basic_auth or {}
        self.refusals: list[dict] = []   # the last REFUSALS_KEPT refused connections (API info)
        self.ssl_context = ssl_context
        self.sessions: dict[str, Session] = {}     # identity -> live session, oldest first
        self.addresses: dict[str, str] = {}
        self.files: FileService | None = None      # the HTTP file service, once started
        self._out = out or sys.stdout
        self._out_lock = threading.Lock()

    # -- log -------------------------------------------------------------------------------------

    def now_ms(self) -> float:
        return round((time.monotonic() - self.t0) * 1000, 1)

    def say(self, text: str) -> None:
        """One line of the human log, stamped with the wall clock and our t_ms."""
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        line = f"{stamp} {self.now_ms():>10.1f} {text}\n"
        with self._out_lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (OSError, ValueError):
                pass   # nobody reads our stdout any more; the API still works

    def log_frame(self, session: Session, direction: str, text) -> dict:
        entry = self.model.frames.record(session.identity, direction, text, session.checker)
        raw = text.decode(errors="replace") if isinstance(text, bytes) else text
        verdict = "" if entry["valid"] else f"   << NOT VALID OCPP 1.6: {entry['error']}"
        self.say(f"{session.identity} {direction:<3} {raw}{verdict}")
        return entry

    # -- WebSocket server ------------------------------------------------------------------------

    def _select_subprotocol(self, connection: ServerConnection, offered):
        if SUBPROTOCOL in offered:
            return SUBPROTOCOL
        raise NegotiationError(f"the charge point must offer the WebSocket subprotocol {SUBPROTOCOL} "
                               f"(Sec-WebSocket-Protocol), it offered {list(offered) or 'none'}")

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, why: str):
        path = connection.request.path if connection.request else "?"
        self.say(f"refused {path} from {_peer(connection)}: HTTP {status.value}, {why}")
        self.refusals.append({"t_ms": round(self.now_ms(), 1), "cp": identity_from_path(path) if path != "?" else None,
                              "status": status.value, "why": why})
        del self.refusals[:-REFUSALS_KEPT]
        response = connection.respond(status, why + "\n")
        if status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="evsectl csms", charset="UTF-8"'
        return response

    def _process_request(self, connection: ServerConnection, request):
        identity = identity_from_path(request.path)
        if not identity or urlsplit(request.path).path.strip("/") == "ocpp":
            return self._refuse(connection, HTTPStatus.NOT_FOUND,
                                "the URL must end with the charge point identity, like /ocpp/CP1")
        name = client_cert_name(connection)
        if name is not None:
            # Security profile 3 (security whitepaper 2.5): the certificate, which TLS verified
            # against --tls-client-ca, names the charge point; HTTP Basic is not used.
            if name != identity:
                return self._refuse(connection, HTTPStatus.FORBIDDEN,
                                    f"{identity}: its certificate names {name!r}, not this identity (security profile 3)")
            return None   # the record shows it once the connection is accepted (_serve_charge_point)
        if not self.basic_auth:
            return None
        # Security profile 1 (OCPP 1.6 security whitepaper section 2.3): HTTP Basic auth, the user
        # name is the identity and the password its AuthorizationKey. Every identity must log in.
        header = request.headers.get("Authorization")
        if header is None:
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED,
                                f"{identity}: HTTP Basic authentication is required (security profile 1)")
        credentials = basic_credentials(header)
        if credentials is None:
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, f"{identity}: the Authorization header is not HTTP Basic")
        user, password = credentials
        expected = self.basic_auth.get(identity)
        if user != identity:
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED,
                                f"{identity}: the user name must be the identity in the URL, not {user!r}")
        if expected is None or not hmac.compare_digest(password, basic_password(expected)):
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, f"{identity}: wrong password, or no --basic-auth for it")
        return None

    def _process_response(self, connection: ServerConnection, request, response):
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS and response.status_code not in (401, 403, 404):
            body = response.body.decode(errors="replace").strip()
            self.say(f"refused {request.path} from {_peer(connection)}: HTTP {response.status_code}, {body}")
        return None

    async def _serve_charge_point(self, ws: ServerConnection) -> None:
        assert ws.request is not None     # the handler runs after the handshake
        identity = identity_from_path(ws.request.path)
        old = self.sessions.pop(identity, None)
        if old is not None:
            self.say(f"{identity} connected again; closing its previous connection")
            await old.ws.close(1000, "replaced by a new connection of the same charge point")
        session = Session(identity, ws, FrameChecker())
        session.cp = CentralChargePoint(identity, Wire(self, session), self.model, self.say)
        self.sessions[identity] = session
        record = self.model.charge_point(identity)
        record.connected, record.remote, record.connected_ms = True, _peer(ws), self.now_ms()
        record.client_cert = client_cert_name(ws)
        self.say(f"{identity} connected from {record.remote} ({'wss' if self.ssl_context else 'ws'}, {ws.subprotocol})")
        try:
            await session.cp.start()
        except ConnectionClosed:
            pass
        finally:
            session.closed.set()
            if self.sessions.get(identity) is session:
                del self.sessions[identity]
                record.connected, record.disconnected_ms = False, self.now_ms()
            self.say(f"{identity} disconnected (close code {ws.close_code}{', ' + ws.close_reason if ws.close_reason else ''})")

    # -- what the API and the terminal use -------------------------------------------------------

    def session(self, identity: str | None) -> Session:
        """The live session of `identity`, or of the most recently connected charge point."""
        if identity is None:
            if not self.sessions:
                raise ModelError(f"no charge point is connected; connect one to {self.addresses.get('ws', 'ws://HOST:PORT/ocpp')}/<identity>")
            return list(self.sessions.values())[-1]
        if identity not in self.sessions:
            connected = ", ".join(self.sessions) or "none"
            raise ModelError(f"charge point {identity!r} is not connected; connected: {connected}")
        return self.sessions[identity]

    async def call(self, identity: str | None, action: str, payload: dict, timeout_s: float) -> dict:
        """Send one CALL through the library and return {"cp", "uid", "payload"} or {..., "call_error"}."""
        request = build_call(action, payload)
        session = self.session(identity)
        assert session.cp is not None
        uid = str(uuid.uuid4())
        sent = asyncio.ensure_future(session.cp.call(request, suppress=False, unique_id=uid))
        closed = asyncio.ensure_future(session.closed.wait())
        done, _ = await asyncio.wait({sent, closed}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if sent not in done:
            sent.cancel()
        library_error = sent.exception() if sent in done else None
        answer = self.model.frames.find_answer(session.identity, uid, 0)
        if answer is None:
            if self.model.frames.find_call(session.identity, "out", uid) is None:
                raise CallFailed(f"the library refused to send {action}: {library_error}")
            if sent in done:
                raise CallFailed(f"{session.identity} gave no answer to {action}: {library_error}")
            if closed in done:
                raise CallFailed(f"{session.identity} disconnected before it answered {action}")
            raise CallFailed(f"{session.identity} did not answer {action} within {timeout_s:g} s")
        frame = answer["frame"]
        if not answer["valid"]:
            raise CallFailed(f"{session.identity} answered {action} with a frame that is not valid OCPP 1.6 "
                             f"({answer['error']}): {json.dumps(frame)[:300]}")
        reply: dict[str, Any] = {"cp": session.identity, "uid": uid}
        if frame[0] == schema.CALLERROR:
            reply["call_error"] = {"errorCode": frame[2], "errorDescription": frame[3], "errorDetails": frame[4]}
        else:
            reply["payload"] = frame[2]
            if action == "ChangeConfiguration" and str(payload.get("key")).lower() == "authorizationkey" and \
                    frame[2].get("status") == "Accepted" and self.basic_auth:
                # The charge point connects again with its new password (security whitepaper),
                # the key as it takes it: names match whatever their case, values are stripped.
                self.basic_auth[session.identity] = str(payload["value"]).strip()
                self.say(f"{session.identity}: its AuthorizationKey changed; its next connection must use it")
        return reply

    async def disconnect(self, identity: str | None) -> str:
        session = self.session(identity)
        await session.ws.close(1000, "closed by the central system")
        await session.closed.wait()
        return session.identity


def build_call(action: str, payload: dict):
    """The library's payload object for a CALL given as JSON, checked against the schema first so
    that the message names the field. Raises ModelError."""
    if not isinstance(action, str) or action not in schema.FROM_CENTRAL_SYSTEM:
        raise ModelError(f"'action' must be an OCPP 1.6 action the central system sends, not {action!r}; "
                         f"known: {', '.join(sorted(schema.FROM_CENTRAL_SYSTEM))}")
    if not isinstance(payload, dict):
        raise ModelError(f"'payload' must be a JSON object like {{\"connectorId\": 1}}, not {payload!r}")
    error = schema.payload_error(action, schema.parse(json.dumps(payload), exact=True))
    if error is not None:
        raise ModelError(f"the payload is not valid: {error}")
    request = getattr(ocpp_call, action)(**camel_to_snake_case(payload))
    # The library converts keys snake_case -> camelCase on the way out; make sure that gives back
    # exactly what was asked for.
    if snake_to_camel_case(remove_nones(serialize_as_dict(request))) != payload:
        raise ModelError(f"the ocpp library cannot send this {action} payload unchanged: {payload}")
    return request


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"


def basic_credentials(header: str) -> tuple[str, bytes] | None:
    """(user, password bytes) of an HTTP Basic Authorization header, or None. The password is
    kept as bytes: OCPP's is what a hex AuthorizationKey encodes, binary as often as not."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


def basic_password(key: str) -> bytes:
    """The password a charge point sends for its AuthorizationKey `key`: the 16 to 20 bytes that
    32 to 40 hex digits encode (security whitepaper; OCTT TC_085_CS), else the text itself."""
    if 32 <= len(key) <= 40 and len(key) % 2 == 0:
        try:
            return bytes.fromhex(key)
        except ValueError:
            pass
    return key.encode()


def _basic_auth_pairs(pairs: list[str] | None) -> dict[str, str]:
    credentials = {}
    for pair in pairs or []:
        identity, sep, password = pair.partition(":")
        if not sep or not identity or not password:
            raise SystemExit(f"--basic-auth {pair!r}: write IDENTITY:PASSWORD, like --basic-auth CP1:secret")
        credentials[identity] = password
    return credentials


def client_cert_name(connection: ServerConnection) -> str | None:
    """The common name of the certificate the charge point showed (verified by TLS), or None."""
    transport = getattr(connection, "transport", None)
    cert = transport.get_extra_info("peercert") if transport is not None else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def _ssl_context(cert: str | None, key: str | None, client_ca: str | None = None) -> ssl.SSLContext | None:
    if not cert and not key:
        if client_ca:
            raise SystemExit("--tls-client-ca (security profile 3) needs TLS: give --tls-cert CERT and --tls-key KEY too")
        return None
    if not (cert and key):
        raise SystemExit("security profile 2 needs both --tls-cert CERT and --tls-key KEY")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2     # the security whitepaper asks for TLS 1.2 or above
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise SystemExit(f"--tls-cert {cert} --tls-key {key}: cannot load them ({e})")
    if client_ca:
        # Optional, so that charge points of profile 2 still connect; one that shows a
        # certificate must show one this CA signed, named as its identity (_process_request).
        context.verify_mode = ssl.CERT_OPTIONAL
        try:
            context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(f"--tls-client-ca {client_ca}: cannot load it ({e})")
    return context


async def run(args, ready=None) -> int:
    from host_tools.csms.api import serve_api
    from host_tools.csms.files import FileService
    from host_tools.csms.terminal import read_terminal

    try:
        tags = load_tags_file(args.tags) if args.tags else DEFAULT_TAGS
    except ModelError as e:
        raise SystemExit(str(e))
    central = CentralSystem(tags, _basic_auth_pairs(args.basic_auth),
                            _ssl_context(args.tls_cert, args.tls_key, getattr(args, "tls_client_ca", None)))
    if getattr(args, "tls_client_ca_key", None):
        if not args.tls_client_ca:
            raise SystemExit("--tls-client-ca-key signs with the CA of --tls-client-ca: give that too")
        from host_tools.certs import Signer
        try:
            central.model.settings.signer = Signer(args.tls_client_ca, args.tls_client_ca_key)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--tls-client-ca {args.tls_client_ca} --tls-client-ca-key {args.tls_client_ca_key}: "
                             f"cannot load them ({e})")
    tmp = None
    files_dir = args.files
    if files_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="evse-csms-files-")
        files_dir = tmp.name
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        files = central.files = FileService(args.host, args.http_port, Path(files_dir), central.say)
    except OSError as e:
        raise SystemExit(f"--http-port {args.http_port}: cannot listen on {args.host} ({e.strerror})")
    try:
        ws_server = await serve(central._serve_charge_point, args.host, args.port, subprotocols=[Subprotocol(SUBPROTOCOL)],
                                select_subprotocol=central._select_subprotocol,
                                process_request=central._process_request,
                                process_response=central._process_response, ssl=central.ssl_context)
        api_server = await serve_api(central, args.api_port)
    except OSError as e:
        files.stop()
        raise SystemExit(f"evsectl csms: cannot listen ({e.strerror}); choose other ports with --port/--api-port")
    ws_port = ws_server.sockets[0].getsockname()[1]
    api_port = api_server.sockets[0].getsockname()[1]
    scheme = "wss" if central.ssl_context else "ws"
    central.addresses = {"ws": f"{scheme}://{args.host}:{ws_port}/ocpp", "api": f"127.0.0.1:{api_port}",
                         "http": f"http://{args.host}:{files.port}"}
    files.start()
    with central._out_lock:
        sys.stdout.write(json.dumps(central.addresses) + "\n")
        sys.stdout.flush()
    central.say(f"central system up: charge points connect to {central.addresses['ws']}/<identity>; "
                f"files in {files_dir}; type help for commands")
    read_terminal(central, loop)
    if ready is not None:
        ready(central)
    await stop.wait()
    central.say("stopping")
    ws_server.close()
    api_server.close()
    await ws_server.wait_closed()
    files.stop()
    if tmp is not None:
        tmp.cleanup()
    return 0


def run_foreground(args) -> int:
    """`evsectl csms`: print where it listens, then serve until SIGINT/SIGTERM."""
    return asyncio.run(run(args))
