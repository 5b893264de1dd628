"""A simple RFC 3161 Time-Stamp Authority for the sandbox (``POST /tsa``).

Enough of a TSA to test the hub's time-stamping of audit seals end to end: it answers a DER
``TimeStampReq`` with a ``TimeStampResp`` whose token is a CMS ``SignedData`` over a ``TSTInfo``
(SHA-256, signed attributes content-type + message-digest + signing-certificate-v2), signed by a
TSA certificate issued by the development CA with the critical ``timeStamping`` extended key
usage. No accuracy, no ordering, no policy negotiation: a real deployment points
``LIENTHONG_TSA_URL`` at the national or a commercial TSA instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["SandboxTsa", "issue_tsa_certificate", "TSA_POLICY"]

#: the (private-arc, illustrative) policy OID the sandbox stamps under
TSA_POLICY = "1.3.6.1.4.1.59999.3161.1"


def issue_tsa_certificate(authority, *, common_name: str = "Sandbox TSA",
                          now: dt.datetime | None = None) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A TSA key and certificate issued by ``authority`` (a :class:`~lienthong.signing.pki.CertificateAuthority`)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = now or dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Liên thông Hub sandbox"),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.certificate.public_key()),
                       critical=False)
        .sign(authority.private_key, hashes.SHA256())
    )
    return key, cert


class SandboxTsa:
    """Stamps requests with ``key``/``certificate``; thread-safe (serial numbers from a counter)."""

    def __init__(self, key: rsa.RSAPrivateKey, certificate: x509.Certificate, *, clock=None) -> None:
        self.key = key
        self.certificate = certificate
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._serials = itertools.count(1)
        self._lock = threading.Lock()

    @classmethod
    def from_authority(cls, authority, **kw) -> SandboxTsa:
        key, cert = issue_tsa_certificate(authority)
        return cls(key, cert, **kw)

    def respond(self, request_der: bytes) -> bytes:
        """A DER ``TimeStampResp`` for a DER ``TimeStampReq`` (a ``rejection`` for what it cannot read)."""
        from asn1crypto import tsp

        try:
            request = tsp.TimeStampReq.load(request_der)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            nonce = request["nonce"].native
        except (ValueError, TypeError, KeyError) as exc:
            return self._rejection("bad_data_format", f"not a TimeStampReq: {exc}")
        if algorithm != "sha256" or len(hashed) != 32:
            return self._rejection("bad_alg", f"only sha256 imprints are stamped, not {algorithm}")
        token = self.token(hashed, nonce=nonce)
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()

    def _rejection(self, failure: str, text: str) -> bytes:
        from asn1crypto import tsp

        status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text],
                                    "fail_info": tsp.PKIFailureInfo({failure})}).dump()
        # TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }: asn1crypto insists on the
        # token, so the rejection's SEQUENCE is written by hand
        return b"\x30" + _der_length(len(status)) + status

    def token(self, hashed_message: bytes, *, nonce: int | None = None):
        """The ``ContentInfo`` (asn1crypto) of a token stamping ``hashed_message`` (SHA-256)."""
        from asn1crypto import algos, cms, core, tsp
        from asn1crypto import x509 as ax509

        with self._lock:
            serial = next(self._serials)
        tst = {
            "version": "v1",
            "policy": TSA_POLICY,
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashed_message},
            "serial_number": serial,
            "gen_time": self._clock().astimezone(dt.UTC).replace(microsecond=0),
        }
        if nonce is not None:
            tst["nonce"] = nonce
        tst_info = tsp.TSTInfo(tst)
        content = tst_info.dump()
        cert_der = self.certificate.public_bytes(serialization.Encoding.DER)
        cert = ax509.Certificate.load(cert_der)
        signing_cert = tsp.SigningCertificateV2({"certs": [{"cert_hash": hashlib.sha256(cert_der).digest()}]})
        signed_attrs = cms.CMSAttributes([
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
            {"type": "signing_certificate_v2", "values": [signing_cert]},
        ])
        to_sign = signed_attrs.dump()
        signature = self.key.sign(b"\x31" + to_sign[1:], padding.PKCS1v15(), hashes.SHA256())
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
                "issuer": cert.issuer, "serial_number": cert.serial_number}}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
            "signature": signature,
        })
        signed_data = cms.SignedData({
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(content)},
            "certificates": [cert],
            "signer_infos": [signer_info],
        })
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body
