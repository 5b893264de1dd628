"""The hardened parser refuses every classic XML attack with its own error, and stays fast."""

import pytest
from lienthong.hub import errors
from lienthong.hub.xmlsafe import parse_xml

XXE_FILE = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
XXE_NET = b'<!DOCTYPE a [<!ENTITY x SYSTEM "http://127.0.0.1:1/x">]><a>&x;</a>'
LAUGHS = (b'<!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
          b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;</l>')
QUADRATIC = b'<!DOCTYPE q [<!ENTITY x "' + b"A" * 50_000 + b'">]><q>' + b"&x;" * 5_000 + b"</q>"
EXTERNAL_DTD = b'<!DOCTYPE a SYSTEM "http://127.0.0.1:1/evil.dtd"><a/>'
PARAM_ENTITY = b'<!DOCTYPE a [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><a/>'


@pytest.mark.parametrize(
    "data, error",
    [
        (XXE_FILE, errors.XmlDtdForbidden),
        (XXE_NET, errors.XmlDtdForbidden),
        (LAUGHS, errors.XmlDtdForbidden),
        (QUADRATIC, errors.XmlDtdForbidden),
        (EXTERNAL_DTD, errors.XmlDtdForbidden),
        (PARAM_ENTITY, errors.XmlDtdForbidden),
        (b"<a>&undefined;</a>", errors.XmlEntityForbidden),
        (b'<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd"/></a>',
         errors.XmlXIncludeForbidden),
        (b'<a xmlns:xi="http://www.w3.org/2003/XInclude"><xi:include href="x"/></a>', errors.XmlXIncludeForbidden),
        (b"<a>" * 100 + b"</a>" * 100, errors.XmlTooDeep),
        (b"<a>" * 10_000 + b"</a>" * 10_000, errors.XmlTooDeep),
        (b'<?xml-stylesheet href="http://127.0.0.1:1/x.xsl"?><a/>', errors.XmlProcessingInstructionForbidden),
        (b"<a><?php echo 1; ?></a>", errors.XmlProcessingInstructionForbidden),
        ("<a>é</a>".encode("utf-16"), errors.XmlEncodingError),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>', errors.XmlEncodingError),
        (b"<a>\xc3\x28</a>", errors.XmlEncodingError),
        (b"<a><b>truncated", errors.XmlMalformed),
        (b"", errors.XmlMalformed),
        (b'{"json": true}', errors.XmlMalformed),
        (b"<a></b>", errors.XmlMalformed),
    ],
    ids=["xxe-file", "xxe-network", "billion-laughs", "quadratic-blowup", "external-dtd", "parameter-entity",
         "undefined-entity", "xinclude-2001", "xinclude-2003", "deep-100", "deep-10000", "pi-stylesheet",
         "pi-in-body", "utf16", "latin1", "invalid-utf8", "truncated", "empty", "json", "mismatched-tags"],
)
def test_hostile_xml_is_refused_with_a_specific_error(data, error):
    with pytest.raises(error) as info:
        parse_xml(data)
    assert str(info.value)  # one clear line for the operator
    assert info.value.code.startswith("XML_")


def test_size_is_bounded_before_parsing():
    huge_attribute = b'<a x="' + b"A" * (2 * 1024 * 1024) + b'"/>'
    with pytest.raises(errors.XmlTooLarge, match="over the limit"):
        parse_xml(huge_attribute, max_bytes=1024 * 1024)


def test_vietnamese_utf8_with_bom_and_declaration_is_accepted():
    doc = '\ufeff<?xml version="1.0" encoding="utf-8"?><t>Cấp giấy chứng nhận kiểm dịch</t>'.encode()
    assert parse_xml(doc).text == "Cấp giấy chứng nhận kiểm dịch"


def test_predefined_entities_and_comments_are_fine():
    root = parse_xml(b"<a><!-- note --><b>x &amp; y &lt; z</b></a>")
    assert root.findtext("b") == "x & y < z"


def test_depth_limit_is_configurable_and_exact():
    doc = b"<a>" * 10 + b"</a>" * 10  # root + 9 nested levels
    parse_xml(doc, max_depth=9)
    with pytest.raises(errors.XmlTooDeep):
        parse_xml(doc, max_depth=8)


def test_errors_are_fatal_not_retryable():
    with pytest.raises(errors.FatalError):
        parse_xml(XXE_FILE)
    assert not errors.XmlRejected("x").retryable
