"""National LayThuTuc record -> canonical Procedure -> document, without losing anything."""

from __future__ import annotations

import copy
import hashlib
import json
import unicodedata
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from lienthong.connectors.csdl_tthc import thutuc_record
from lienthong.connectors.services import CSDL_TTHC, schemas_dir
from lienthong.connectors.soap import answer_fields
from lienthong.hub.errors import FatalError
from lienthong.mappings.errors import MalformedValue, MappingError, MissingField, UnknownCode
from lienthong.mappings.procedure import (
    Agency,
    Field,
    LegalBasis,
    Procedure,
    Result,
    canonical_json,
    content_hash,
    from_national,
)
from lxml import etree


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# --------------------------------------------------------------------------------------------
# realistic records
# --------------------------------------------------------------------------------------------
def test_sample_reply_maps_field_by_field():
    """The signed sample reply shipped in schemas/samples, read exactly as the connector reads it."""
    path = schemas_dir() / "samples" / "csdl_tthc.LayThuTuc.response.xml"
    payload = etree.parse(str(path)).getroot().find(f".//{{{CSDL_TTHC.namespace}}}LayThuTucResult")
    p = from_national(thutuc_record(answer_fields(CSDL_TTHC, "LayThuTuc", payload)))

    assert (p.code, p.publishing_agency, p.status, p.published) == ("1.001011", "000.00.00.G10", 1, True)
    assert p.name == "Cấp giấy chứng nhận kiểm dịch động vật, sản phẩm động vật xuất khẩu"
    assert p.levels == ("BO",)
    assert p.fields == (Field("G10-TY", "Thú y"),)
    assert p.agencies == (Agency("000.00.04.G10", "Cục Thú y"),)
    assert len(p.steps) == 4 and p.steps[0].startswith("Bước 1: Tổ chức, cá nhân nộp hồ sơ đến Cục Thú y")
    assert [(c.kenh, c.label) for c in p.channels] == [(1, "Trực tiếp"), (2, "Trực tuyến"), (3, "Bưu chính công ích")]
    time = p.channels[1].times[0]
    assert (time.amount, time.unit) == (Decimal(20), "Ngày làm việc")
    assert time.description == "20 ngày làm việc kể từ ngày nhận đủ hồ sơ hợp lệ"
    fee = time.fees[0]
    assert (fee.code, fee.amount, fee.unit) == ("PLP-1.001011-1", Decimal(100000), "Đồng")
    assert fee.description == "Phí thẩm định theo quy định của Bộ Tài chính"
    (component,) = p.components
    assert component.group is None
    assert [d.code for d in component.documents] == ["GT-1.001011-1", "GT-1.001011-2", "GT-1.001011-3"]
    assert (component.documents[0].form_name, component.documents[0].url) == (None, None)
    assert component.documents[1].form_name == "Mẫu số 02"
    assert component.documents[1].url == "https://tthc.sandbox.lienthong.invalid/mau-don/1.001011/2.docx"
    assert p.subjects[1] == "Cơ quan nhà nước"
    assert p.results == (Result("KQ-1.001011-1", "Giấy chứng nhận"),)
    assert p.legal_bases[1] == LegalBasis("35/2016/NĐ-CP", "Nghị định quy định chi tiết một số điều của Luật Thú y")
    assert p.requirements.startswith("Cơ sở phải có đủ điều kiện")
    assert (p.online_level, p.online_level_raw) == ("mot_phan", "MUC_DO_3")  # legacy level 3 = một phần
    assert p.updated_at == datetime(2025, 1, 14, 21, 39, 31, tzinfo=UTC) and p.updated_at.utcoffset() == timedelta(0)
    assert p.extra == {}


