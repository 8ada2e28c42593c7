"""The security whitepaper's certificate management (issue 16, item 2) from the central system:
InstallCertificate, GetInstalledCertificateIds and DeleteCertificate of root certificates on the
board's flash, the ids checked against the `cryptography` library's reading of the same
certificates (OCTT TC_074 ... TC_079 family of the 1.6 security tests)."""
import hashlib

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization


def root_and_id():
    pem = trustme.CA().cert_pem.bytes().decode()
    cert = x509.load_pem_x509_certificate(pem.encode())
    bits = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return pem, {"hashAlgorithm": "SHA256", "issuerNameHash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
                 "issuerKeyHash": hashlib.sha256(bits).hexdigest(), "serialNumber": format(cert.serial_number, "x")}


def test_root_certificates_install_list_and_delete(ocpp_rig, csms):
    def call(action, **payload):
        return csms.call(action, payload)["payload"]

    (cs_pem, cs_id), (mf_pem, mf_id) = root_and_id(), root_and_id()
    assert call("InstallCertificate", certificateType="CentralSystemRootCertificate", certificate=cs_pem) == \
        {"status": "Accepted"}
    assert call("InstallCertificate", certificateType="ManufacturerRootCertificate", certificate=mf_pem) == \
        {"status": "Accepted"}
    got = call("GetInstalledCertificateIds", certificateType="CentralSystemRootCertificate")
    assert got["status"] == "Accepted" and cs_id in got["certificateHashData"], got
    got = call("GetInstalledCertificateIds", certificateType="ManufacturerRootCertificate")
    assert got["status"] == "Accepted" and mf_id in got["certificateHashData"], got
    assert call("InstallCertificate", certificateType="CentralSystemRootCertificate",
                certificate="-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----") == \
        {"status": "Rejected"}
    for ids in (cs_id, mf_id):
        assert call("DeleteCertificate", certificateHashData=ids) == {"status": "Accepted"}
        assert call("DeleteCertificate", certificateHashData=ids) == {"status": "NotFound"}
    for kind in ("CentralSystemRootCertificate", "ManufacturerRootCertificate"):
        got = call("GetInstalledCertificateIds", certificateType=kind)
        assert cs_id not in got.get("certificateHashData", []) and mf_id not in got.get("certificateHashData", [])
