"""The hub's one error tree.

Every failure the hub can meet is one of these types, so a caller decides what to do by
catching a type, never by reading a message::

    HubError
    ├── RetryableError                 try again later: the same message may well succeed
    │   ├── TransportError             connection refused/reset, TLS handshake interrupted
    │   │   ├── TransportTimeout       no answer within the exchange's deadline
    │   │   │   └── DeadlineExceeded   an answer began but was still arriving at the deadline (a drip)
    │   │   ├── ReplyTooLarge          the reply (announced, or as decoded while it arrives) passes its limit
    │   │   └── ReplyTruncated         the connection closed or reset in the middle of the reply
    │   ├── ServiceUnavailable         HTTP 5xx / 429 from the partner or gateway
    │   │   └── UnexpectedContentType  a 2xx reply that is not what the service speaks (a proxy's HTML page)
    │   └── TransientFault             SOAP Fault the partner marks as temporary
    └── FatalError                     the same message will fail again: dead-letter it
        ├── ConfigurationError         missing key, endpoint, agency code, bad setting
        ├── TlsError                   the partner's TLS certificate does not verify
        ├── XmlRejected                hostile or broken XML (see hub.xmlsafe)
        │   ├── XmlTooLarge, XmlTooDeep, XmlMalformed, XmlEncodingError
        │   └── XmlDtdForbidden, XmlEntityForbidden, XmlXIncludeForbidden, XmlProcessingInstructionForbidden
        ├── SchemaViolation            the message does not match its XSD
        ├── EnvelopeError              envelope well-formed and valid but wrong for this exchange
        │   ├── WrongRecipient         To/OrganId is not the agency expected
        │   ├── WrongSender            From/OrganId is not the partner expected
        │   ├── UnexpectedResponse     Subject/ResponseFor does not match the request
        │   ├── LegacyEnvelope         the hub's earlier shape (bare edXMLEnvelope): read from the ledger, refused live
        │   ├── EnvelopeStructure      not one edXMLEnvelope first under the edXML root, as gateways read it
        │   └── AttachmentMismatch     manifest and attachments do not list the same content ids
        ├── SignatureError             XML-DSig checks (see signing.verifier)
        │   ├── MissingSignature, MultipleSignatures, UnexpectedReference, WeakAlgorithm
        │   ├── DigestMismatch, InvalidSignatureValue
        │   └── CertificateError
        │       ├── UntrustedCertificate, ExpiredCertificate, NotYetValidCertificate
        │       └── RevokedCertificate, KeyUsageViolation
        ├── PartnerFault               SOAP Fault that will not go away on retry (business rejection)
        └── AuditChainBroken           the audit ledger does not verify

Each error carries a short stable ``code`` (used in SOAP faults, dead letters and CLI output) and a
human message that names what is wrong and where.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    code = "HUB_ERROR"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, detail: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.detail = detail

    def __str__(self) -> str:  # one clear line, used verbatim by the CLI
        return super().__str__()


class RetryableError(HubError):
    """The exchange may succeed if tried again later (after a backoff)."""

    code = "RETRYABLE"
    retryable = True


class TransportError(RetryableError):
    code = "TRANSPORT"


class TransportTimeout(TransportError):
    code = "TIMEOUT"


class DeadlineExceeded(TransportTimeout):
    """The partner began to answer but the whole exchange passed its deadline: a reply that drips."""

    code = "DEADLINE_EXCEEDED"


class ReplyTooLarge(TransportError):
    """The reply is over the operation's limit: refused on its announced length, or as soon as the
    decoded bytes pass it, never read whole. Retryable: a healthy partner answers within it."""

    code = "REPLY_TOO_LARGE"


class ReplyTruncated(TransportError):
    """The connection was closed or reset before the reply was complete."""

    code = "REPLY_TRUNCATED"


class ServiceUnavailable(RetryableError):
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, *, status: int | None = None, **kw):
        super().__init__(message, **kw)
        self.status = status


class UnexpectedContentType(ServiceUnavailable):
    """A successful HTTP status with a body the service does not speak (an HTML login or error page
    from a proxy instead of SOAP or JSON): not the partner's answer, so not read as one."""

    code = "REPLY_CONTENT_TYPE"


class TransientFault(RetryableError):
    """A SOAP Fault whose code the partner documents as temporary."""

    code = "TRANSIENT_FAULT"


class FatalError(HubError):
    """Retrying the same bytes cannot help: dead-letter with the reason."""

    code = "FATAL"


class ConfigurationError(FatalError):
    code = "CONFIGURATION"


class TlsError(FatalError):
    """The partner's TLS certificate did not verify: a configuration or interception problem."""

    code = "TLS_INVALID"


# --- XML hardening -------------------------------------------------------------------------
class XmlRejected(FatalError):
    code = "XML_REJECTED"


class XmlTooLarge(XmlRejected):
    code = "XML_TOO_LARGE"


class XmlTooDeep(XmlRejected):
    code = "XML_TOO_DEEP"


class XmlMalformed(XmlRejected):
    code = "XML_MALFORMED"


class XmlEncodingError(XmlRejected):
    code = "XML_ENCODING"


