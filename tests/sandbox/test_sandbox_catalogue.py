"""The synthetic procedure catalogue: deterministic, realistic, cheap at national scale."""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from lienthong.connectors.payload import element
from lienthong.connectors.services import SERVICES
from lienthong.sandbox.catalogue import CATALOGUE_EPOCH, Catalogue, agencies, seed_procedures, variant_name
from lxml import etree

NS = SERVICES["csdl_tthc"].namespace


@pytest.fixture(scope="module")
def csdl_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SERVICES["csdl_tthc"].xsd_path)))


def test_seed_data_is_the_real_ministry_list():
    seeds = seed_procedures()
    assert 55 <= len(seeds) <= 70
    names = [s.name for s in seeds]
    assert "Cấp giấy chứng nhận đăng ký tàu cá" in names
    assert {s.lead_agency for s in seeds} >= {"Tổng cục Thủy sản", "Cục Thú y", "Cục Trồng trọt"}
    assert {s.level for s in seeds} == {3, 4}
    assert all(unicodedata.is_normalized("NFC", n) for n in names)


def test_same_seed_same_catalogue_other_seed_other_catalogue():
    a, b, c = Catalogue(500, seed=3), Catalogue(500, seed=3), Catalogue(500, seed=4)
    code = a.summary(321).code
    assert a.record(code) == b.record(code)
    assert [a.summary(i) for i in range(500)] == [b.summary(i) for i in range(500)]
    assert [a.summary(i).updated for i in range(500)] != [c.summary(i).updated for i in range(500)]


def test_codes_are_unique_and_well_formed():
    cat = Catalogue(3000, seed=1)
    codes = cat.codes()
    assert len(set(codes)) == 3000
    assert all(re.fullmatch(r"[12]\.00[0-9]{4}", c) for c in codes)
    assert {c[0] for c in codes} == {"1", "2"}  # ministry and provincial procedures
    assert cat.index_of(codes[1234]) == 1234
    assert cat.index_of("1.999999") is None and cat.index_of("nonsense") is None
    # a code of the right shape but the wrong level digit is not ours
    wrong_level = ("2" if codes[0][0] == "1" else "1") + codes[0][1:]
    assert cat.index_of(wrong_level) is None


def test_records_are_schema_valid_and_realistic(csdl_schema):
    cat = Catalogue(400, seed=1)
    levels, modes, agency_codes = set(), set(), set()
    for i in range(0, 400, 7):
        record = cat.record(cat.summary(i).code)
        el = element(NS, "LayThuTucResult", {"ThuTuc": record})
        assert csdl_schema.validate(el), csdl_schema.error_log.last_error
        assert unicodedata.is_normalized("NFC", record["TENTTHC"])
        levels.update(record["CAPTHUCHIEN"])
        modes.add(record["MUCDO"])
        agency_codes.update(c["MADONVI"] for c in record["COQUANTHUCHIEN"])
        kenh = [w["KENH"] for w in record["CACHTHUCTHUCHIEN"]]
        assert kenh[0] == 1 and kenh == sorted(set(kenh))
        assert record["THANHPHANHOSO"][0]["GIAYTO"] and record["CANCUPHAPLY"]
    assert {"BO", "TINH"} <= levels
    assert {"TOAN_TRINH", "MOT_PHAN"} <= modes
    assert any(c.endswith(".G10") for c in agency_codes) and any(".H" in c for c in agency_codes)


def test_variants_read_like_real_procedure_names():
    assert variant_name("Cấp giấy chứng nhận đăng ký tàu cá", 0) == "Cấp lại giấy chứng nhận đăng ký tàu cá"
    assert variant_name("Thủ tục cấp giấy phép hoạt động thủy sản", 0) is None  # lower-case "cấp" after "Thủ tục"
    assert variant_name("Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu", 2) == (
        "Gia hạn giấy chứng nhận kiểm dịch động vật nhập khẩu")
    assert variant_name("Cấp Chứng chỉ, Giấy phép CITES xuất khẩu", 1).startswith("Cấp đổi chứng chỉ")
    assert variant_name("Cấp lại giấy chứng nhận đăng ký tàu cá", 0) is None  # no "Cấp lại lại"
    assert variant_name("Xin gia hạn visa cho người nước ngoài", 0) is None


