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


class FakeCp:
    def __init__(self, root, profile=0):
        self.root, self.lines, self.keys = str(root), [], FakeKeys(profile)

    def log(self, text):
        self.lines.append(text)


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
    assert not (tmp_path / "certs").exists() and len(cp.lines) == 3
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
