"""OCPP security profile 3 (issue 16, item 1): TLS with the charge point's own certificate. The
board verifies the central system against its CA (ocpp_ca), and once the central system raises
SecurityProfile to 3 it shows its certificate (ocpp_cert, ocpp_key on flash) in the handshake
instead of HTTP Basic. `evsectl csms --tls-client-ca` checks it and that it names the identity.

sim-ac2, with the CA, its certificate and key put on its fresh flash (`evsectl sim --put`)."""
import base64
import json
import ssl
import time

import pytest
import trustme

from conftest import rig_and_console, run_sim
from host_tools.csms.client import CsmsProcess, CsmsClient

IDENTITY = "sim-ac2"


def der_cert_and_key(issued, folder, name):
    from cryptography.hazmat.primitives import serialization
    (folder / f"{name}.der").write_bytes(ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode()))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


@pytest.fixture(scope="module")
def profile3(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("profile3")
    server_ca, charge_point_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp / "server.key"))
    charge_point_ca.cert_pem.write_to_path(str(tmp / "cp-ca.pem"))
    (tmp / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(server_ca.cert_pem.bytes().decode()))
    der_cert_and_key(charge_point_ca.issue_cert(IDENTITY, common_name=IDENTITY), tmp, "cp")
    (tmp / "settings.json").write_text(json.dumps({"ocpp_ca": "ca.der", "ocpp_cert": "cp.der", "ocpp_key": "cp.key"}))
    csms = CsmsProcess("--tls-cert", str(tmp / "server.pem"), "--tls-key", str(tmp / "server.key"),
                       "--tls-client-ca", str(tmp / "cp-ca.pem"), "--files", str(tmp / "files"))
    try:
        for started in run_sim(request, "sim-ac2", tmp / "flash", "--csms", csms.addresses["ws"],
                               "--put", str(tmp / "ca.der"), "--put", str(tmp / "cp.der"), "--put", str(tmp / "cp.key"),
                               "--config", str(tmp / "settings.json")):
            yield csms, started
    finally:
        csms.stop()


def charge_point(client):
    return next((cp for cp in client.charge_points() if cp["id"] == IDENTITY), None)


def wait_booted(client, since_ms, timeout_s=60):
    """The board's record once it is connected with a BootNotification after since_ms."""
    deadline = time.monotonic() + timeout_s
    while True:
        cp = charge_point(client)
        if cp is not None and cp["connected"] and cp["boot_ms"] is not None and cp["boot_ms"] >= since_ms:
            return cp
        assert time.monotonic() < deadline, cp
        time.sleep(0.3)


def test_profile_3_connects_with_the_charge_point_s_certificate_and_never_shows_its_key(profile3):
    csms, started = profile3
    key = (started["flash"].parent / "cp.key").read_bytes()
    for _, dut in rig_and_console(started):
        with CsmsClient(csms.addresses["api"]) as client:
            cp = wait_booted(client, 0)
            assert cp["client_cert"] is None                  # profile 0 over TLS: no certificate shown
            t = client.now_ms()
            answer = client.call("ChangeConfiguration", {"key": "SecurityProfile", "value": "3"})
            assert answer["payload"]["status"] == "Accepted", answer
            cp = wait_booted(client, t)
            assert cp["client_cert"] == IDENTITY, cp          # verified against --tls-client-ca
            got = client.call("GetConfiguration", {"key": ["SecurityProfile"]})["payload"]
            assert got["configurationKey"][0]["value"] == "3"
            assert not client.invalid_frames()
        seen = "\n".join(dut.command("log 60") + dut.command("config get ocpp_key") + dut.command("status"))
        assert "ocpp_key = cp.key" in seen and "SecurityProfile is 3 now" in seen, seen
        # Nowhere in all the console said since the boot, nor in the log on flash, in any form.
        said = bytes(dut.seen).decode(errors="replace") + seen
        for form in (key.hex()[:32], repr(key)[2:40], base64.b64encode(key).decode()[:40]):
            assert form not in said, form
