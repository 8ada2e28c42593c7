"""Signed firmware (issue 16, item 2; OCTT TC_080_CS and TC_081_CS): SignedUpdateFirmware with
a signing certificate that a ManufacturerRootCertificate installed on the board signed, and an
RSA-SHA256 signature of the bundle. The board checks the certificate before it answers and the
signature before it opens the bundle; every status goes as SignedFirmwareStatusNotification
with the request's id, the last one (Installed) after the reboot."""
import base64
import datetime
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from test_ocpp_profiles_hil import firmware_bundle, iso_in, sent


def _cert(subject, key, issuer, issuer_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
            .sign(issuer_key or key, hashes.SHA256()))


def maker(ec_keys=False):
    """A manufacturer's root and a firmware signing certificate it signed, with the signer's key
    (RSA 2048, or EC P-256)."""
    root_key, key = ((ec.generate_private_key(ec.SECP256R1()) if ec_keys else
                      rsa.generate_private_key(public_exponent=65537, key_size=2048)) for _ in range(2))
    root = _cert("maker root", root_key, None, None)
    signer = _cert("maker firmware signer", key, root.subject, root_key)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()   # noqa: E731
    return pem(root), pem(signer), key


def signed_update(csms, request_id, url, signer_pem, signature):
    return csms.call("SignedUpdateFirmware", {"requestId": request_id, "firmware": {
        "location": url, "retrieveDateTime": iso_in(0), "signingCertificate": signer_pem,
        "signature": base64.b64encode(signature).decode()}})["payload"]


def statuses(csms, since_ms, request_id):
    return [p["status"] for p in sent(csms, since_ms, "SignedFirmwareStatusNotification") if p.get("requestId") == request_id]


def install_root(csms, pem):
    assert csms.call("InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                            "certificate": pem})["payload"] == {"status": "Accepted"}


@pytest.mark.slow
@pytest.mark.rig_ops("factory")  # only a factory reset puts the firmware back
def test_a_signed_bundle_is_verified_installed_and_reported_with_its_request_id(ocpp_rig, csms, tmp_path):
    root, signer, key = maker()
    install_root(csms, root)
    url = firmware_bundle(csms, tmp_path, "0.1.2-signed", "fw-signed.bin")
    data = (Path(csms.request("info")["files"]) / "fw-signed.bin").read_bytes()   # the bytes as served
    t = csms.now_ms()
    assert signed_update(csms, 41, url, signer, key.sign(data, padding.PKCS1v15(), hashes.SHA256())) == \
        {"status": "Accepted"}
    boot = csms.wait("BootNotification", since_ms=t, timeout_s=90)["frame"][3]
    assert boot["firmwareVersion"] == "0.1.2-signed"
    deadline = time.monotonic() + 20
    while "Installed" not in statuses(csms, t, 41):
        assert time.monotonic() < deadline, sent(csms, t, "SignedFirmwareStatusNotification")
        time.sleep(0.2)
    assert statuses(csms, t, 41) == ["Downloading", "Downloaded", "SignatureVerified", "Installing",
                                     "InstallRebooting", "Installed"]
    assert not sent(csms, t, "FirmwareStatusNotification")


@pytest.mark.rig_ops("factory")
def test_a_bad_signature_or_a_stranger_s_certificate_installs_nothing_and_is_a_security_event(ocpp_rig, csms, tmp_path):
    """With EC P-256 keys (the good path above is RSA): the board checks ECDSA in slices."""
    root, signer, key = maker(ec_keys=True)
    install_root(csms, root)
    url = firmware_bundle(csms, tmp_path, "0.1.3-forged", "fw-forged.bin")
    version = csms.charge_points()[-1]["boot"]["firmwareVersion"]
    t = csms.now_ms()
    forged = key.sign(b"another bundle", ec.ECDSA(hashes.SHA256()))
    assert signed_update(csms, 42, url, signer, forged) == {"status": "Accepted"}
    deadline = time.monotonic() + 60
    while "InvalidSignature" not in statuses(csms, t, 42):
        assert time.monotonic() < deadline, sent(csms, t, "SignedFirmwareStatusNotification")
        time.sleep(0.2)
    assert statuses(csms, t, 42) == ["Downloading", "Downloaded", "InvalidSignature"]
    # Its own event: another may come first (SettingSystemTime, when a Heartbeat set the clock).
    deadline = time.monotonic() + 20
    while "InvalidFirmwareSignature" not in [p["type"] for p in sent(csms, t, "SecurityEventNotification")]:
        assert time.monotonic() < deadline, sent(csms, t, "SecurityEventNotification")
        time.sleep(0.2)
    # A signing certificate no installed root signed: refused before any download.
    _, stranger, stranger_key = maker(ec_keys=True)
    t = csms.now_ms()
    assert signed_update(csms, 43, url, stranger, stranger_key.sign(b"x", ec.ECDSA(hashes.SHA256()))) == \
        {"status": "InvalidCertificate"}
    deadline = time.monotonic() + 20
    while "InvalidFirmwareSigningCertificate" not in [p["type"] for p in sent(csms, t, "SecurityEventNotification")]:
        assert time.monotonic() < deadline, sent(csms, t, "SecurityEventNotification")
        time.sleep(0.2)
    time.sleep(2)
    assert not statuses(csms, t, 43)
    assert csms.charge_points()[-1]["boot"]["firmwareVersion"] == version   # no reboot into anything
