"""OCPP security profiles 1 to 3 (issue 16, item 1) on a virtual board against `evsectl csms` over
TLS. The board verifies the central system against its CA (ocpp_ca). At profile 3 it shows its
own certificate (ocpp_cert, ocpp_key on flash) in the handshake instead of HTTP Basic;
`evsectl csms --tls-client-ca` checks it and that it names the identity. A board commissioned
with only a key and a certificate request (`evsectl cert`) gets its certificate over OCPP:
ExtendedTriggerMessage SignChargePointCertificate, SignCertificate, CertificateSigned.

sim-ac2, with the files put on its fresh flash (`evsectl sim --put`)."""
import base64
import json
import ssl
import subprocess
import time

import pytest
import trustme

from conftest import rig_and_console, run_sim
from host_tools.certs import site_pki
from host_tools.csms.client import CsmsClient, CsmsProcess, evsectl_path

IDENTITY = "sim-ac2"
KEY_1 = "00112233445566778899aabbccddeeff"


def der_cert_and_key(issued, folder, name):
    from cryptography.hazmat.primitives import serialization
    (folder / f"{name}.der").write_bytes(ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode()))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


def tls_site(request, tmp, charge_point_ca, put, settings):
    """A central system on wss:// (host_tools.certs.site_pki: its CA on the board as ca.der,
    `charge_point_ca` signing the chargers') and a virtual board with `put` files and `settings`."""
    (tmp / "settings.json").write_text(json.dumps({"ocpp_ca": "ca.der", **settings}))
    csms = CsmsProcess(*site_pki(tmp, charge_point_ca=charge_point_ca), "--files", str(tmp / "files"))
    extra = ["--put", str(tmp / "ca.der")]
    for name in put:
        extra += ["--put", str(tmp / name)]
    try:
        for started in run_sim(request, "sim-ac2", tmp / "flash", "--csms", csms.addresses["ws"], *extra,
                               "--config", str(tmp / "settings.json")):
            yield csms, started
    finally:
        csms.stop()


@pytest.fixture(scope="module")
def profile3(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("profile3")
    cp_ca = trustme.CA()
    der_cert_and_key(cp_ca.issue_cert(IDENTITY, common_name=IDENTITY), tmp, "cp")
    yield from tls_site(request, tmp, cp_ca, ["cp.der", "cp.key"], {"ocpp_cert": "cp.der", "ocpp_key": "cp.key"})


@pytest.fixture(scope="module")
def commissioned(request, tmp_path_factory):
    """A board with only the key and the request `evsectl cert` made; a central system that signs."""
    tmp = tmp_path_factory.mktemp("commissioned")
    subprocess.run([evsectl_path(), "cert", "--identity", IDENTITY, "--out", str(tmp)], check=True,
                   capture_output=True, timeout=60)
    yield from tls_site(request, tmp, trustme.CA(), ["cp.key", "cp.csr"], {"ocpp_key": "cp.key", "ocpp_csr": "cp.csr"})


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


def change(client, key, value):
    return client.call("ChangeConfiguration", {"key": key, "value": value})["payload"]["status"]


def raise_to(client, profile):
    """SecurityProfile raised: Accepted, and the board connects again with it."""
    t = client.now_ms()
    assert change(client, "SecurityProfile", str(profile)) == "Accepted"
    return wait_booted(client, t)


def test_profile_3_connects_with_the_charge_point_s_certificate_and_never_shows_its_key(profile3):
    csms, started = profile3
    key = (started["flash"].parent / "cp.key").read_bytes()
    for _, dut in rig_and_console(started):
        with CsmsClient(csms.addresses["api"]) as client:
            cp = wait_booted(client, 0)
            assert cp["client_cert"] is None                  # profile 0 over TLS: no certificate shown
            cp = raise_to(client, 3)
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


@pytest.mark.slow
def test_up_from_0_to_3_with_a_certificate_the_central_system_signs_for_the_commissioned_key(commissioned):
    """0 -> 1 (HTTP Basic) -> 2 (Basic over TLS) -> a certificate over OCPP -> 3; a certificate
    for another key is refused with a security event and the link stays."""
    csms, started = commissioned
    for _, dut in rig_and_console(started):
        with CsmsClient(csms.addresses["api"]) as client:
            wait_booted(client, 0)
            assert change(client, "SecurityProfile", "3") == "Rejected"     # no certificate yet
            assert change(client, "AuthorizationKey", KEY_1) == "Accepted"
            client.set(basic_auth={IDENTITY: KEY_1})
            try:
                raise_to(client, 1)
                assert raise_to(client, 2)["client_cert"] is None
                # The root the charger's certificate will chain to (the site's charger CA).
                root = (started["flash"].parent / "cp-ca.pem").read_text()
                assert client.call("InstallCertificate", {"certificateType": "CentralSystemRootCertificate",
                                                          "certificate": root})["payload"] == {"status": "Accepted"}
                t = client.now_ms()
                reply = client.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
                assert reply.get("payload") == {"status": "Accepted"}, json.dumps(reply)
                csr = client.wait("SignCertificate", since_ms=t, timeout_s=20)["frame"][3]["csr"]
                assert csr == (started["flash"].parent / "cp.csr").read_text()
                deadline = time.monotonic() + 20
                while not client.answered("CertificateSigned", {"status": "Accepted"}, since_ms=t):
                    assert time.monotonic() < deadline, client.frames(since_ms=t)
                    time.sleep(0.2)
                cp = raise_to(client, 3)
                assert cp["client_cert"] == IDENTITY, cp
            finally:
                client.set(basic_auth={})
            # A chain for another key: refused, a security event, the link as it was.
            stranger = trustme.CA().issue_cert(IDENTITY, common_name=IDENTITY).cert_chain_pems[0].bytes().decode()
            t = client.now_ms()
            reply = client.call("CertificateSigned", {"certificateChain": stranger})
            assert reply["payload"] == {"status": "Rejected"}
            event = client.wait("SecurityEventNotification", since_ms=t, timeout_s=20)["frame"][3]
            assert event["type"] == "InvalidChargePointCertificate" and "another key" in event.get("techInfo", ""), event
            assert charge_point(client)["connected"] and not client.invalid_frames()
        assert "ocpp_cert = cp.der" in "\n".join(dut.command("config get ocpp_cert"))