def test_sandbox_records_of_every_kind(national, picked):
    expected_level = {"TOAN_TRINH": "toan_trinh", "MUC_DO_4": "toan_trinh", "MOT_PHAN": "mot_phan",
                      "MUC_DO_3": "mot_phan", "THONG_TIN": "thong_tin"}
    for mucdo, level in expected_level.items():
        p = from_national(national(picked[f"mucdo_{mucdo}"]))
        assert (p.online_level, p.online_level_raw) == (level, mucdo)

    provincial = from_national(national(picked["provincial_with_commune"]))
    assert provincial.levels == ("TINH", "XA") and provincial.code.startswith("2.")
    assert provincial.agencies[0].name.startswith("Sở Nông nghiệp và Môi trường")

    abolished = from_national(national(picked["abolished"]))
    assert (abolished.status, abolished.published) == (2, False)

    free = from_national(national(picked["no_fee"]))
    assert all(t.fees == () for c in free.channels for t in c.times)
    assert from_national(national(picked["no_requirement"])).requirements is None


def test_python_valued_record_maps_like_the_xml_one(catalogue, national, picked):
    """The sandbox's own dict (ints, Decimals, datetimes, Nones) gives the same procedure as its XML."""
    for code in picked.values():
        assert from_national(catalogue.record(code)) == from_national(national(code))


def test_unlisted_status_is_kept_raw_and_not_published(record):
    record["TRANGTHAI"] = "7"  # the XSD lets the catalogue add codes up to 9
    p = from_national(record)
    assert (p.status, p.published) == (7, False)


def test_time_without_offset_is_vietnamese_local_time(record):
    record["NGAYCAPNHAT"] = "2025-01-15T04:39:31"
    assert from_national(record).updated_at == datetime(2025, 1, 14, 21, 39, 31, tzinfo=UTC)


def test_a_single_item_or_an_empty_element_reads_like_a_list(record):
    record["LINHVUCTHUCHIEN"] = record["LINHVUCTHUCHIEN"][0]  # not wrapped in a list
    record["THANHPHANHOSO"].append("")  # <THANHPHANHOSO/> with no documents
    p = from_national(record)
    assert len(p.fields) == 1
    assert p.components[-1].documents == () and p.components[-1].group is None


# --------------------------------------------------------------------------------------------
# Unicode
# --------------------------------------------------------------------------------------------
def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_decomposed_input_comes_out_composed_with_diacritics_intact(record):
    name = "Cấp giấy chứng nhận đăng ký tàu cá"
    record["TENTTHC"] = f"  {nfd(name)}\n\t"
    record["LINHVUCTHUCHIEN"][0]["TENLINHVUC"] = nfd("Thủy sản")
    record["DOITUONGTHUCHIEN"] = [nfd(" Hợp tác xã ")]
    fee = record["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"][0]
    fee["DONVI"], fee["MOTA"] = nfd("Đồng/lần"), nfd("Lệ phí cấp giấy")
    record["GHICHU"] = {"NOIDUNG": nfd("Ghi chú thêm ")}  # a field the model does not name
    assert record["TENTTHC"].strip() != name  # the input really is decomposed

    p = from_national(record)
    assert p.name == name and len(p.name) == len(name)
    assert p.fields[0].name == "Thủy sản" and p.subjects == ("Hợp tác xã",)
    assert (p.channels[0].times[0].fees[0].unit, p.channels[0].times[0].fees[0].description) == (
        "Đồng/lần", "Lệ phí cấp giấy")
    assert p.extra["GHICHU"] == {"NOIDUNG": "Ghi chú thêm"}
    doc = p.to_document()
    assert all(unicodedata.is_normalized("NFC", s) for s in _strings(doc))
    assert "ấ" in doc["name"] and "ủ" in doc["fields"][0]["name"]  # never folded to ASCII


def test_composed_and_decomposed_inputs_hash_the_same(record):
    decomposed = copy.deepcopy(record)
    decomposed["TENTTHC"] = nfd(record["TENTTHC"])
    decomposed["CANCUPHAPLY"][0]["TENVANBAN"] = nfd(record["CANCUPHAPLY"][0]["TENVANBAN"])
    assert content_hash(from_national(decomposed)) == content_hash(from_national(record))


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
def _set(path: str, value: Any):
    """A mutation setting (or, with value ..., deleting) one field at a dotted/indexed path."""
    def apply(record: dict[str, Any]) -> None:
        *parents, last = path.replace("]", "").replace("[", ".").split(".")
        target: Any = record
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return apply


