"""Personal-data masking: names, ID numbers, phones, e-mails, and the same values in free text."""

from __future__ import annotations

import json
import unicodedata

from lienthong.hub.audit.masking import Masker, mask_email, mask_name, mask_number
from lienthong.hub.xmlsafe import parse_xml
from lxml import etree

NFD_NAME = unicodedata.normalize("NFD", "Nguyễn Văn An")
NFC_NAME = unicodedata.normalize("NFC", "Nguyễn Văn An")


def test_names_keep_initials_and_at_most_three_stars():
    assert mask_name("Nguyễn Văn An") == "N*** V** A*"
    assert mask_name("Trần Thị Bích Ngọc") == "T*** T** B*** N***"
    assert mask_name("  Lê   Ý ") == "L* *"  # a one-letter word is hidden entirely


def test_decomposed_diacritics_mask_like_precomposed_ones():
    assert NFD_NAME != NFC_NAME
    assert mask_name(NFD_NAME) == mask_name(NFC_NAME) == "N*** V** A*"


def test_numbers_keep_two_first_and_two_last_digits_and_their_separators():
    assert mask_number("0912345678") == "09******78"
    assert mask_number("0243 823 1456") == "02** *** **56"
    assert mask_number("001203004567") == "00********67"
    assert mask_number("12345") == "*****"  # too short to keep anything


def test_email_keeps_the_first_letter_and_the_domain():
    assert mask_email("nguyenvanan@example.vn") == "n***@example.vn"
    assert mask_email("not-an-address") == "no*-**-*****ss"


def test_values_learnt_from_fields_are_masked_in_free_text():
    masker = Masker()
    assert masker.field("ChuHoSo", NFD_NAME) == "N*** V** A*"
    text = f"Ông {NFC_NAME} (Nguyễn Văn Anh là người khác) nộp hồ sơ"
    assert masker.text(text) == "Ông N*** V** A* (Nguyễn Văn Anh là người khác) nộp hồ sơ"


def test_emails_phones_and_identity_numbers_in_free_text_are_masked_without_a_field():
    masker = Masker()
    out = masker.text("Liên hệ 0987 654 321, +84912345678 hoặc an.nguyen@mae.gov.vn; CCCD 001203004567, CMND 123456789")
    assert out == "Liên hệ 09** *** *21, +84*******78 hoặc a***@mae.gov.vn; CCCD 00********67, CMND 12*****89"


def test_codes_and_dates_in_messages_are_not_taken_for_personal_data():
    masker = Masker()
    text = "Hồ sơ G09.20-20260609-0092637, thủ tục 1.001012, nộp 20260609081530, phí 1200000"
    assert masker.text(text) == text


def test_xml_view_masks_fields_and_repeats_but_not_officials_or_signatures():
    raw = f"""<dvc:HoSo xmlns:dvc="urn:lienthong:dvc:1" xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
      <dvc:ChuHoSo>{NFC_NAME}</dvc:ChuHoSo><dvc:SoGiayToChuHoSo>001203004567</dvc:SoGiayToChuHoSo>
      <dvc:Email>nguyenvanan@example.vn</dvc:Email><dvc:SoDienThoai>0912345678</dvc:SoDienThoai>
      <dvc:DinhDanhCHS><dvc:SoDinhDanh>001203004567</dvc:SoDinhDanh></dvc:DinhDanhCHS>
      <dvc:TrichYeuHoSo>{NFC_NAME} đề nghị cấp phép</dvc:TrichYeuHoSo>
      <dvc:NguoiXuLy>Lê Văn Cường</dvc:NguoiXuLy>
      <ds:Signature><ds:SignatureValue>AB0912345678CD</ds:SignatureValue></ds:Signature>
    </dvc:HoSo>""".encode()
    root = parse_xml(raw)
    shown = etree.tostring(Masker().xml(root), encoding="unicode")
    for secret in (NFC_NAME, "001203004567", "nguyenvanan@", "0912345678</dvc:SoDien"):
        assert secret not in shown
    assert "<dvc:ChuHoSo>N*** V** A*</dvc:ChuHoSo>" in shown
    assert "<dvc:TrichYeuHoSo>N*** V** A* đề nghị cấp phép</dvc:TrichYeuHoSo>" in shown
    assert "<dvc:SoDinhDanh>00********67</dvc:SoDinhDanh>" in shown
    assert "Lê Văn Cường" in shown  # an official acting in office
    assert "AB0912345678CD" in shown  # signature bytes are not free text
    assert NFC_NAME in etree.tostring(root, encoding="unicode")  # the parsed original is untouched


def test_json_bodies_are_masked_by_key_and_in_text():
    body = json.dumps({"MaHoSo": "H-1", "ChuHoSo": NFC_NAME, "note": f"gọi {NFC_NAME} 0912345678"},
                      ensure_ascii=False).encode()
    shown = json.loads(Masker().body_text(body))
    assert shown == {"MaHoSo": "H-1", "ChuHoSo": "N*** V** A*", "note": "gọi N*** V** A* 09******78"}


def test_disabled_masker_returns_everything_unchanged():
    masker = Masker(enabled=False)
    assert masker.field("ChuHoSo", NFC_NAME) == NFC_NAME
    assert masker.text("0912345678") == "0912345678"
    assert NFC_NAME in masker.body_text(f"<a><ChuHoSo>{NFC_NAME}</ChuHoSo></a>".encode())


def test_unparseable_bodies_are_masked_as_text():
    assert Masker().body_text(b"<broken 0912345678") == "<broken 09******78"


def test_long_file_chunks_are_summarised_in_the_readable_view():
    chunk = "QUJD" * 1000
    shown = Masker(enabled=False).body_text(f'<t:TaiPhanTepKetQua xmlns:t="urn:x"><t:DuLieu>{chunk}</t:DuLieu>'
                                            f"</t:TaiPhanTepKetQua>".encode())
    assert chunk not in shown and "[4,000 characters of base64 not shown; --raw gives the exact bytes]" in shown