def test_national_scale_is_cheap():
    started = time.perf_counter()
    cat = Catalogue(20_000, seed=9)
    total, page = cat.page(20, 1000)
    assert total == 20_000 and len(page) == 1000
    assert cat.record(page[-1].code)["MATTHC"] == page[-1].code
    since = CATALOGUE_EPOCH - timedelta(days=30)
    total_recent, recent = cat.page(1, 1000, since=since)
    assert 0 < total_recent < 20_000 and all(s.updated >= since for s in recent)
    assert time.perf_counter() - started < 1.5


def test_touch_makes_a_procedure_show_up_as_changed():
    cat = Catalogue(300, seed=1)
    code = cat.summary(42).code
    before = cat.record(code)
    after_epoch = CATALOGUE_EPOCH + timedelta(days=10)
    total, items = cat.page(1, 100, since=after_epoch)
    assert total == 0
    when = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    cat.touch(code, when)
    total, items = cat.page(1, 100, since=after_epoch)
    assert [s.code for s in items] == [code]
    after = cat.record(code)
    assert after["NGAYCAPNHAT"] == when
    assert after["TENTTHC"] == before["TENTTHC"] and after["MACOQUANCONGBO"] == before["MACOQUANCONGBO"]
    with pytest.raises(KeyError):
        cat.touch("1.999999", when)


def test_status_filter():
    cat = Catalogue(1000, seed=1)
    total_published, _ = cat.page(1, 10, status=1)
    total_abolished, abolished = cat.page(1, 10, status=2)
    assert total_published + total_abolished == 1000
    assert 0 < total_abolished < 100 and all(s.status == 2 for s in abolished)


def test_agency_and_field_catalogues(csdl_schema):
    cat = Catalogue(10)
    listed = agencies()
    assert len({a.code for a in listed}) == len(listed)
    assert {"BO", "TINH", "XA"} == {a.level for a in listed}
    for payload in (
        element(NS, "LayDanhMucCoQuanResult", {"CoQuan": [
            {"MADONVI": a.code, "TENDONVI": a.name, "CAPDONVI": a.level} for a in listed]}),
        element(NS, "LayDanhMucLinhVucResult", {"LinhVuc": [
            {"MALINHVUC": f.code, "TENLINHVUC": f.name, "MANGANH": f.sector} for f in cat.fields()]}),
    ):
        assert csdl_schema.validate(payload), csdl_schema.error_log.last_error


@pytest.mark.parametrize("size", [0, -1, 10**7, 2.5, True])
def test_impossible_sizes_are_refused(size):
    with pytest.raises(ValueError):
        Catalogue(size)


def test_revision_zero_is_pinned():
    """The catalogue as generated must not drift: schemas/samples and recorded test data rely on it."""
    cat = Catalogue(300, seed=1)
    summaries = [cat.summary(i) for i in range(300)]
    blob = json.dumps([[s.code, s.updated.isoformat(), s.status] for s in summaries]
                      + [cat.record(s.code) for s in summaries], ensure_ascii=False, default=str)
    assert hashlib.sha256(blob.encode()).hexdigest() == (
        "027d841f80e9ff26b05f4e9951140d029e9cebc2a14b516d0efd5fc522983fd0")


def test_listing_is_paged_by_code_and_filters_agree_with_summaries():
    cat = Catalogue(1500, seed=2)
    pages = [cat.page(p, 200)[1] for p in range(1, 9)]
    codes = [s.code for page in pages for s in page]
    assert len(codes) == 1500 and codes == sorted(codes) and len(set(codes)) == 1500
    # the fast filter (integer timestamps) selects exactly what the summaries' dates say
    since = CATALOGUE_EPOCH - timedelta(days=90, hours=5, seconds=17)
    total, matching = cat.page(1, 1000, since=since)
    expected = sorted(s.code for s in (cat.summary(i) for i in range(1500)) if s.updated >= since)
    _total, rest = cat.page(2, 1000, since=since)
    assert total == len(expected) and [s.code for s in matching + rest] == expected
    boundary = matching[0].updated
    assert matching[0].code in {s.code for s in cat.page(1, 1000, since=boundary)[1]}  # ≥, not >
    with pytest.raises(ValueError, match="timezone-aware"):
        cat.page(1, 10, since=datetime(2026, 1, 1))


def test_count_and_total_before_any_revision():
    cat = Catalogue(250, seed=1)
    assert (cat.revision, cat.count, cat.total, len(cat)) == (0, 250, 250, 250)
    assert len(cat.codes()) == 250 and not any(cat.summary(i).removed for i in range(250))