class XmlDtdForbidden(XmlRejected):
    code = "XML_DTD_FORBIDDEN"


class XmlEntityForbidden(XmlRejected):
    code = "XML_ENTITY_FORBIDDEN"


class XmlXIncludeForbidden(XmlRejected):
    code = "XML_XINCLUDE_FORBIDDEN"


class XmlProcessingInstructionForbidden(XmlRejected):
    code = "XML_PI_FORBIDDEN"


# --- schema and envelope -------------------------------------------------------------------
class SchemaViolation(FatalError):
    code = "SCHEMA_INVALID"


class EnvelopeError(FatalError):
    code = "ENVELOPE_INVALID"


class WrongRecipient(EnvelopeError):
    code = "WRONG_RECIPIENT"


class WrongSender(EnvelopeError):
    code = "WRONG_SENDER"


class UnexpectedResponse(EnvelopeError):
    code = "UNEXPECTED_RESPONSE"


class LegacyEnvelope(EnvelopeError):
    """A bare ``edXML:edXMLEnvelope``: the hub's earlier shape, read from the ledger, refused live."""

    code = "ENVELOPE_LEGACY_SHAPE"


class EnvelopeStructure(EnvelopeError):
    """Not one ``edXMLEnvelope`` as the first child of the ``edXML`` root, as gateways read it."""

    code = "ENVELOPE_STRUCTURE"


class AttachmentMismatch(EnvelopeError):
    """The manifest and the attachments do not list the same content ids."""

    code = "ENVELOPE_ATTACHMENT_MISMATCH"


# --- signatures ----------------------------------------------------------------------------
class SignatureError(FatalError):
    code = "SIGNATURE_INVALID"


class MissingSignature(SignatureError):
    code = "SIGNATURE_MISSING"


class MultipleSignatures(SignatureError):
    code = "SIGNATURE_MULTIPLE"


class UnexpectedReference(SignatureError):
    code = "SIGNATURE_UNEXPECTED_REFERENCE"


class WeakAlgorithm(SignatureError):
    code = "SIGNATURE_WEAK_ALGORITHM"


class DigestMismatch(SignatureError):
    code = "SIGNATURE_DIGEST_MISMATCH"


class InvalidSignatureValue(SignatureError):
    code = "SIGNATURE_VALUE_INVALID"


class CertificateError(SignatureError):
    code = "CERTIFICATE_INVALID"


class UntrustedCertificate(CertificateError):
    code = "CERTIFICATE_UNTRUSTED"


class ExpiredCertificate(CertificateError):
    code = "CERTIFICATE_EXPIRED"


class NotYetValidCertificate(CertificateError):
    code = "CERTIFICATE_NOT_YET_VALID"


class RevokedCertificate(CertificateError):
    code = "CERTIFICATE_REVOKED"


class KeyUsageViolation(CertificateError):
    code = "CERTIFICATE_KEY_USAGE"


# --- partner answers and audit -------------------------------------------------------------
class PartnerFault(FatalError):
    """A SOAP Fault that retrying will not fix (business rejection, invalid request)."""

    code = "PARTNER_FAULT"

    def __init__(self, message: str, *, fault_code: str | None = None, **kw):
        super().__init__(message, **kw)
        self.fault_code = fault_code


class AuditChainBroken(FatalError):
    code = "AUDIT_CHAIN_BROKEN"


# --- result files (digitised results uploaded to the portal) ---------------------------------
class ResultFileError(FatalError):
    """A result file the one-stop system announced cannot be uploaded as it is: each subclass a
    specific, counted dead-letter reason; replay the event once the file is put right."""

    code = "RESULT_FILE"


class ResultFileMissing(ResultFileError):
    code = "RESULT_FILE_MISSING"


class ResultFileUnreadable(ResultFileError):
    code = "RESULT_FILE_UNREADABLE"


class ResultFileOutsideRoot(ResultFileError):
    """The announced path leaves the configured result folder (``..``, an absolute path, a link)."""

    code = "RESULT_FILE_OUTSIDE_ROOT"


class ResultFileChanged(ResultFileError):
    """The bytes differ from what was announced (the one-stop system's SHA-256, or the hash the
    hub announced to the portal when the upload began)."""

    code = "RESULT_FILE_CHANGED"


class ResultSizeMismatch(ResultFileError):
    code = "RESULT_SIZE_MISMATCH"


class ResultFileTooLarge(ResultFileError):
    code = "RESULT_FILE_TOO_LARGE"


class ResultHashNotConfirmed(FatalError):
    """The portal ended the upload without confirming the SHA-256 the hub announced."""

    code = "RESULT_HASH_NOT_CONFIRMED"


class ResultFetchFailed(RetryableError):
    """Fetching a result file from the one-stop system's URL failed in a way a retry may fix."""

    code = "RESULT_FETCH_FAILED"


class UploadChecksumMismatch(RetryableError):
    """The portal assembled bytes that do not hash to the announced SHA-256 although the hub read
    the right ones: damaged on the way; the portal restarts the session and so does the upload."""

    code = "UPLOAD_CHECKSUM_MISMATCH"
