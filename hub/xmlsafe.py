"""The one place where untrusted XML is turned into a tree.

Every byte string that comes from outside the hub (a partner's reply, a request to the sandbox,
a file given to ``lienthong verify``) goes through :func:`parse_xml`. It refuses, with a specific
error each, what XML-based attacks need: document type declarations (and with them entity
expansion, "billion laughs", external entities and external DTDs), XInclude, processing
instructions, non-UTF-8 encodings, oversized documents and deep nesting. Nothing is fetched
from the network and nothing is expanded.

Why refuse the DOCTYPE outright instead of parsing it safely: no national message needs one, and
a parser that never sees a DTD cannot be tricked by one, whatever libxml2 version is installed.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

from .errors import (
    XmlDtdForbidden,
    XmlEncodingError,
    XmlEntityForbidden,
    XmlMalformed,
    XmlProcessingInstructionForbidden,
    XmlTooDeep,
    XmlTooLarge,
    XmlXIncludeForbidden,
)

#: 16 MiB: a 100-dossier status batch is well under 1 MiB; result files travel in 1 MiB chunks.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: the deepest national message (envelope + dossier lists) nests about 12 levels.
DEFAULT_MAX_DEPTH = 64

XINCLUDE_NAMESPACES = (b"http://www.w3.org/2001/XInclude", b"http://www.w3.org/2003/XInclude")

def _new_parser() -> etree.XMLParser:
    """An lxml parser with every dangerous feature off (still used only after the byte checks)."""
    return etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=False,
    remove_comments=False,
    remove_pis=False,
    collect_ids=False,
)


#: lxml parser objects must not be shared between threads; the sandbox serves from a thread pool.
_local = threading.local()


def safe_parser() -> etree.XMLParser:
    """This thread's hardened parser (for lxml APIs that take a ``parser=`` argument)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _new_parser()
    return parser


#: The main thread's hardened parser, for code that is known to run single-threaded.
SAFE_PARSER = _new_parser()

_XML_DECL = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._\-]+)[\"']")
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32-LE", b"\x00\x00\xfe\xff": "UTF-32-BE",
    b"\xff\xfe": "UTF-16-LE", b"\xfe\xff": "UTF-16-BE",
}


def _check_encoding(data: bytes) -> bytes:
    """Accept UTF-8 (with or without BOM) only; return the bytes without a UTF-8 BOM."""
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            raise XmlEncodingError(f"XML encoded as {name}; only UTF-8 is accepted")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data[:2] in (b"<\x00", b"\x00<"):
        raise XmlEncodingError("XML looks UTF-16 encoded without a byte-order mark; only UTF-8 is accepted")
    m = _XML_DECL.match(data)
    if m and m.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        raise XmlEncodingError(f"XML declares encoding {m.group(1).decode('ascii', 'replace')}; only UTF-8 is accepted")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlEncodingError(f"invalid UTF-8 at byte {exc.start}: {data[exc.start:exc.start + 4]!r}") from None
    return data


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "XML",
) -> etree._Element:
    """Parse untrusted bytes into an lxml element, or raise a specific :class:`XmlRejected`.

    ``what`` names the input in error messages ("reply from dvc_portal", "file x.xml").
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("parse_xml takes bytes; decode nothing before the checks")
    data = bytes(data)
    if len(data) > max_bytes:
        raise XmlTooLarge(f"{what} is {len(data):,} bytes, over the limit of {max_bytes:,}")
    if not data.strip():
        raise XmlMalformed(f"{what} is empty")
    data = _check_encoding(data)
    # Checked on the bytes, before any parser sees them: no DTD means no entity can be declared.
    if b"<!DOCTYPE" in data or b"<!doctype" in data:
        raise XmlDtdForbidden(f"{what} contains a document type declaration (DTD); DTDs are not accepted")
    if b"<!ENTITY" in data:
        raise XmlEntityForbidden(f"{what} declares an entity; entities are not accepted")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        msg = str(exc)
        if "Excessive depth" in msg or "depth" in msg.lower() and "exceed" in msg.lower():
            raise XmlTooDeep(f"{what} nests deeper than the parser allows: {msg}") from None
        if "Entity" in msg and ("not defined" in msg or "undefined" in msg):
            raise XmlEntityForbidden(f"{what} references an undeclared entity: {msg}") from None
        raise XmlMalformed(f"{what} is not well-formed XML: {msg}") from None
    if root is None:
        raise XmlMalformed(f"{what} has no root element")
    _check_tree(root, data, max_depth=max_depth, what=what)
    return root


def _check_tree(root: etree._Element, data: bytes, *, max_depth: int, what: str) -> None:
    # The tree walks below are skipped when the bytes cannot contain what they look for: the
    # common, clean message then costs one XPath probe on top of the parse.
    # Depth: one XPath probe evaluated in C; true iff some element sits deeper than max_depth.
    if root.xpath("boolean(" + "*/" * max_depth + "*)" if max_depth > 0 else "boolean(*)"):
        raise XmlTooDeep(f"{what} nests elements deeper than {max_depth} levels")
    # Processing instructions and entity references anywhere in the document (prolog included).
    after_decl = data.index(b"?>") + 2 if data.startswith(b"<?xml ") else 0
    if data.find(b"<?", after_decl) == -1 and b"&" not in data and b"XInclude" not in data:
        return
    sibling = root.getprevious()
    while sibling is not None:
        if isinstance(sibling, etree._ProcessingInstruction):
            raise XmlProcessingInstructionForbidden(f"{what} contains a processing instruction <?{sibling.target}?>")
        sibling = sibling.getprevious()
    for node in root.iter(etree.PI, etree.Entity):
        if isinstance(node, etree._ProcessingInstruction):
            raise XmlProcessingInstructionForbidden(f"{what} contains a processing instruction <?{node.target}?>")
        raise XmlEntityForbidden(f"{what} references entity &{node.name};")
    for ns in XINCLUDE_NAMESPACES:
        if root.xpath("boolean(//*[namespace-uri()=$ns])", ns=ns.decode()):
            raise XmlXIncludeForbidden(f"{what} uses XInclude ({ns.decode()}); inclusion is not accepted")
