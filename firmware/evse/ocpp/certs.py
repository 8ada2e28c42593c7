# The security whitepaper's certificate management (Improved security for OCPP 1.6-J, section 3):
# InstallCertificate, GetInstalledCertificateIds and DeleteCertificate of the central system's
# and the manufacturer's root certificates. Loaded when such a request comes and let go after it
# (evse.unload): a board holds its code in the heap.
#
# The certificates are kept as DER in certs/, one file each: cs-<n>.der (CentralSystemRoot-
# Certificate) or mf-<n>.der (ManufacturerRootCertificate). A certificate is identified as OCSP
# identifies one (RFC 6960 CertID): SHA-256 of its issuer's name (the DER of the Name) and of its
# issuer's public key (the subject public key's bits), and its serial number. These are roots,
# so the issuer is the certificate itself. Only the DER's structure is read here: MicroPython has
# no X.509 library, and mbedtls checks each certificate again when TLS uses it.
import binascii
import hashlib
import os

from micropython import const

from evse import store
from evse.ocpp.rpc import need, only

DIR = "certs"
KINDS = {"CentralSystemRootCertificate": "cs", "ManufacturerRootCertificate": "mf"}
MAX_CERTS = const(4)     # CertificateStoreMaxLength: roots of both kinds together
_PEM_HEAD = "-----BEGIN CERTIFICATE-----"
_PEM_TAIL = "-----END CERTIFICATE-----"


class CertError(ValueError):
    pass


