"""`evsectl cert`: a charge point's key pair and certificate signing request, made at
commissioning (MicroPython cannot make keys): the private key as DER (the board's `ocpp_key`),
the CSR as PEM (`ocpp_csr`), which the board sends in a SignCertificate when the central system
asks (ExtendedTriggerMessage SignChargePointCertificate). Also the development central
system's signer: a CSR signed with its --tls-client-ca key."""
from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def make_request(identity: str, out: Path, organization: str | None = None, use_rsa: bool = False) -> tuple[Path, Path]:
    """(key file, CSR file) for `identity` in `out`: cp.key (PKCS#8 DER) and cp.csr (PEM). The
    subject's common name is the identity, as the security whitepaper asks."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if use_rsa else ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, identity)]
    if organization:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
    out.mkdir(parents=True, exist_ok=True)
    key_path, csr_path = out / "cp.key", out / "cp.csr"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


class Signer:
    """Signs charge points' CSRs with a CA's certificate and key (PEM files)."""

    def __init__(self, ca_cert: str, ca_key: str):
        self.ca = x509.load_pem_x509_certificate(Path(ca_cert).read_bytes())
        self.key = serialization.load_pem_private_key(Path(ca_key).read_bytes(), None)

    def sign(self, csr_pem: str, identity: str, days: int = 365) -> str:
        """The certificate chain (PEM: the new certificate, then the CA's) for a CSR whose common
        name is `identity`; ValueError naming what is wrong with it otherwise."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as e:
            raise ValueError(f"the CSR does not parse ({e})")
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature does not match its key")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or names[0].value != identity:
            raise ValueError(f"the CSR names {names[0].value if names else 'no one'!r}, not {identity!r}")
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.ca.subject)
                .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return (cert.public_bytes(serialization.Encoding.PEM) + self.ca.public_bytes(serialization.Encoding.PEM)).decode()


def site_pki(folder: Path, identity: str | None = None, charge_point_ca=None) -> list[str]:
    """A PKI for a development site in `folder` (security profile 3): the central system's server
    certificate for 127.0.0.1 under its CA (ca.der, for the charger's ocpp_ca), a CA for the
    chargers (`charge_point_ca`, a trustme.CA, or a new one) whose key signs their requests, and
    with `identity` that charger's key and request (cp.key, cp.csr). The central system's
    arguments (evsectl csms)."""
    import ssl

    import trustme
    server_ca = trustme.CA()
    charge_point_ca = charge_point_ca or trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    charge_point_ca.cert_pem.write_to_path(str(folder / "cp-ca.pem"))
    charge_point_ca.private_key_pem.write_to_path(str(folder / "cp-ca.key"))
    (folder / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(server_ca.cert_pem.bytes().decode()))
    if identity:
        make_request(identity, folder)
    return ["--tls-cert", str(folder / "server.pem"), "--tls-key", str(folder / "server.key"),
            "--tls-client-ca", str(folder / "cp-ca.pem"), "--tls-client-ca-key", str(folder / "cp-ca.key")]


def cmd_cert(args) -> int:
    key, csr = make_request(args.identity, Path(args.out), args.organization, args.rsa)
    print(f"{key}: the private key (DER): put it on the board, set ocpp_key to its name; keep no copy")
    print(f"{csr}: the request (PEM): put it on the board, set ocpp_csr to its name; the central system "
          "signs it when it asks (ExtendedTriggerMessage SignChargePointCertificate)")
    return 0