FEE = "CACHTHUCTHUCHIEN[1].THOIGIAN[0].PHILEPHI[0]"
ERRORS = [
    # (mutation, error type, field named, text in the message)
    (_set("MATTHC", ...), MissingField, "MATTHC", "missing"),
    (_set("MATTHC", "   "), MissingField, "MATTHC", "missing"),
    (_set("TENTTHC", ...), MissingField, "TENTTHC", "missing"),
    (_set("TENTTHC", " \t\n"), MissingField, "TENTTHC", "blank"),
    (_set("MATTHC", "1.5129"), MalformedValue, "MATTHC", "'1.5129' is not a well-formed procedure code"),
    (_set("MATTHC", "1.005129 OR 1=1"), MalformedValue, "MATTHC", "procedure code"),
    (_set("MACOQUANCONGBO", "Bộ Nông nghiệp"), MalformedValue, "MACOQUANCONGBO", "agency code"),
    (_set("COQUANTHUCHIEN[0].MADONVI", "000.00.04.g10"), MalformedValue, "COQUANTHUCHIEN[0].MADONVI", "agency code"),
    (_set("LINHVUCTHUCHIEN[0].MALINHVUC", "Thủy sản"), MalformedValue, "LINHVUCTHUCHIEN[0].MALINHVUC", "field code"),
    (_set("LINHVUCTHUCHIEN", "Thủy sản"), MalformedValue, "LINHVUCTHUCHIEN[0]", "expected a record"),
    (_set("KETQUATHUCHIEN[0].TENKETQUA", ...), MissingField, "KETQUATHUCHIEN[0].TENKETQUA", "missing"),
    (_set("TRANGTHAI", "công bố"), MalformedValue, "TRANGTHAI", "not a non-negative integer"),
    (_set("MUCDO", "MUC_DO_5"), UnknownCode, "MUCDO", "unknown code 'MUC_DO_5'"),
    (_set("MUCDO", "toàn trình"), UnknownCode, "MUCDO", "online_level"),
    (_set("CAPTHUCHIEN", ["BO", "QUAN"]), UnknownCode, "CAPTHUCHIEN[1]", "unknown code 'QUAN'"),
    (_set("CACHTHUCTHUCHIEN[0].KENH", "4"), UnknownCode, "CACHTHUCTHUCHIEN[0].KENH", "channel"),
    (_set("CACHTHUCTHUCHIEN[0].KENH", "hai"), MalformedValue, "CACHTHUCTHUCHIEN[0].KENH", "not a non-negative integer"),
    (_set(f"{FEE}.SOTIEN", "một trăm nghìn"), MalformedValue, f"{FEE}.SOTIEN", "is not a number"),
    (_set(f"{FEE}.SOTIEN", "-5000"), MalformedValue, f"{FEE}.SOTIEN", "zero or more"),
    (_set(f"{FEE}.SOTIEN", "NaN"), MalformedValue, f"{FEE}.SOTIEN", "finite"),
    (_set(f"{FEE}.SOTIEN", ...), MissingField, f"{FEE}.SOTIEN", "missing"),
    (_set("CACHTHUCTHUCHIEN[2].THOIGIAN[0].THOIGIANGIAIQUYET", "15 ngày"), MalformedValue,
     "CACHTHUCTHUCHIEN[2].THOIGIAN[0].THOIGIANGIAIQUYET", "'15 ngày' is not a number"),
    (_set("NGAYCAPNHAT", "15/01/2025"), MalformedValue, "NGAYCAPNHAT", "ISO 8601"),
    (_set("NGAYCAPNHAT", ...), MissingField, "NGAYCAPNHAT", "missing"),
]


