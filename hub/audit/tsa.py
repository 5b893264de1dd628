"""RFC 3161 time-stamping of audit seals: the request, the HTTP exchange and token verification.

A seal's own ``SealedAt`` is the hub's word for when the ledger looked like that. A time-stamp
token from a Time-Stamp Authority is a third party's: the TSA signs ``{SHA-256 of the seal's
signature value, its own time, the nonce we sent}``, so a seal cannot be back-dated by whoever
holds the hub key. The hub sends a ``TimeStampReq`` (``application/timestamp-query``) to
``LIENTHONG_TSA_URL`` and keeps the token (a CMS ``SignedData`` over a ``TSTInfo``, DER) with the
seal. Checking a token (:func:`check_token`), on the hub or offline from an export archive:

* the token is ``SignedData`` whose content is a ``TSTInfo``, with exactly one signer;
* the message imprint is SHA-256 and equals SHA-256 of the seal's signature value;
* the signed attributes hold the content type and the digest of the ``TSTInfo`` as carried;
* the signature over the signed attributes verifies with the certificate the signer names;
* that certificate has the (critical) ``timeStamping`` extended key usage and chains to a
  pinned CA, valid at the token's ``genTime`` (the same :class:`TrustStore` as messages).

The nonce is checked when the answer arrives (it proves the answer is fresh, not a replay); the
time is checked against the seal's own: a token older than the seal it stamps, or made more than
an hour after it (a back-dated seal), is refused.

DER goes through ``asn1crypto`` (pure Python); signatures through ``cryptography``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..errors import SignatureError, TransportError

__all__ = ["TimestampInvalid", "build_request", "check_token", "parse_response", "request_token", "timestamper_for", "token_checker",
           "token_certificates"]

CONTENT_TYPE_QUERY = "application/timestamp-query"
CONTENT_TYPE_REPLY = "application/timestamp-reply"
#: how far a token's genTime may precede the seal's own SealedAt (clocks of hub and TSA differ)
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: how long after SealedAt a token may be made: the hub asks right after signing, so a much later
#: token means the seal's own time is not supported by the witness (a back-dated seal)
MAX_STAMP_DELAY = timedelta(hours=1)
_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class TimestampInvalid(SignatureError):
    """An RFC 3161 time-stamp token or response that does not verify."""

    code = "TIMESTAMP_INVALID"


def build_request(signature_value: bytes, nonce: int) -> bytes:
    """DER ``TimeStampReq`` over SHA-256 of ``signature_value``, asking for the TSA certificate."""
    from asn1crypto import algos, tsp

    return tsp.TimeStampReq({
        "version": 1,
        "message_imprint": tsp.MessageImprint({
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "hashed_message": hashlib.sha256(signature_value).digest(),
        }),
        "nonce": nonce,
        "cert_req": True,
    }).dump()


def _load_token(token: bytes):
    from asn1crypto import cms

    try:
        info = cms.ContentInfo.load(token)
        if info["content_type"].native != "signed_data":
            raise TimestampInvalid(f"the time-stamp token is a {info['content_type'].native}, not signed data")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TimestampInvalid(f"the time-stamp token carries {encap['content_type'].native}, not a TSTInfo")
        tst = encap["content"].parsed
        tst.native  # noqa: B018 - forces a full parse, so malformed DER fails here
    except TimestampInvalid:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TimestampInvalid(f"the time-stamp token is not valid DER: {exc}") from None
    return signed, encap, tst


def token_certificates(token: bytes) -> list[x509.Certificate]:
    """The certificates a token carries (the TSA's, possibly its chain)."""
    signed, _, _ = _load_token(token)
    certs = []
    for choice in signed["certificates"] or []:
        if choice.name == "certificate":
            certs.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return certs


def check_token(token: bytes, signature_value: bytes, trust_store, *, nonce: int | None = None) -> datetime:
    """Verify ``token`` as a time-stamp of ``signature_value``; return its ``genTime`` (UTC).

    Raises :class:`TimestampInvalid` (or the trust store's :class:`CertificateError`) naming the
    check that failed.
    """
    signed, encap, tst = _load_token(token)
    imprint = tst["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm != "sha256":
        raise TimestampInvalid(f"the time-stamp token's message imprint uses {algorithm}, not sha256")
    if imprint["hashed_message"].native != hashlib.sha256(signature_value).digest():
        raise TimestampInvalid("the time-stamp token's message imprint does not match the seal's signature value: "
                               "the token stamps another document")
    if nonce is not None and tst["nonce"].native != nonce:
        raise TimestampInvalid(f"the TSA answered with nonce {tst['nonce'].native}, not the {nonce} that was sent: "
                               "the answer is not to this request")
    infos = signed["signer_infos"]
    if len(infos) != 1:
        raise TimestampInvalid(f"the time-stamp token has {len(infos)} signers; exactly one is accepted")
    info = infos[0]
    attrs = info["signed_attrs"]
    if not attrs:
        raise TimestampInvalid("the time-stamp token has no signed attributes")
    values = {a["type"].native: a["values"][0] for a in attrs}
    digest_name = info["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise TimestampInvalid(f"the time-stamp token's digest algorithm {digest_name} is not accepted")
    if values.get("content_type") is None or values["content_type"].native != "tst_info":
        raise TimestampInvalid("the time-stamp token's signed content type is not TSTInfo")
    content_digest = hashlib.new(digest_name, encap["content"].contents).digest()
    if values.get("message_digest") is None or values["message_digest"].native != content_digest:
        raise TimestampInvalid("the time-stamp token's TSTInfo does not match the digest its signer signed")

    sid = info["sid"]
    if sid.name != "issuer_and_serial_number":
        raise TimestampInvalid("the time-stamp token names its signer by key identifier; issuer and serial expected")
    serial = sid.chosen["serial_number"].native
    certs = token_certificates(token)
    leaf = next((c for c in certs if c.serial_number == serial), None)
    if leaf is None:
        raise TimestampInvalid("the time-stamp token does not carry its signer's certificate")
    signed_bytes = attrs.untag().dump() if hasattr(attrs, "untag") else b"\x31" + attrs.dump()[1:]
    _verify_signature(leaf, info["signature"].native, signed_bytes, digest_name,
                      info["signature_algorithm"].signature_algo)
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampInvalid("the TSA certificate has no extendedKeyUsage (timeStamping required)") from None
    if x509.ExtendedKeyUsageOID.TIME_STAMPING not in eku.value or not eku.critical:
        raise TimestampInvalid("the TSA certificate is not for time-stamping (critical extendedKeyUsage "
                               "timeStamping required)")
    gen_time = tst["gen_time"].native.astimezone(UTC)
    trust_store.validate(leaf, [c for c in certs if c is not leaf], at=gen_time)
    return gen_time


def _verify_signature(cert: x509.Certificate, signature: bytes, data: bytes, digest_name: str, algo: str) -> None:
    key = cert.public_key()
    digest = _HASHES[digest_name]()
    try:
        if isinstance(key, rsa.RSAPublicKey) and algo == "rsassa_pkcs1v15":
            key.verify(signature, data, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algo == "ecdsa":
            key.verify(signature, data, ec.ECDSA(digest))
        else:
            raise TimestampInvalid(f"the time-stamp token's signature algorithm {algo} does not fit the TSA key")
    except InvalidSignature:
        raise TimestampInvalid("the time-stamp token's signature does not verify with the TSA certificate it names "
                               "(forged or altered token)") from None


def parse_response(der: bytes):
    """A DER ``TimeStampResp`` (asn1crypto's own class wrongly requires the token, which a
    rejection does not carry)."""
    from asn1crypto import cms, core, tsp

    class _TimeStampResp(core.Sequence):
        _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]

    reply = _TimeStampResp.load(der)
    reply.native  # noqa: B018 - full parse: malformed DER fails here, inside the caller's try
    return reply


#: the largest time-stamp reply accepted (a token with its certificate chain is a few KB)
MAX_REPLY_BYTES = 256 * 1024


def request_token(url: str, signature_value: bytes, trust_store, *, timeout: float = 30.0,
                  session=None) -> tuple[bytes, datetime]:
    """Ask the TSA at ``url`` to stamp ``signature_value``; return (token DER, genTime) after
    checking the answer completely (status, nonce, imprint, signature, certificate). The exchange
    ends at ``timeout`` seconds whatever the TSA's pace, and its reply is read with a limit."""
    from ...connectors.http import HttpClient, HttpLimits

    nonce = secrets.randbits(63)
    body = build_request(signature_value, nonce)
    http = HttpClient.for_url("TSA", url, session=session)
    try:
        response = http.post(url, body, {"Content-Type": CONTENT_TYPE_QUERY},
                             HttpLimits(deadline=timeout, max_bytes=MAX_REPLY_BYTES),
                             content_types=(CONTENT_TYPE_REPLY,))
    except TransportError as exc:
        if type(exc) is not TransportError:  # a timeout, a reply too large...: already says what happened
            raise
        raise TransportError(f"TSA {url} unreachable: {exc}") from None
    if response.status != 200:
        raise TimestampInvalid(f"TSA {url} answered HTTP {response.status}")
    try:
        reply = parse_response(response.content)
        status = reply["status"]["status"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampInvalid(f"TSA {url} answered something that is not a TimeStampResp: {exc}") from None
    if status not in ("granted", "granted_with_mods"):
        text = "; ".join(reply["status"]["status_string"].native or []) or None
        raise TimestampInvalid(f"TSA {url} refused the request: {status}{f' ({text})' if text else ''}")
    if reply["time_stamp_token"].native is None:
        raise TimestampInvalid(f"TSA {url} granted the request but sent no token")
    token = reply["time_stamp_token"].dump()
    gen_time = check_token(token, signature_value, trust_store, nonce=nonce)
    return token, gen_time


def timestamper_for(settings) -> Callable[[bytes], tuple[bytes, datetime]] | None:
    """The seal time-stamper when ``LIENTHONG_TSA_URL`` is configured, else ``None``."""
    url = getattr(settings, "tsa_url", None)
    if not url:
        return None
    from ...signing.cli import trust_store_for

    trust = trust_store_for(settings)
    timeout = settings.operation_timeout

    def stamp(signature_value: bytes) -> tuple[bytes, datetime]:
        return request_token(url, signature_value, trust, timeout=timeout)

    return stamp


def token_checker(trust_store) -> Callable[[bytes, bytes, datetime], datetime]:
    """``check(token, signature_value, sealed_at)`` for :func:`lienthong.hub.audit.seal.verify_ledger`."""

    def check(token: bytes, signature_value: bytes, sealed_at: datetime) -> datetime:
        gen_time = check_token(token, signature_value, trust_store)
        if gen_time < sealed_at - MAX_CLOCK_SKEW:
            raise TimestampInvalid(f"the time-stamp ({gen_time.isoformat()}) is older than the seal it stamps "
                                   f"({sealed_at.isoformat()})")
        if gen_time > sealed_at + MAX_STAMP_DELAY:
            raise TimestampInvalid(f"the time-stamp ({gen_time.isoformat()}) was made more than "
                                   f"{MAX_STAMP_DELAY} after the time the seal claims ({sealed_at.isoformat()}): "
                                   "the seal's time is not supported by the TSA")
        return gen_time

    return check