def _tlv(der, i, end):
    """(tag, start of the value, end of the value) of the DER element at i."""
    if i + 2 > end:
        raise CertError("truncated DER")
    tag = der[i]
    n = der[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 3 or i + k > end:
            raise CertError("bad DER length")
        n = 0
        for b in der[i:i + k]:
            n = (n << 8) | b
        i += k
    if i + n > end:
        raise CertError("DER element runs past its end")
    return tag, i, i + n


def parse(der):
    """The parts of a certificate that identify it: (issuer Name DER, serial's bytes, public
    key's bits, subject Name DER). CertError if it is not an X.509 certificate's structure."""
    return parts(der)[:4]


def parts(der):
    """parse()'s four, then the key's algorithm (OID bytes), the signed TBSCertificate (DER),
    the signature's algorithm (OID bytes) and the signature's bits."""
    tag, s, e = _tlv(der, 0, len(der))
    if tag != 0x30 or e != len(der):
        raise CertError("not a DER certificate (a SEQUENCE spanning the whole)")
    tbs_at = s
    tag, s, e = _tlv(der, s, e)              # TBSCertificate
    if tag != 0x30:
        raise CertError("no TBSCertificate")
    tbs = der[tbs_at:e]
    t, as_, ae = _tlv(der, e, len(der))     # signatureAlgorithm
    if t != 0x30:
        raise CertError("no signature algorithm")
    t, os_, oe = _tlv(der, as_, ae)
    sig_alg = der[os_:oe]
    t, ss, se = _tlv(der, ae, len(der))     # signatureValue BIT STRING
    if t != 0x03 or se <= ss:
        raise CertError("no signature")
    sig = der[ss + 1:se]
    fields = []
    i = s
    while i < e:
        t, vs, ve = _tlv(der, i, e)
        fields.append((t, i, vs, ve))
        i = ve
    if fields and fields[0][0] == 0xA0:      # [0] version
        fields = fields[1:]
    if len(fields) < 6 or fields[0][0] != 0x02:
        raise CertError("no serial number where a certificate has one")
    serial = der[fields[0][2]:fields[0][3]]
    issuer = der[fields[2][1]:fields[2][3]]
    subject = der[fields[4][1]:fields[4][3]]
    t, ks, ke = fields[5][0], fields[5][2], fields[5][3]   # SubjectPublicKeyInfo
    if t != 0x30 or fields[2][0] != 0x30 or fields[4][0] != 0x30:
        raise CertError("issuer, subject or public key missing")
    t, as_, ae = _tlv(der, ks, ke)          # AlgorithmIdentifier
    t, kos, koe = _tlv(der, as_, ae)
    key_alg = der[kos:koe]
    t, bs, be = _tlv(der, ae, ke)           # subjectPublicKey BIT STRING
    if t != 0x03 or be <= bs:
        raise CertError("no public key bits")
    if fields[3][0] != 0x30:
        raise CertError("no validity")
    return (issuer, serial, der[bs + 1:be], subject, key_alg, tbs, sig_alg, sig,
            der[fields[3][2]:fields[3][3]])


def _when(der, i, end):
    # A UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) as epoch seconds.
    from evse.ocpp import clock
    tag, s, e = _tlv(der, i, end)
    try:
        text = bytes(der[s:e]).decode()
        if not text.endswith("Z"):
            raise ValueError("no Z")
        if tag == 0x17 and len(text) == 13:
            year = int(text[:2])
            text = ("19" if year >= 50 else "20") + text   # RFC 5280 4.1.2.5.1
        elif not (tag == 0x18 and len(text) == 15):
            raise ValueError("length")
    except ValueError:   # UnicodeError too
        raise CertError("a validity time that is neither UTCTime nor GeneralizedTime in Z")
    try:
        return clock.parse_iso("%s-%s-%sT%s:%s:%sZ" % (text[:4], text[4:6], text[6:8], text[8:10], text[10:12],
                                                      text[12:14])), e
    except ValueError as err:
        raise CertError(str(err))


def check_valid(der, now_s):
    """CertError unless the certificate is valid at now_s (epoch seconds; None: the clock is not
    set yet, so the dates cannot be judged and are not)."""
    validity = parts(der)[8]
    nb, at = _when(validity, 0, len(validity))
    na, _ = _when(validity, at, len(validity))
    if now_s is None:
        return
    if now_s < nb:
        raise CertError("it is not valid yet")
    if now_s > na:
        raise CertError("it has expired")


def from_pem(text):
    """The DER of one PEM certificate (InstallCertificate's `certificate`)."""
    a = text.find(_PEM_HEAD)
    b = text.find(_PEM_TAIL)
    if a < 0 or b < a:
        raise CertError("not a PEM certificate (no BEGIN/END CERTIFICATE lines)")
    body = "".join(text[a + len(_PEM_HEAD):b].split())
    try:
        return binascii.a2b_base64(body)
    except (ValueError, TypeError):
        raise CertError("the PEM's base64 does not decode")


def _hex(data):
    return binascii.hexlify(data).decode()


def hash_data(der):
    """certificateHashData of a root certificate (SHA256, as the whitepaper's examples)."""
    issuer, serial, key, _ = parse(der)
    # The serial in hex without leading zeroes (the whitepaper), its sign byte too.
    return {"hashAlgorithm": "SHA256", "issuerNameHash": _hex(hashlib.sha256(issuer).digest()),
            "issuerKeyHash": _hex(hashlib.sha256(key).digest()), "serialNumber": _hex(serial).lstrip("0") or "0"}


def installed(root, prefix=None):
    """[(file name, prefix)] of the certificates on flash, oldest first; those of one kind with
    `prefix`."""
    try:
        names = sorted(os.listdir(store.join(root, DIR)))
    except OSError:
        return []
    out = []
    for name in names:
        kind = name[:2]
        if name.endswith(".der") and kind in ("cs", "mf") and (prefix is None or kind == prefix):
            out.append((name, kind))
    return out


def read(root, name):
    with open(store.join(root, DIR + "/" + name), "rb") as f:
        return f.read()


def _matches(der, want):
    got = hash_data(der)
    return all(str(want.get(k, "")).lower() == got[k] for k in ("issuerNameHash", "issuerKeyHash", "serialNumber")) \
        and want.get("hashAlgorithm") == "SHA256"


def _now(cp):
    return cp.clock.now() if cp.clock.known else None


def install(cp, p):
    only(p, ("certificateType", "certificate"))
    kind_name = need(p, "certificateType", str, choices=tuple(KINDS))
    kind = KINDS[kind_name]
    text = need(p, "certificate", str, maxlen=5500)
    try:
        der = from_pem(text)
        data = hash_data(der)
        check_valid(der, _now(cp))
    except CertError as e:
        # The security event of the certificate's use: TLS to the central system, or signing firmware.
        cp.security_event("InvalidCentralSystemCertificate" if kind == "cs" else "InvalidFirmwareSigningCertificate",
                          "InstallCertificate %s: %s" % (kind_name, e))
        return {"status": "Rejected"}
    root = cp.root
    have = installed(root)
    for name, _ in have:
        try:
            if name[:2] == kind and hash_data(read(root, name)) == data:
                return {"status": "Accepted"}     # installed already
        except (OSError, CertError):
            pass   # an unreadable file of ours: it still counts against the store's room
    if len(have) >= MAX_CERTS:
        cp.log("ocpp: InstallCertificate failed: the store holds %d certificates, its most" % MAX_CERTS)
        return {"status": "Failed"}
    n = 1
    for name, _ in have:
        try:
            n = max(n, int(name[3:-4]) + 1)
        except ValueError:
            pass
    try:
        try:
            os.mkdir(store.join(root, DIR))
        except OSError:
            pass   # there already
        path = store.join(root, "%s/%s-%d.der" % (DIR, kind, n))
        with open(path + ".tmp", "wb") as f:   # whole or not at all: a power cut leaves no half
            f.write(der)
        os.rename(path + ".tmp", path)
    except OSError as e:
        cp.log("ocpp: InstallCertificate failed: %s" % e)
        return {"status": "Failed"}
    cp.log("ocpp: %s installed (serial %s)" % (need(p, "certificateType", str), data["serialNumber"]))
    return {"status": "Accepted"}


def get_ids(cp, p):
    only(p, ("certificateType",))
    kind = KINDS[need(p, "certificateType", str, choices=tuple(KINDS))]
    out = []
    for name, _ in installed(cp.root, kind):
        try:
            out.append(hash_data(read(cp.root, name)))
        except (OSError, CertError) as e:
            cp.log("ocpp: certificate %s unreadable: %s" % (name, e))
    if not out:
        return {"status": "NotFound"}
    return {"status": "Accepted", "certificateHashData": out}


def delete(cp, p):
    only(p, ("certificateHashData",))
    want = need(p, "certificateHashData", dict)
    only(want, ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber"))
    need(want, "hashAlgorithm", str, choices=("SHA256", "SHA384", "SHA512"))
    for k, most in (("issuerNameHash", 128), ("issuerKeyHash", 128), ("serialNumber", 40)):
        need(want, k, str, maxlen=most)
    root = cp.root
    for name, kind in installed(root):
        try:
            der = read(root, name)
            if not _matches(der, want):
                continue
        except (OSError, CertError):
            continue
        if kind == "cs" and len(installed(root, "cs")) == 1 and cp.keys.get("SecurityProfile") >= 2:
            # The link's TLS trusts it: the last central system root goes only with a new one in.
            cp.log("ocpp: DeleteCertificate failed: %s is the only CentralSystemRootCertificate" % name)
            return {"status": "Failed"}
        try:
            os.remove(store.join(root, DIR + "/" + name))
        except OSError as e:
            cp.log("ocpp: DeleteCertificate failed: %s" % e)
            return {"status": "Failed"}
        cp.log("ocpp: certificate %s deleted" % name)
        return {"status": "Accepted"}
    return {"status": "NotFound"}


# ---- signatures: RSA (PKCS#1 v1.5) or ECDSA P-256, with SHA-256 ----------------------------------
# An RSA signature is checked with big-int arithmetic, C inside MicroPython: a 2048-bit check is
# 17 multiplications. An ECDSA one is thousands (below): sliced.
_RSA = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"             # rsaEncryption
_RSA_SHA256 = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"      # sha256WithRSAEncryption
_SHA256_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


def rsa_key(der):
    """(n, e, modulus bytes) of a certificate's RSA public key; CertError for another kind."""
    p = parts(der)
    if p[4] != _RSA:
        raise CertError("its key is neither RSA nor EC P-256")
    key = p[2]
    t, s, e = _tlv(key, 0, len(key))
    t, ns, ne = _tlv(key, s, e)
    t, es, ee = _tlv(key, ne, e)
    n = key[ns:ne]
    while n and n[0] == 0:
        n = n[1:]
    e = int.from_bytes(key[es:ee], "big")
    # 2048 to 4096 bits and a small odd exponent: a key that would hold the loop for seconds in
    # one multiplication, or that is no RSA key, is refused before any arithmetic.
    if not 256 <= len(n) <= 512 or not n[-1] & 1 or not (3 <= e < 1 << 32 and e & 1):
        raise CertError("its RSA key is not 2048 to 4096 bits with a small odd exponent")
    return int.from_bytes(n, "big"), e, len(n)


def _rsa_steps(key, signature, digest):
    # RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2.2). pow(s, e, n) needs MICROPY_PY_BUILTINS_POW3, which not every port enables: square and
    # multiply, each a C mpz operation (e is 65537 in practice: 17 of them), in slices.
    n, e, k = key
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    m = yield from _modexp_steps(s, e, n)
    em = m.to_bytes(k, "big")
    want = b"\x00\x01" + b"\xff" * (k - 3 - len(_SHA256_INFO) - 32) + b"\x00" + _SHA256_INFO + digest
    return em == want


def public_key(der):
    """A certificate's key for verify_steps: ("rsa", (n, e, size)) or ("ec", (x, y))."""
    if parts(der)[4] == _EC_KEY:
        return "ec", ec_key(der)
    return "rsa", rsa_key(der)


def verify_steps(key, signature, digest):
    """Generator (yields between slices): whether `signature` of the SHA-256 `digest` is good
    under key (public_key's): RSASSA-PKCS1-v1_5, or ECDSA P-256 with the signature in DER."""
    kind, k = key
    if kind == "rsa":
        return (yield from _rsa_steps(k, signature, digest))
    return (yield from ecdsa_steps(k, signature, digest))


def signed_by_steps(der, issuer_der):
    """Generator: whether certificate `der` names `issuer_der` as its issuer and carries its
    signature (sha256WithRSAEncryption or ecdsa-with-SHA256)."""
    p, q = parts(der), parts(issuer_der)
    if p[0] != q[3] or p[6] not in (_RSA_SHA256, _ECDSA_SHA256):
        return False
    key = public_key(issuer_der)
    if (p[6] == _ECDSA_SHA256) != (key[0] == "ec"):
        return False
    return (yield from verify_steps(key, p[7], hashlib.sha256(p[5]).digest()))


def chains_to(root, ders, prefix):
    """Generator: whether the chain `ders` (the certificate first, then its issuers as sent)
    leads, each signed by the next, to a root of kind `prefix` installed here (or is one)."""
    roots = []
    for name, _ in installed(root, prefix):
        try:
            roots.append(read(root, name))
        except OSError:
            pass
    for i in range(len(ders)):
        der = ders[i]
        if der in roots:
            return True
        for r in roots:
            try:
                if (yield from signed_by_steps(der, r)):
                    return True
            except CertError:
                pass   # a root with a key of another kind, or unreadable: the next one
        if i + 1 == len(ders) or not (yield from signed_by_steps(der, ders[i + 1])):
            return False
    return False


def signing_key_steps(root, pem, now_s=None):
    """Generator: the key (public_key's) of a firmware signing certificate a ManufacturerRoot-
    Certificate installed here signed (or that is one), valid at now_s; CertError saying why not."""
    der = from_pem(pem)
    check_valid(der, now_s)
    key = public_key(der)
    if not (yield from chains_to(root, [der], "mf")):
        raise CertError("not signed by a ManufacturerRootCertificate installed here")
    return key


# ---- CertificateSigned: this charge point's certificate, for the key made at commissioning ------
def csr_key_bits(pem):
    """The public key's bits of a PEM certificate request (PKCS#10)."""
    a = pem.find("-----BEGIN CERTIFICATE REQUEST-----")
    b = pem.find("-----END CERTIFICATE REQUEST-----")
    if a < 0 or b < a:
        raise CertError("the certificate request is not PEM")
    der = binascii.a2b_base64("".join(pem[a + len("-----BEGIN CERTIFICATE REQUEST-----"):b].split()))
    t, s, e = _tlv(der, 0, len(der))
    t, s, e = _tlv(der, s, e)                 # CertificationRequestInfo
    t, vs, ve = _tlv(der, s, e)               # version
    t, ns, ne = _tlv(der, ve, e)              # subject
    t, ks, ke = _tlv(der, ne, e)              # SubjectPublicKeyInfo
    t, as_, ae = _tlv(der, ks, ke)
    t, bs, be = _tlv(der, ae, ke)
    if t != 0x03 or be <= bs:
        raise CertError("no public key in the certificate request")
    return der[bs + 1:be]


def pems(text):
    """The DER of each PEM certificate in `text`, in order."""
    out = []
    at = 0
    while True:
        a = text.find(_PEM_HEAD, at)
        if a < 0:
            break
        b = text.find(_PEM_TAIL, a)
        if b < 0:
            break
        out.append(from_pem(text[a:b + len(_PEM_TAIL)]))
        at = b + len(_PEM_TAIL)
    if not out:
        raise CertError("not a PEM certificate (no BEGIN/END CERTIFICATE lines)")
    return out


def signed(cp, p):
    """CertificateSigned (a generator: the chain's signatures are checked in slices)."""
    only(p, ("certificateChain",))
    chain = need(p, "certificateChain", str, maxlen=10000)
    app = cp.app
    try:
        ders = pems(chain)
        der = ders[0]                         # the first certificate of the chain is ours
        mine = parts(der)[2]
        csr = app.client_csr()
        if csr is None:
            raise CertError("this charge point has no certificate request (ocpp_csr) it could be for")
        if mine != csr_key_bits(csr):
            raise CertError("it is for another key than this charge point's")
        check_valid(der, _now(cp))
        if not (yield from chains_to(cp.root, ders, "cs")):
            raise CertError("its chain does not lead to a CentralSystemRootCertificate installed here")
    except (CertError, ValueError) as e:
        cp.security_event("InvalidChargePointCertificate", "CertificateSigned: %s" % e)
        return {"status": "Rejected"}
    name = app.cfg.get("ocpp_cert") or "cp.der"
    path = store.join(cp.root, name)
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(der)
        os.rename(path + ".tmp", path)
        if app.cfg.get("ocpp_cert") != name:
            app.cfg.set("ocpp_cert", name)
    except (OSError, ValueError) as e:   # the flash, not the certificate
        store.remove(path + ".tmp")
        cp.log("ocpp: CertificateSigned not stored: %s" % e)
        return {"status": "Rejected"}
    cp.log("ocpp: this charge point's certificate installed as %s (serial %s); it is shown from the next "
           "connection on" % (name, hash_data(der)["serialNumber"]))
    return {"status": "Accepted"}


# ---- ECDSA P-256 with SHA-256 (RFC 6090, SEC 1 4.1.4), in big-int arithmetic -----------------------
# A check is two 256-bit scalar multiplications: thousands of mpz operations, a second or two of
# an RP2040. It is a generator that yields every _EC_SLICE bits, so a handler that runs it
# (ops.steps) lets the event loop run between slices.
_EC_KEY = b"\x2a\x86\x48\xce\x3d\x02\x01"              # id-ecPublicKey
_ECDSA_SHA256 = b"\x2a\x86\x48\xce\x3d\x04\x03\x02"    # ecdsa-with-SHA256
_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
_GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
_GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5
_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
_EC_SLICE = const(1)


def _double(X, Y, Z):
    # Jacobian doubling with a = -3 (dbl-2001-b).
    if not Y:
        return 0, 1, 0
    p = _P
    zz = Z * Z % p
    yy = Y * Y % p
    beta = X * yy % p
    alpha = 3 * (X - zz) * (X + zz) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((Y + Z) * (Y + Z) - yy - zz) % p
    y3 = (alpha * (4 * beta - x3) - 8 * yy * yy) % p
    return x3, y3, z3


def _add(X1, Y1, Z1, X2, Y2, Z2):
    # Jacobian addition (add-2007-bl), doubling when the points are equal.
    if not Z1:
        return X2, Y2, Z2
    if not Z2:
        return X1, Y1, Z1
    p = _P
    z1z1 = Z1 * Z1 % p
    z2z2 = Z2 * Z2 % p
    u1 = X1 * z2z2 % p
    u2 = X2 * z1z1 % p
    s1 = Y1 * Z2 * z2z2 % p
    s2 = Y2 * Z1 * z1z1 % p
    h = (u2 - u1) % p
    r = (s2 - s1) % p
    if not h:
        return _double(X1, Y1, Z1) if not r else (0, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - s1 * hhh) % p
    z3 = Z1 * Z2 * h % p
    return x3, y3, z3


def ec_key(der):
    """(x, y) of a certificate's P-256 public key; CertError for another kind or a point off the curve."""
    p = parts(der)
    if p[4] != _EC_KEY:
        raise CertError("its key is not an EC key")
    key = p[2]
    if len(key) != 65 or key[0] != 4:
        raise CertError("its EC key is not an uncompressed P-256 point")
    x, y = int.from_bytes(key[1:33], "big"), int.from_bytes(key[33:], "big")
    if (y * y - x * x * x + 3 * x - _B) % _P:
        raise CertError("its EC key is not on the P-256 curve")
    return x, y


def ecdsa_steps(key, signature, digest):
    """Generator: yields between slices, returns whether `signature` (DER SEQUENCE of r, s) is
    an ECDSA P-256 signature of the SHA-256 `digest` under key (x, y)."""
    try:
        t, s, e = _tlv(signature, 0, len(signature))
        t, rs, re = _tlv(signature, s, e)
        t, ss, se = _tlv(signature, re, e)
    except CertError:
        return False
    r = int.from_bytes(signature[rs:re], "big")
    sv = int.from_bytes(signature[ss:se], "big")
    n = _N
    if not (0 < r < n and 0 < sv < n):
        return False
    w = yield from _modexp_steps(sv, n - 2, n)
    u1 = int.from_bytes(digest, "big") * w % n
    u2 = r * w % n
    qx, qy = key
    both = _add(_GX, _GY, 1, qx, qy, 1)
    X, Y, Z = 0, 1, 0
    for i in range(255, -1, -1):   # Shamir's trick: one double and at most one add a bit
        X, Y, Z = _double(X, Y, Z)
        b1 = (u1 >> i) & 1
        b2 = (u2 >> i) & 1
        if b1 and b2:
            X, Y, Z = _add(X, Y, Z, both[0], both[1], both[2])
        elif b1:
            X, Y, Z = _add(X, Y, Z, _GX, _GY, 1)
        elif b2:
            X, Y, Z = _add(X, Y, Z, qx, qy, 1)
        if not i % _EC_SLICE:
            yield
    if not Z:
        return False
    zi = yield from _modexp_steps(Z, _P - 2, _P)
    return X * zi * zi % _P % n == r


def _modexp_steps(b, e, n):
    # _modexp for a 256-bit exponent (an inverse by Fermat), yielding every 16 bits.
    r = 1
    b %= n
    k = 0
    while e:
        if e & 1:
            r = r * b % n
        e >>= 1
        if e:
            b = b * b % n
        k += 1
        if not k % 16:
            yield
    return r


# ---- SignedUpdateFirmware's request (ops routes it here: this code loads for it) ------------------
def signed_update(cp, p):
    """SignedUpdateFirmware, as a generator: an ECDSA check of the signing certificate runs in
    slices between the event loop's turns. The download and its signature check come later, in
    the update's own task (ChargePoint.start_firmware_update)."""
    from evse.ocpp.ops import _later, _time
    from evse.ocpp.rpc import opt
    only(p, ("retries", "retryInterval", "requestId", "firmware"))
    request_id = need(p, "requestId", int)
    retries = opt(p, "retries", int, lo=0) or 1
    interval = opt(p, "retryInterval", int, lo=0) or 60
    firmware = need(p, "firmware", dict)
    only(firmware, ("location", "retrieveDateTime", "installDateTime", "signingCertificate", "signature"))
    location = need(firmware, "location", str, maxlen=512)
    when_s = _time(firmware, "retrieveDateTime")
    _time(firmware, "installDateTime", False)   # installed right after the download and its check
    pem = need(firmware, "signingCertificate", str, maxlen=5500)
    text = need(firmware, "signature", str, maxlen=800)
    try:
        signature = binascii.a2b_base64(text)
    except (ValueError, TypeError):
        cp.log("ocpp: SignedUpdateFirmware rejected: the signature is not base64")
        return {"status": "Rejected"}
    try:
        key = yield from signing_key_steps(cp.root, pem, _now(cp))
    except CertError as e:
        cp.security_event("InvalidFirmwareSigningCertificate", str(e))
        return {"status": "InvalidCertificate"}
    if cp.firmware_busy:
        cp.log("ocpp: SignedUpdateFirmware rejected: an update is scheduled or under way (%s)" % cp.firmware_status)
        return {"status": "Rejected"}
    _later(cp, lambda: cp.start_firmware_update(location, when_s, retries, interval, (request_id, key, signature)))
    return {"status": "Accepted"}