@pytest.mark.parametrize(("mutate", "error", "field", "text"), ERRORS,
                         ids=[f"{e[2]}-{e[1].__name__}-{i}" for i, e in enumerate(ERRORS)])
def test_each_mapping_error_names_the_field(record, mutate, error, field, text):
    code = record["MATTHC"]
    mutate(record)
    with pytest.raises(error) as caught:
        from_national(record)
    exc = caught.value
    assert isinstance(exc, MappingError) and isinstance(exc, FatalError) and not exc.retryable
    assert exc.field == field
    assert f"{field}: " in str(exc) and text in str(exc)
    if field != "MATTHC":  # once the code is known, the message says which procedure
        assert exc.procedure == code and f"procedure {code}: " in str(exc)
    assert exc.code.startswith("MAPPING_")


def test_a_record_that_is_not_a_mapping_is_refused():
    with pytest.raises(MalformedValue, match="expected a mapping of national fields"):
        from_national(["MATTHC", "1.001011"])


# --------------------------------------------------------------------------------------------
# round trip without loss
# --------------------------------------------------------------------------------------------
def _canon(value: Any) -> str | None:
    """A leaf value in one comparable spelling: NFC text, canonical decimal, UTC time."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    text = unicodedata.normalize("NFC", str(value)).strip()
    if not text:
        return None  # an empty element carries no value
    try:
        number = Decimal(text)
        if number.is_finite():
            return "0" if number == 0 else format(number.normalize(), "f")
    except InvalidOperation:
        pass
    if text[:4].isdigit() and "T" in text:
        try:
            return datetime.fromisoformat(text).astimezone(UTC).isoformat()
        except ValueError:
            pass
    return text


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif (c := _canon(value)) is not None:
        yield c


def assert_lossless(national: dict[str, Any], doc: dict[str, Any]) -> None:
    """Every value of the national record (counted with repeats) is somewhere in the document."""
    lost = Counter(_leaves(national)) - Counter(_leaves(doc))
    assert not lost, f"values of the national record missing from the document: {dict(lost)}"


def test_round_trip_keeps_every_value_of_many_records(catalogue, national):
    for code in catalogue.codes()[::8]:
        record = national(code)
        p = from_national(record)
        doc = p.to_document()
        assert json.loads(json.dumps(doc)) == doc  # JSON-able, no float or datetime objects
        assert_lossless(record, doc)
        again = Procedure.from_document(doc)
        assert again == p and again.to_document() == doc


def test_unknown_national_fields_are_kept_at_every_level(record):
    record["MACHUONGTRINH"] = "CT-2026"  # a new top-level field
    record["THONGTINBOSUNG"] = {"GHICHU": "Áp dụng từ 01/7/2026", "DANHSACH": ["một", "hai"]}
    fee = record["CACHTHUCTHUCHIEN"][1]["THOIGIAN"][0]["PHILEPHI"][0]
    fee["HINHTHUCTHU"] = "Thu qua Cổng Dịch vụ công"  # a new field inside a fee
    record["THANHPHANHOSO"][0]["TENTHANHPHANHOSO"] = "Trường hợp cấp mới"
    record["THANHPHANHOSO"][0]["GIAYTO"][0]["SOBAN"] = "01 bản chính"
    record["TRINHTUTHUCHIEN"][0]["THOIHAN"] = "1 ngày"  # a step carrying more than its text

    p = from_national(record)
    doc = p.to_document()
    assert doc["extra"]["MACHUONGTRINH"] == "CT-2026"
    assert doc["extra"]["THONGTINBOSUNG"] == {"GHICHU": "Áp dụng từ 01/7/2026", "DANHSACH": ["một", "hai"]}
    assert doc["channels"][1]["times"][0]["fees"][0]["extra"] == {"HINHTHUCTHU": "Thu qua Cổng Dịch vụ công"}
    assert doc["components"][0]["group"] == "Trường hợp cấp mới"
    assert doc["components"][0]["documents"][0]["extra"] == {"SOBAN": "01 bản chính"}
    assert doc["extra"]["TRINHTUTHUCHIEN"][0] == record["TRINHTUTHUCHIEN"][0]  # whole list kept as received
    assert "extra" not in doc["channels"][0]["times"][0]["fees"][0]  # only where there is something
    assert_lossless(record, doc)
    assert Procedure.from_document(json.loads(json.dumps(doc))) == p

    plain = copy.deepcopy(record)
    del plain["MACHUONGTRINH"]
    assert content_hash(from_national(plain)) != content_hash(p)  # a new field is a change


def test_document_key_order_is_the_model_order(record):
    doc = from_national(record).to_document()
    assert list(doc) == ["code", "name", "publishing_agency", "status", "published", "levels", "fields", "agencies",
                         "steps", "channels", "components", "subjects", "results", "legal_bases", "requirements",
                         "online_level", "online_level_raw", "updated_at", "extra"]
    assert list(doc["channels"][0]) == ["kenh", "label", "times"]
    assert list(doc["channels"][0]["times"][0]["fees"][0]) == ["code", "amount", "unit", "description"]
    assert doc["updated_at"].endswith("+00:00")


def test_amounts_are_exact_decimal_text(record):
    fee = record["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"][0]
    fee["SOTIEN"] = "1500000.50"
    record["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["THOIGIANGIAIQUYET"] = "0.5"
    doc = from_national(record).to_document()
    assert doc["channels"][0]["times"][0]["fees"][0]["amount"] == "1500000.5"
    assert doc["channels"][0]["times"][0]["amount"] == "0.5"


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d.pop("online_level"), "missing key 'online_level'"),
    (lambda d: d["channels"][0]["times"][0].update(amount="mười"), "InvalidOperation"),
    (lambda d: d.update(updated_at="2025-01-15T04:39:31"), "no UTC offset"),
])
def test_from_document_refuses_a_document_of_another_shape(record, change, problem):
    doc = from_national(record).to_document()
    change(doc)
    with pytest.raises(MalformedValue) as caught:
        Procedure.from_document(doc)
    assert problem in str(caught.value) and record["MATTHC"] in str(caught.value)


# --------------------------------------------------------------------------------------------
# content hash
# --------------------------------------------------------------------------------------------
def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_content_hash_is_sha256_of_canonical_json_without_updated_at(record):
    p = from_national(record)
    doc = p.to_document()
    del doc["updated_at"]
    expected = hashlib.sha256(
        json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()
    assert content_hash(p) == expected == content_hash(p.to_document())
    assert canonical_json(doc) == json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert "Đồng" in canonical_json(doc)  # real UTF-8, not \u escapes


def test_content_hash_ignores_key_order(record):
    p = from_national(record)
    reordered = from_national(_reversed_keys(record))
    assert list(_reversed_keys(record)) != list(record)
    assert reordered == p and content_hash(reordered) == content_hash(p)
    assert content_hash(_reversed_keys(p.to_document())) == content_hash(p)


def test_republication_with_the_same_content_is_unchanged(record):
    before = from_national(record)
    record["NGAYCAPNHAT"] = "2026-03-01T08:00:00+07:00"
    after = from_national(record)
    assert after.updated_at != before.updated_at
    assert content_hash(after) == content_hash(before)


def test_any_content_change_changes_the_hash(record):
    base = content_hash(from_national(record))
    record["CACHTHUCTHUCHIEN"][1]["THOIGIAN"][0]["PHILEPHI"][0]["SOTIEN"] = "50000"
    assert content_hash(from_national(record)) != base


def test_the_lossless_check_notices_a_dropped_value(record):
    """Guard for the guard: a document missing one fee description must fail assert_lossless."""
    doc = from_national(record).to_document()
    del doc["channels"][2]["times"][0]["fees"][0]["description"]
    with pytest.raises(AssertionError, match="missing from the document"):
        assert_lossless(record, doc)
