"""The security whitepaper's certificate store (evse.ocpp.certs): a certificate's hash data
as OCSP's CertID, checked against the `cryptography` library's reading of the same certificate,
and InstallCertificate / GetInstalledCertificateIds / DeleteCertificate on flash."""
import hashlib
import os

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings, strategies as st

from evse import slices
from evse.ocpp import certs


def pem_and_expected(authority):
    pem = authority.cert_pem.bytes().decode()
    cert = x509.load_pem_x509_certificate(pem.encode())
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        bits = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return pem, {"hashAlgorithm": "SHA256",
                 "issuerNameHash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
                 "issuerKeyHash": hashlib.sha256(bits).hexdigest(),
                 "serialNumber": format(cert.serial_number, "x")}


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def test_hash_data_is_ocsp_s_cert_id_as_cryptography_reads_the_certificate(key_type):
    for _ in range(5):
        pem, expected = pem_and_expected(trustme.CA(key_type=key_type))
        assert certs.hash_data(certs.from_pem(pem)) == expected


class FakeKeys:
    def __init__(self, profile=0):
        self.profile = profile

    def get(self, key):
        return self.profile


class FakeClock:
    def __init__(self, now_s=None):
        self.known, self.now_s = now_s is not None, now_s

    def now(self):
        return self.now_s


class FakeCp:
    def __init__(self, root, profile=0, now_s=1780315200):   # 2026-06-01
        self.root, self.lines, self.keys = str(root), [], FakeKeys(profile)
        self.clock, self.events = FakeClock(now_s), []

    def log(self, text):
        self.lines.append(text)

    def security_event(self, kind, info=None):
        self.events.append((kind, info))


def test_install_list_and_delete(tmp_path):
    cp = FakeCp(tmp_path)
    assert certs.get_ids(cp, {"certificateType": "CentralSystemRootCertificate"}) == {"status": "NotFound"}
    (pem1, id1), (pem2, id2) = pem_and_expected(trustme.CA()), pem_and_expected(trustme.CA())
    for pem, kind in ((pem1, "CentralSystemRootCertificate"), (pem2, "ManufacturerRootCertificate")):
        assert certs.install(cp, {"certificateType": kind, "certificate": pem}) == {"status": "Accepted"}
    assert certs.install(cp, {"certificateType": "CentralSystemRootCertificate", "certificate": pem1}) == \
        {"status": "Accepted"}   # again: kept once
    assert certs.get_ids(cp, {"certificateType": "CentralSystemRootCertificate"}) == \
        {"status": "Accepted", "certificateHashData": [id1]}
    assert certs.get_ids(cp, {"certificateType": "ManufacturerRootCertificate"})["certificateHashData"] == [id2]
    assert certs.delete(cp, {"certificateHashData": id1}) == {"status": "Accepted"}
    assert certs.delete(cp, {"certificateHashData": id1}) == {"status": "NotFound"}
    assert certs.get_ids(cp, {"certificateType": "CentralSystemRootCertificate"}) == {"status": "NotFound"}
    assert sorted(os.listdir(tmp_path / "certs")) == ["mf-2.der"]


def test_a_bad_certificate_is_rejected_a_full_store_fails_and_the_last_root_of_a_tls_link_stays(tmp_path):
    cp = FakeCp(tmp_path)
    for bad in ("hello", certs._PEM_HEAD + "\n!!!!\n" + certs._PEM_TAIL,
                certs._PEM_HEAD + "\nMAoGCCqGSM49BAMC\n" + certs._PEM_TAIL):
        assert certs.install(cp, {"certificateType": "CentralSystemRootCertificate", "certificate": bad}) == \
            {"status": "Rejected"}
    assert not (tmp_path / "certs").exists() and [k for k, _ in cp.events] == ["InvalidCentralSystemCertificate"] * 3
    pems = [pem_and_expected(trustme.CA()) for _ in range(certs.MAX_CERTS + 1)]
    for pem, _ in pems[:-1]:
        assert certs.install(cp, {"certificateType": "ManufacturerRootCertificate", "certificate": pem})["status"] == "Accepted"
    assert certs.install(cp, {"certificateType": "CentralSystemRootCertificate", "certificate": pems[-1][0]}) == \
        {"status": "Failed"}
    (tmp_path / "tls").mkdir()
    cp = FakeCp(tmp_path / "tls", profile=2)
    pem, ids = pem_and_expected(trustme.CA())
    assert certs.install(cp, {"certificateType": "CentralSystemRootCertificate", "certificate": pem})["status"] == "Accepted"
    assert certs.delete(cp, {"certificateHashData": ids}) == {"status": "Failed"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_are_refused_with_a_reason(data):
    try:
        certs.parse(data)
    except certs.CertError as e:
        assert str(e)


ONE_DER = certs.from_pem(trustme.CA().cert_pem.bytes().decode())


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_certificate_cut_or_altered_anywhere_is_refused_or_read_never_a_crash(data):
    der = ONE_DER
    i = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
    cut = data.draw(st.booleans())
    changed = der[:i] if cut else der[:i] + bytes([data.draw(st.integers(0, 255))]) + der[i + 1:]
    try:
        certs.hash_data(changed)
    except certs.CertError:
        pass


def _maker(tmp_path):
    """A manufacturer root and a firmware signing certificate it signed (RSA 2048), a file and
    its signature, written as DER and bytes to tmp_path."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509.oid import NameOID

    def cert(cn, key, issuer, issuer_key):
        now = datetime.datetime(2026, 1, 1)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
                .sign(issuer_key or key, hashes.SHA256()))
    root_key, key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    root = cert("root", root_key, None, None)
    signer = cert("signer", key, root.subject, root_key)
    data = os.urandom(3000)
    for name, body in (("root.der", root.public_bytes(serialization.Encoding.DER)),
                       ("signer.der", signer.public_bytes(serialization.Encoding.DER)), ("fw.bin", data),
                       ("sig.bin", key.sign(data, padding.PKCS1v15(), hashes.SHA256()))):
        (tmp_path / name).write_bytes(body)


def under_micropython(script, folder):
    """What `script` prints run by the real MicroPython with the firmware on its path (its
    argument: folder)."""
    import subprocess
    import sys
    from pathlib import Path
    (folder / "checks.py").write_text(script)
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([str(Path(sys.executable).parent / "micropython"), str(folder / "checks.py"), str(folder)],
                         capture_output=True, text=True, env=dict(os.environ, MICROPYPATH=str(repo / "firmware")),
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


# The same checks for an RSA and an EC P-256 pair: root.der signed signer.der, whose key signed
# fw.bin as sig.bin.
CHECKS = r"""
import hashlib, sys
from evse import slices
from evse.ocpp import certs
d = sys.argv[1] + "/"
root, signer = open(d + "root.der", "rb").read(), open(d + "signer.der", "rb").read()
sig = open(d + "sig.bin", "rb").read()
digest = hashlib.sha256(open(d + "fw.bin", "rb").read()).digest()
key = certs.public_key(signer)
bad = sig[:-1] + bytes([sig[-1] ^ 1])
ok = lambda s, d: slices.run(certs.verify_steps(key, s, d))
by = lambda a, b: slices.run(certs.signed_by_steps(a, b))
print(by(signer, root), by(root, root), by(root, signer),
      ok(sig, digest), ok(bad, digest), ok(sig, hashlib.sha256(b"x").digest()))
"""


def test_rsa_signatures_check_as_cryptography_makes_them_here_and_under_micropython(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    _maker(tmp_path)
    expected = "True True False True False False"
    assert under_micropython(CHECKS, tmp_path) == expected
    sys.argv = ["checks", str(tmp_path)]
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(CHECKS, {})
    assert buf.getvalue().strip() == expected


def test_a_signing_certificate_counts_only_if_an_installed_manufacturer_root_signed_it(tmp_path):
    _maker(tmp_path)
    import ssl
    pem = ssl.DER_cert_to_PEM_cert((tmp_path / "signer.der").read_bytes())
    def signing_key():
        return slices.run(certs.signing_key_steps(str(tmp_path), pem))
    with pytest.raises(certs.CertError, match="not signed by a ManufacturerRootCertificate"):
        signing_key()
    cp = FakeCp(tmp_path)
    root_pem = ssl.DER_cert_to_PEM_cert((tmp_path / "root.der").read_bytes())
    assert certs.install(cp, {"certificateType": "CentralSystemRootCertificate", "certificate": root_pem})["status"] == "Accepted"
    with pytest.raises(certs.CertError):
        signing_key()                                  # a central system root is no manufacturer's
    assert certs.install(cp, {"certificateType": "ManufacturerRootCertificate", "certificate": root_pem})["status"] == "Accepted"
    assert signing_key()[0] == "rsa" and signing_key()[1][1] == 65537


def test_a_certificate_outside_its_dates_is_rejected_with_a_security_event_and_dates_wait_for_the_clock(tmp_path):
    pem, _ = pem_and_expected(trustme.CA())        # trustme: valid from 2000 to 3000
    for now_s, why in ((32535215999 + 86400 * 400, "expired"), (915148800, "not valid yet")):   # 3001, 1999
        cp = FakeCp(tmp_path, now_s=now_s)
        assert certs.install(cp, {"certificateType": "ManufacturerRootCertificate", "certificate": pem}) == \
            {"status": "Rejected"}
        assert cp.events[-1][0] == "InvalidFirmwareSigningCertificate" and why in cp.events[-1][1], cp.events
    cp = FakeCp(tmp_path, now_s=None)              # no time from the central system yet: not judged
    assert certs.install(cp, {"certificateType": "ManufacturerRootCertificate", "certificate": pem})["status"] == "Accepted"


class FakeConfig:
    def __init__(self, values):
        self.values = dict(values)

    def get(self, key):
        return self.values.get(key, "")

    def set(self, key, value):
        self.values[key] = value


class FakeApp:
    def __init__(self, root, csr_name):
        self.root, self.cfg = str(root), FakeConfig({"ocpp_key": "cp.key", "ocpp_csr": csr_name})

    def client_csr(self):
        try:
            return open(os.path.join(self.root, self.cfg.get("ocpp_csr"))).read()
        except OSError:
            return None


def test_certificate_signed_takes_only_a_valid_certificate_for_the_commissioned_key(tmp_path):
    """evsectl cert's key and request, signed as evsectl csms --tls-client-ca-key signs them."""
    from host_tools.certs import Signer, make_request
    make_request("CP1", tmp_path)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.private_key_pem.write_to_path(str(tmp_path / "ca.key"))
    signer = Signer(str(tmp_path / "ca.pem"), str(tmp_path / "ca.key"))
    chain = signer.sign((tmp_path / "cp.csr").read_text(), "CP1")
    with pytest.raises(ValueError, match="names 'CP1', not 'CP2'"):
        signer.sign((tmp_path / "cp.csr").read_text(), "CP2")
    cp = FakeCp(tmp_path)
    cp.app = FakeApp(tmp_path, "cp.csr")

    def signed(c, chain_text):
        return slices.run(certs.signed(c, {"certificateChain": chain_text}))
    cp.clock = FakeClock(int(datetime_in_days(0)))
    assert signed(cp, chain) == {"status": "Rejected"} and "does not lead to a CentralSystemRootCertificate" in cp.events[-1][1]
    assert certs.install(cp, {"certificateType": "CentralSystemRootCertificate",
                              "certificate": ca.cert_pem.bytes().decode()})["status"] == "Accepted"
    stranger = trustme.CA().issue_cert("CP1", common_name="CP1").cert_chain_pems[0].bytes().decode()
    for bad, why in ((stranger, "another key"), ("no certificate at all", "not a PEM certificate")):
        assert signed(cp, bad) == {"status": "Rejected"}
        assert cp.events[-1][0] == "InvalidChargePointCertificate" and why in cp.events[-1][1], cp.events
    assert not (tmp_path / "cp.der").exists()
    late = FakeCp(tmp_path, now_s=int(datetime_in_days(400)))       # the chain is valid for a year
    late.app = cp.app
    assert signed(late, chain) == {"status": "Rejected"} and "expired" in late.events[-1][1]
    assert signed(cp, chain) == {"status": "Accepted"}
    assert cp.app.cfg.get("ocpp_cert") == "cp.der"
    leaf = x509.load_pem_x509_certificate(chain.encode())
    assert (tmp_path / "cp.der").read_bytes() == leaf.public_bytes(serialization.Encoding.DER)


def datetime_in_days(days):
    import time
    return time.time() + days * 86400


def test_ecdsa_p256_checks_as_cryptography_signs_here_and_under_micropython(tmp_path):
    """trustme's CAs and certificates are EC P-256: the chain and a firmware signature."""
    import subprocess
    import sys
    from pathlib import Path

    from cryptography.hazmat.primitives import hashes
    authority = trustme.CA()
    issued = authority.issue_cert("CP1")
    (tmp_path / "root.der").write_bytes(certs.from_pem(authority.cert_pem.bytes().decode()))
    (tmp_path / "signer.der").write_bytes(certs.from_pem(issued.cert_chain_pems[0].bytes().decode()))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    data = os.urandom(2000)
    (tmp_path / "fw.bin").write_bytes(data)
    (tmp_path / "sig.bin").write_bytes(key.sign(data, ec.ECDSA(hashes.SHA256())))
    assert under_micropython(CHECKS, tmp_path) == "True True False True False False"


def test_keys_that_would_hold_the_loop_and_garbled_dates_are_refused_cleanly(tmp_path):
    """A 1024-bit or 8192-bit RSA key is no key here (the arithmetic of a huge one would hold the
    event loop for seconds); a validity date that is not a date is a Rejected, not a crash."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k")])
    now = datetime.datetime(2026, 1, 1)
    signer = ec.generate_private_key(ec.SECP256R1())   # an 8192-bit key pair takes a minute to make
    for bits in (1024, 8192):
        public = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 0x2b).public_key()   # the modulus's size is all
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(signer, hashes.SHA256()))
        with pytest.raises(certs.CertError, match="2048 to 4096 bits"):
            certs.rsa_key(cert.public_bytes(serialization.Encoding.DER))
    import base64
    for garbage in (ord("x"), 0xff):                # a letter, a byte that is no text
        der = bytearray(ONE_DER)
        validity = certs.parts(bytes(der))[8]
        der[bytes(der).find(bytes(validity)) + 2 + 2] = garbage    # the first time's first digit
        pem = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % base64.b64encode(bytes(der)).decode()
        cp = FakeCp(tmp_path)
        assert certs.install(cp, {"certificateType": "ManufacturerRootCertificate", "certificate": pem}) == \
            {"status": "Rejected"}
        assert cp.events[-1][0] == "InvalidFirmwareSigningCertificate", cp.events
