"""Source mapping files: validated on load (errors name file and key), and applied to one-stop rows.

Rows follow the sandbox one-stop database contract (tables ``hoso`` and ``hoso_buoc_xu_ly``,
local codes, local times 'YYYY-MM-DD HH:MM:SS' in Vietnam time). The mapped records must be what
the portal's schema accepts, so the realistic ones are validated against schemas/dvc_portal.xsd.
"""

from __future__ import annotations

import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from lienthong.connectors.dvc_portal import HOSO_FIELDS, QUATRINH_FIELDS
from lienthong.connectors.payload import element
from lienthong.connectors.services import DVC_PORTAL
from lienthong.hub.validation import validate
from lienthong.mappings.dossier import (
    DOSSIER,
    HOSO_SPEC,
    NORMALISED,
    OMITTED,
    QUATRINH_SPEC,
    STEP,
    TRUNCATED,
    DossierMapping,
    MappingFileError,
    TextTooLong,
    UnknownProcedure,
    shipped_mappings,
)
from lienthong.mappings.errors import MalformedValue, MappingError, MissingField, UnknownCode
from lienthong.mappings.tables import ALL_TABLE_NAMES, DOSSIER_STATUS, SUBJECT_TYPE, load_table

SHIPPED = Path(__file__).parents[2] / "mappings" / "sources" / "onestop_sandbox.yaml"
CODE = "000.00.10.G10-20261123-0000123"


def dossier_row(**changes: Any) -> dict[str, Any]:
    row = {
        "so_ho_so": CODE, "ma_thu_tuc": "1.001000", "ten_thu_tuc": "Cấp giấy chứng nhận đủ điều kiện buôn bán thuốc thú y",
        "ma_linh_vuc": "G10-TY", "ten_linh_vuc": "Thú y", "kenh_nop": "TRUC_TUYEN",
        "chu_ho_so": "Nguyễn Thị Hồng Nhung", "so_giay_to": "001190012345", "loai_chu_ho_so": "CONG_DAN",
        "email": "nhung.nguyen@example.vn", "dien_thoai": "0912 345 678",
        "trich_yeu": "Đề nghị cấp giấy chứng nhận cho cửa hàng tại xã Tân Lập, tỉnh Phú Thọ",
        "ngay_nop": "2026-11-23 08:15:30", "ngay_tiep_nhan": "2026-11-23 09:02:00", "ngay_hen_tra": "2026-12-07 17:00:00",
        "ngay_ket_thuc_xu_ly": None, "ngay_tra": None, "trang_thai": "DANG_XU_LY",
        "don_vi_xu_ly": "Cục Thú y", "co_quan": "000.00.10.G10",
        "cap_nhat_luc": datetime(2026, 11, 23, 2, 3, 4), "phien_ban": 3,
    }
    row.update(changes)
    return row


def step_row(**changes: Any) -> dict[str, Any]:
    row = {
        "id": 41, "so_ho_so": CODE, "nguoi_xu_ly": "Trần Văn Bình", "chuc_danh": "Chuyên viên",
        "phong_ban": "Phòng Quản lý thuốc thú y", "noi_dung": "Chuyển hồ sơ cho phòng chuyên môn thẩm định",
        "trang_thai": "DANG_XU_LY", "thoi_diem": "2026-11-23 09:02:00", "ngay_bat_dau": "2026-11-23 09:02:00",
        "han_xu_ly": "2026-12-04 17:00:00", "cap_nhat_luc": datetime(2026, 11, 23, 2, 2, 0),
    }
    row.update(changes)
    return row


@pytest.fixture(scope="module")
def mapping() -> DossierMapping:
    return DossierMapping.shipped("onestop_sandbox")


def sandbox_doc() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "onestop_sandbox.yaml") -> Path:
    path = tmp_path / name
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def variant(tmp_path: Path, change) -> DossierMapping:
    doc = sandbox_doc()
    change(doc)
    return DossierMapping.load(write(tmp_path, doc))


# --------------------------------------------------------------------------------------------
# the shipped mapping and tables
# --------------------------------------------------------------------------------------------
def test_shipped_mapping_loads_and_describes_the_sandbox_database(mapping):
    assert shipped_mappings() == ("onestop_sandbox",)
    assert (mapping.name, mapping.kind, mapping.time_zone.key) == ("onestop_sandbox", "sql", "Asia/Ho_Chi_Minh")
    assert mapping.file == "onestop_sandbox.yaml" and DossierMapping.load(SHIPPED).dossiers.columns() == mapping.dossiers.columns()
    d, s = mapping.dossiers, mapping.steps
    assert (d.table, d.key, d.version, d.cursor, d.tiebreak) == ("hoso", "so_ho_so", "phien_ban", "cap_nhat_luc", "so_ho_so")
    assert (s.table, s.key, s.cursor, s.tiebreak, s.changed_at) == ("hoso_buoc_xu_ly", "id", "id", None, "cap_nhat_luc")
    assert set(d.columns()) == {
        "so_ho_so", "ma_thu_tuc", "ten_thu_tuc", "ma_linh_vuc", "ten_linh_vuc", "kenh_nop", "chu_ho_so", "so_giay_to",
        "loai_chu_ho_so", "email", "dien_thoai", "trich_yeu", "ngay_nop", "ngay_tiep_nhan", "ngay_hen_tra",
        "ngay_ket_thuc_xu_ly", "ngay_tra", "trang_thai", "don_vi_xu_ly", "co_quan", "cap_nhat_luc", "phien_ban"}
    assert dict(mapping.statuses) == {"MOI": 1, "DA_TIEP_NHAN": 2, "TU_CHOI": 3, "DANG_XU_LY": 4, "CHO_BO_SUNG": 5,
                                      "CHO_NOP_PHI": 6, "CONG_DAN_RUT": 7, "DUNG_XU_LY": 8, "DA_XU_LY": 9, "DA_TRA_KQ": 10}
    assert dict(mapping.channels) == {"TRUC_TIEP": 1, "TRUC_TUYEN": 2, "BUU_CHINH": 3}
    assert dict(mapping.subject_types) == {"CONG_DAN": 1, "DOANH_NGHIEP": 2, "CO_QUAN": 3, "TO_CHUC": 4}
    assert (mapping.files.dossiers, mapping.files.steps, mapping.files.xml_root) == ("hoso", "buoc_xu_ly", "xuat_du_lieu")


def test_portal_field_specs_follow_the_connector_order():
    assert tuple(HOSO_SPEC) == HOSO_FIELDS
    assert tuple(QUATRINH_SPEC) == QUATRINH_FIELDS


def test_dossier_tables_ship_with_the_others():
    status = load_table(DOSSIER_STATUS)
    assert status.codes() == tuple(range(1, 11)) and status.fields == ("TrangThaiHoSo", "TrangThai")
    assert {c for c in status.codes() if status.entry(c)["terminal"]} == {3, 7, 8, 10}
    assert status.label(5) == "Yêu cầu bổ sung giấy tờ"
    subject = load_table(SUBJECT_TYPE)
    assert {c: subject.entry(c)["confirmed"] for c in subject.codes()} == {1: True, 2: True, 3: False, 4: False}
    assert {DOSSIER_STATUS, SUBJECT_TYPE} <= set(ALL_TABLE_NAMES)


# --------------------------------------------------------------------------------------------
# realistic rows
# --------------------------------------------------------------------------------------------
def test_a_dossier_row_becomes_the_portal_record(mapping):
    change = mapping.map_dossier(dossier_row())
    assert (change.kind, change.source_key, change.ma_ho_so, change.status, change.version) == (
        DOSSIER, f"hoso:{CODE}:3", CODE, 4, 3)
    assert change.record == {
        "MaHoSo": CODE, "MaTTHC": "1.001000", "TenTTHC": "Cấp giấy chứng nhận đủ điều kiện buôn bán thuốc thú y",
        "MaLinhVuc": "G10-TY", "TenLinhVuc": "Thú y", "KenhThucHien": 2, "ChuHoSo": "Nguyễn Thị Hồng Nhung",
        "SoGiayToChuHoSo": "001190012345", "LoaiDoiTuong": 1, "Email": "nhung.nguyen@example.vn",
        "SoDienThoai": "0912 345 678",
        "TrichYeuHoSo": "Đề nghị cấp giấy chứng nhận cho cửa hàng tại xã Tân Lập, tỉnh Phú Thọ",
        "NgayNopHoSo": "20261123081530", "NgayTiepNhan": "20261123090200", "NgayHenTra": "20261207170000",
        "TrangThaiHoSo": 4, "DonViXuLy": "Cục Thú y",
    }
    assert list(change.record) == [f for f in HOSO_FIELDS if f in change.record]  # schema order
    assert change.adjustments == () and dict(change.extra) == {"co_quan": "000.00.10.G10"}
    assert change.source_changed_at == datetime(2026, 11, 23, 2, 3, 4, tzinfo=UTC) and change.payload is change.record
    # what the portal's schema accepts, as DvcPortalClient.sync_dossiers sends it
    validate(element(DVC_PORTAL.namespace, "DongBoHoSoMC", {"isUpdating": False, "HoSo": [change.record]}, prefix="dvc"), "dvc_portal")


def test_a_finished_dossier_carries_its_end_dates(mapping):
    change = mapping.map_dossier(dossier_row(trang_thai="DA_TRA_KQ", ngay_ket_thuc_xu_ly="2026-12-03 16:45:00",
                                             ngay_tra="2026-12-04 08:00:00", kenh_nop="BUU_CHINH",
                                             loai_chu_ho_so="DOANH_NGHIEP", phien_ban="7"))
    assert (change.status, change.version, change.source_key) == (10, 7, f"hoso:{CODE}:7")
    assert change.record["NgayKetThucXuLy"] == "20261203164500" and change.record["NgayTra"] == "20261204080000"
    assert change.record["KenhThucHien"] == 3 and change.record["LoaiDoiTuong"] == 2


def test_a_step_row_becomes_a_processing_record(mapping):
    change = mapping.map_step(step_row())
    assert (change.kind, change.source_key, change.ma_ho_so, change.status, change.version) == (STEP, "buoc:41", CODE, 4, None)
    assert change.record == {
        "MaHoSo": CODE, "NguoiXuLy": "Trần Văn Bình", "ChucDanh": "Chuyên viên", "ThoiDiemXuLy": "20261123090200",
        "PhongBanXuLy": "Phòng Quản lý thuốc thú y", "NoiDungXuLy": "Chuyển hồ sơ cho phòng chuyên môn thẩm định",
        "TrangThai": 4, "NgayBatDau": "20261123090200", "NgayKetThucTheoQuyDinh": "20261204170000",
    }
    validate(element(DVC_PORTAL.namespace, "CapNhatTienDoHoSoMC", {"QuaTrinhXuLy": [change.record]}, prefix="dvc"), "dvc_portal")
    assert change.source_changed_at == datetime(2026, 11, 23, 2, 2, tzinfo=UTC)
    # optional fields left blank are simply absent; ids from CSV come as text
    bare = mapping.map_step(step_row(id="42", chuc_danh=None, phong_ban="  ", ngay_bat_dau="", han_xu_ly=None))
    assert bare.source_key == "buoc:42" and set(bare.record) == {"MaHoSo", "NguoiXuLy", "ThoiDiemXuLy", "NoiDungXuLy", "TrangThai"}


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-23 02:03:04.500000", datetime(2026, 11, 23, 2, 3, 4, 500000, tzinfo=UTC)),  # SQLite's text
    ("2026-11-23T02:03:04Z", datetime(2026, 11, 23, 2, 3, 4, tzinfo=UTC)),  # an export's
    (datetime(2026, 11, 23, 9, 3, 4, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")), datetime(2026, 11, 23, 2, 3, 4, tzinfo=UTC)),
    ("không rõ", None), (None, None),
])
def test_the_source_change_time_is_kept_as_utc(mapping, value, expected):
    assert mapping.map_dossier(dossier_row(cap_nhat_luc=value)).source_changed_at == expected
    assert mapping.map_step(step_row(cap_nhat_luc=value)).source_changed_at == expected


def test_every_local_status_reaches_its_national_code(mapping):
    for local, national in mapping.statuses.items():
        assert mapping.map_dossier(dossier_row(trang_thai=local)).status == national
        assert mapping.map_step(step_row(trang_thai=f"  {local} ")).status == national


# --------------------------------------------------------------------------------------------
# dates and time zones
# --------------------------------------------------------------------------------------------
def test_local_times_are_sent_in_vietnam_time(tmp_path, mapping):
    row = dossier_row(ngay_nop="2026-11-23 20:30:00", ngay_tiep_nhan=datetime(2026, 11, 23, 21, 0, 5),
                      ngay_hen_tra=datetime(2026, 11, 30, 1, 0, tzinfo=UTC))
    record = mapping.map_dossier(row).record
    assert record["NgayNopHoSo"] == "20261123203000"  # already Vietnam time
    assert record["NgayTiepNhan"] == "20261123210005"  # a naive database timestamp is local time too
    assert record["NgayHenTra"] == "20261130080000"  # an aware one is converted (UTC+7)

    def utc_source(doc):
        doc["source"]["time_zone"] = "UTC"
        doc["source"]["date_formats"] = ["%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S.%f"]

    utc = variant(tmp_path, utc_source)
    record = utc.map_dossier(dossier_row(ngay_nop="2026-11-23 20:30:00", ngay_tiep_nhan="31/12/2026 18:15",
                                         ngay_hen_tra="2026-12-01T00:00:00.250000")).record
    assert record["NgayNopHoSo"] == "20261124033000"  # next day in Vietnam
    assert record["NgayTiepNhan"] == "20270101011500"  # and next year
    assert record["NgayHenTra"] == "20261201070000"


@pytest.mark.parametrize("value", ["2026-02-30 10:00:00", "2026-11-23", "23/11/2026 08:00:00", "2026-11-23 25:00:00",
                                   "hôm qua", "0001-01-01 00:00:00", 20261123, "2026-11-23 08:15:30.5"])
def test_a_malformed_date_is_refused(mapping, value):
    with pytest.raises(MalformedValue) as caught:
        mapping.map_dossier(dossier_row(ngay_tiep_nhan=value))
    assert caught.value.code == "MAPPING_MALFORMED_VALUE"
    assert str(caught.value).startswith(f"onestop_sandbox.yaml: dossier {CODE}: NgayTiepNhan (column ngay_tiep_nhan): ")
    assert repr(value) in str(caught.value)


# --------------------------------------------------------------------------------------------
# bad input: each a specific outcome with a stable code
# --------------------------------------------------------------------------------------------
def test_an_unknown_local_code_names_the_code_and_the_file(mapping):
    with pytest.raises(UnknownCode) as caught:
        mapping.map_dossier(dossier_row(trang_thai="DA_HUY"))
    err = caught.value
    assert err.code == "MAPPING_UNKNOWN_CODE" and type(err) is UnknownCode
    assert str(err) == (f"onestop_sandbox.yaml: dossier {CODE}: TrangThaiHoSo (column trang_thai): unknown local code "
                        "'DA_HUY': not in statuses of onestop_sandbox.yaml (known: MOI, DA_TIEP_NHAN, TU_CHOI, "
                        "DANG_XU_LY, CHO_BO_SUNG, CHO_NOP_PHI, CONG_DAN_RUT, DUNG_XU_LY, DA_XU_LY, DA_TRA_KQ)")
    assert (err.field, err.column, err.mapping_file, err.ma_ho_so, err.source_key, err.procedure) == (
        "TrangThaiHoSo", "trang_thai", "onestop_sandbox.yaml", CODE, f"hoso:{CODE}:3", "1.001000")
    for column, value in (("kenh_nop", "QUA_ZALO"), ("loai_chu_ho_so", "HO_KINH_DOANH"), ("trang_thai", 4)):
        with pytest.raises(UnknownCode, match=f"unknown local code {value!r}"):
            mapping.map_dossier(dossier_row(**{column: value}))
    with pytest.raises(UnknownCode, match=r"step 41 of dossier .*TrangThai \(column trang_thai\): unknown local code 'XONG'"):
        mapping.map_step(step_row(trang_thai="XONG"))


@pytest.mark.parametrize(("column", "value", "field"), [
    ("trich_yeu", None, "TrichYeuHoSo"), ("trich_yeu", "   ", "TrichYeuHoSo"), ("chu_ho_so", "", "ChuHoSo"),
    ("ma_thu_tuc", None, "MaTTHC"), ("trang_thai", None, "TrangThaiHoSo"), ("ngay_nop", None, "NgayNopHoSo"),
    ("kenh_nop", " ", "KenhThucHien"),
])
def test_a_missing_required_field_is_refused(mapping, column, value, field):
    with pytest.raises(MissingField) as caught:
        mapping.map_dossier(dossier_row(**{column: value}))
    assert caught.value.code == "MAPPING_MISSING_FIELD" and caught.value.field == field
    assert f"{field} (column {column}): is missing or blank" in str(caught.value)


def test_missing_identity_columns_are_refused(mapping):
    with pytest.raises(MissingField, match="dossier .no dossier code.: key column so_ho_so is missing"):
        mapping.map_dossier(dossier_row(so_ho_so=None))
    with pytest.raises(MissingField, match="version column phien_ban is missing"):
        mapping.map_dossier(dossier_row(phien_ban=None))
    with pytest.raises(MalformedValue, match="version column phien_ban: 'ba' is not an integer"):
        mapping.map_dossier(dossier_row(phien_ban="ba"))
    with pytest.raises(MissingField, match="step .no id. of dossier .*key column id is missing"):
        mapping.map_step(step_row(id=None))
    with pytest.raises(MissingField, match="ThoiDiemXuLy"):
        mapping.map_step(step_row(thoi_diem=None))


def test_over_long_summary_is_truncated_and_counted(mapping):
    long = "Đề nghị cấp phép số " * 90  # 1800 characters, 1799 once trimmed
    change = mapping.map_dossier(dossier_row(trich_yeu=long))
    summary = change.record["TrichYeuHoSo"]
    assert len(summary) == 1000 and summary.endswith("…") and long.startswith(summary[:-1])
    assert change.adjustments == ((TRUNCATED, "TrichYeuHoSo", "1799 characters cut to 1000"),)
    # the cut never leaves a space before the ellipsis nor a combining mark without its letter
    spaced = mapping.map_dossier(dossier_row(trich_yeu="a" * 998 + " b" + "c" * 50)).record["TrichYeuHoSo"]
    assert spaced == "a" * 998 + "…"
    combining = unicodedata.normalize("NFC", "a" * 998 + "x\u0301\u0302" + "d" * 5)  # no precomposed form
    cut = mapping.map_dossier(dossier_row(trich_yeu=combining)).record["TrichYeuHoSo"]
    assert cut == "a" * 998 + "…"
    exact = "x" * 1000
    assert mapping.map_dossier(dossier_row(trich_yeu=exact)).record["TrichYeuHoSo"] == exact


def test_over_long_text_is_refused_where_truncating_is_not_allowed(tmp_path, mapping):
    with pytest.raises(TextTooLong) as caught:
        mapping.map_dossier(dossier_row(so_giay_to="0" * 65))
    assert caught.value.code == "MAPPING_TEXT_TOO_LONG" and isinstance(caught.value, MalformedValue)
    assert "SoGiayToChuHoSo (column so_giay_to): is 65 characters long, over the portal's limit of 64" in str(caught.value)

    def refuse(doc):
        doc["dossiers"]["fields"]["TrichYeuHoSo"] = {"column": "trich_yeu", "type": "text", "max_length": 500}

    strict = variant(tmp_path, refuse)
    with pytest.raises(TextTooLong, match="is 501 characters long, over the portal's limit of 500"):
        strict.map_dossier(dossier_row(trich_yeu="a" * 501))


def test_non_nfc_text_is_normalised_and_counted(mapping):
    decomposed = {k: unicodedata.normalize("NFD", v) for k, v in
                  {"chu_ho_so": "Nguyễn Thị Hồng Nhung", "trich_yeu": "Đề nghị cấp giấy chứng nhận"}.items()}
    change = mapping.map_dossier(dossier_row(**decomposed))
    assert change.record["ChuHoSo"] == "Nguyễn Thị Hồng Nhung"
    assert unicodedata.is_normalized("NFC", change.record["TrichYeuHoSo"])
    assert [(a.kind, a.field) for a in change.adjustments] == [(NORMALISED, "ChuHoSo"), (NORMALISED, "TrichYeuHoSo")]


def test_unknown_procedure_is_refused_when_the_catalogue_is_given(mapping):
    catalogue = {"1.001000", "1.004500"}
    known = DossierMapping.shipped("onestop_sandbox", known_procedures=catalogue.__contains__)
    assert known.map_dossier(dossier_row()).record["MaTTHC"] == "1.001000"
    with pytest.raises(UnknownProcedure) as caught:
        known.map_dossier(dossier_row(ma_thu_tuc="2.000999"))
    err = caught.value
    assert err.code == "MAPPING_UNKNOWN_PROCEDURE" and err.procedure == "2.000999" and isinstance(err, UnknownCode)
    assert str(err) == (f"onestop_sandbox.yaml: dossier {CODE}: MaTTHC (column ma_thu_tuc): "
                        "procedure 2.000999 is not in the national catalogue")
    assert mapping.map_dossier(dossier_row(ma_thu_tuc="2.000999")).record["MaTTHC"] == "2.000999"  # no catalogue given
    assert known.map_step(step_row()).status == 4  # steps carry no procedure


def test_values_the_portal_schema_refuses(mapping):
    with pytest.raises(MalformedValue, match=r"MaHoSo \(column so_ho_so\): 'HS-123' does not have the portal's format"):
        mapping.map_dossier(dossier_row(so_ho_so="HS-123"))
    with pytest.raises(MalformedValue, match=r"MaTTHC .*'1001000' does not have the portal's format"):
        mapping.map_dossier(dossier_row(ma_thu_tuc="1001000"))
    with pytest.raises(MalformedValue, match=r"ChuHoSo .*control character U\+0007 at position 6"):
        mapping.map_dossier(dossier_row(chu_ho_so="Nguyễn\x07 An"))
    with pytest.raises(MalformedValue, match=r"TenTTHC .*expected a text, got a dict"):
        mapping.map_dossier(dossier_row(ten_thu_tuc={"vi": "x"}))


def test_an_invalid_optional_contact_is_omitted_and_counted(mapping, tmp_path):
    change = mapping.map_dossier(dossier_row(email="nhung.nguyen at example.vn", dien_thoai="gọi sau"))
    assert "Email" not in change.record and "SoDienThoai" not in change.record
    assert [(a.kind, a.field) for a in change.adjustments] == [(OMITTED, "Email"), (OMITTED, "SoDienThoai")]

    def refuse(doc):
        doc["dossiers"]["fields"]["Email"] = {"column": "email", "type": "text"}

    strict = variant(tmp_path, refuse)
    with pytest.raises(MalformedValue) as caught:
        strict.map_dossier(dossier_row(email="nhung.nguyen at example.vn"))
    assert "personal data, not shown" in str(caught.value) and "nhung" not in str(caught.value)


def test_national_codes_stored_as_integers_and_integer_local_codes(tmp_path):
    def national(doc):
        doc["dossiers"]["fields"]["TrangThaiHoSo"] = {"column": "trang_thai", "type": "int"}
        doc["channels"] = {1: 1, 2: 2, "3": 3}

    m = variant(tmp_path, national)
    assert m.map_dossier(dossier_row(trang_thai=9, kenh_nop="2")).record["TrangThaiHoSo"] == 9
    assert m.map_dossier(dossier_row(trang_thai="10", kenh_nop=3)).record["KenhThucHien"] == 3
    assert m.map_dossier(dossier_row(trang_thai=5, kenh_nop=" 1 ")).record["KenhThucHien"] == 1
    with pytest.raises(UnknownCode, match=r"11 is not a TrangThaiHoSo \(1..10; code table dossier_status\)"):
        m.map_dossier(dossier_row(trang_thai=11, kenh_nop=1))
    with pytest.raises(MalformedValue, match=r"'bốn' is not an integer"):
        m.map_dossier(dossier_row(trang_thai="bốn", kenh_nop=1))
    with pytest.raises(UnknownCode, match="unknown local code True"):
        m.map_dossier(dossier_row(trang_thai=4, kenh_nop=True))


def test_errors_are_mapping_errors_with_distinct_codes(mapping):
    codes = set()
    for row in (dossier_row(trang_thai="X"), dossier_row(trich_yeu=None), dossier_row(ngay_nop="x"),
                dossier_row(so_giay_to="1" * 99)):
        with pytest.raises(MappingError) as caught:
            mapping.map_dossier(row)
        codes.add(caught.value.code)
    assert codes == {"MAPPING_UNKNOWN_CODE", "MAPPING_MISSING_FIELD", "MAPPING_MALFORMED_VALUE", "MAPPING_TEXT_TOO_LONG"}


def test_key_prefix_keeps_sources_apart(tmp_path):
    m = variant(tmp_path, lambda doc: doc["source"].update(key_prefix="bo_nn:"))
    assert m.map_dossier(dossier_row()).source_key == f"bo_nn:hoso:{CODE}:3"
    assert m.map_step(step_row()).source_key == "bo_nn:buoc:41"


def test_mapping_is_fast(mapping):
    rows = [dossier_row(so_ho_so=f"000.00.10.G10-20261123-{i:07d}", phien_ban=i % 9 + 1) for i in range(10_000)]
    steps = [step_row(id=i) for i in range(10_000)]
    started = time.perf_counter()
    for row in rows:
        mapping.map_dossier(row)
    for row in steps:
        mapping.map_step(row)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"20,000 rows took {elapsed:.2f} s"  # ~0.5 s expected: the push needs 5,000 events/s


# --------------------------------------------------------------------------------------------
# a broken mapping file names the file and the key
# --------------------------------------------------------------------------------------------
def _set(path: str, value: Any):
    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value
    return change


def _delete(path: str):
    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        del node[last]
    return change


BROKEN = [
    (_set("statuses.DANG_XU_LY", 11), "statuses.DANG_XU_LY", "11 is not a TrangThaiHoSo (1..10)"),
    (_set("statuses.MOI", "1"), "statuses.MOI", "'1' is not a TrangThaiHoSo (1..10)"),
    (_set("channels.TRUC_TUYEN", 4), "channels.TRUC_TUYEN", "4 is not a KenhThucHien (1..3)"),
    (_set("subject_types.TO_CHUC", 0), "subject_types.TO_CHUC", "0 is not a LoaiDoiTuong (1..4)"),
    (_set("statuses", {}), "statuses", "must map each local code to a TrangThaiHoSo (1..10)"),
    (_set("statuses", {False: 1}), "statuses.False", "quote YAML words like NO"),
    (_set("statuse", {"MOI": 1}), "statuse", "unknown key (allowed here: source, dossiers, steps"),
    (_delete("source.time_zone"), "source.time_zone", "missing"),
    (_set("source.time_zone", "Asia/Hanoi_City"), "source.time_zone", "'Asia/Hanoi_City' is not an IANA time zone"),
    (_set("source.kind", "api"), "source.kind", "'api' is not one of sql, filedrop"),
    (_set("source.name", "Một Cửa"), "source.name", "must be a lower-case identifier"),
    (_set("source.date_formats", ["%H:%M"]), "source.date_formats[0]", "must be a strptime format with at least %Y"),
    (_set("source.batch_size", 0), "source.batch_size", "must be an integer from 1 to 100000"),
    (lambda doc: (_set("source.settle_seconds", 2.5)(doc), _delete("steps.changed_at")(doc)), "steps.changed_at",
     "missing: settle_seconds needs"),
    (_set("source.key_prefix", "a b"), "source.key_prefix", "must be a short text"),
    (_delete("dossiers.table"), "dossiers.table", "missing (a sql source reads this table or view)"),
    (_set("dossiers.table", "hoso; DROP TABLE hoso"), "dossiers.table", "is not a column or table name"),
    (_delete("dossiers.version"), "dossiers.version", "missing"),
    (_set("dossiers.cursor", {"column": "cap_nhat_luc", "tiebreak": "cap_nhat_luc"}), "dossiers.cursor.tiebreak",
     "must be another column than the cursor column"),
    (_set("dossiers.cursor", {"col": "cap_nhat_luc"}), "dossiers.cursor.col", "unknown key"),
    (_set("dossiers.fields.NgayTiepNhan", {"column": "ngay_nop", "type": "date"}), "dossiers.fields.NgayTiepNhan.column",
     "column ngay_nop is already mapped to NgayNopHoSo"),
    (_set("dossiers.fields.NgayNop", {"column": "ngay_x", "type": "date"}), "dossiers.fields.NgayNop",
     "the portal has no such field"),
    (_delete("dossiers.fields.TrichYeuHoSo"), "dossiers.fields.TrichYeuHoSo", "missing: the portal requires this field"),
    (_delete("steps.fields.NoiDungXuLy"), "steps.fields.NoiDungXuLy", "missing: the portal requires this field"),
    (_set("dossiers.fields.NgayNopHoSo.type", "text"), "dossiers.fields.NgayNopHoSo.type",
     "text does not fit NgayNopHoSo, which the portal takes as date"),
    (_set("dossiers.fields.TrangThaiHoSo.codes", "channels"), "dossiers.fields.TrangThaiHoSo.codes",
     "'channels' is not one of statuses"),
    (_delete("subject_types"), "dossiers.fields.LoaiDoiTuong.codes", "names subject_types, but the file has no"),
    (_set("dossiers.fields.ChuHoSo.required", False), "dossiers.fields.ChuHoSo.required",
     "the portal requires ChuHoSo; it cannot be optional"),
    (_set("dossiers.fields.ChuHoSo.on_invalid", "omit"), "dossiers.fields.ChuHoSo.on_invalid", "omit is only for optional"),
    (_set("dossiers.fields.MaHoSo.too_long", "truncate"), "dossiers.fields.MaHoSo.too_long",
     "MaHoSo is an identifier: a truncated one would be wrong"),
    (_set("dossiers.fields.TrichYeuHoSo.max_length", 5000), "dossiers.fields.TrichYeuHoSo.max_length",
     "must be an integer from 1 to 1000"),
    (_set("dossiers.fields.NgayTra.max_length", 10), "dossiers.fields.NgayTra.max_length", "only text fields have a length"),
    (_set("dossiers.fields.TrichYeuHoSo.typ", "text"), "dossiers.fields.TrichYeuHoSo.typ", "unknown key"),
    (_set("dossiers.fields.TaiLieuNop", {"column": "tai_lieu", "type": "text"}), "dossiers.fields.TaiLieuNop",
     "cannot be filled from one column"),
    (_set("dossiers.extra", ["so_giay_to"]), "dossiers.extra[0]", "column so_giay_to is already mapped to SoGiayToChuHoSo"),
    (_set("files.steps", "hoso"), "files.steps", "must differ from files.dossiers"),
    (_set("files.formats", ["json", "xlsx"]), "files.formats[1]", "'xlsx' is not one of json, csv, xml"),
    (lambda doc: (_set("source.kind", "filedrop")(doc), _delete("files")(doc)), "files",
     "missing (a filedrop source needs the layout"),
]


@pytest.mark.parametrize(("change", "key", "problem"), BROKEN, ids=[b[1] + "-" + str(i) for i, b in enumerate(BROKEN)])
def test_a_broken_mapping_file_names_the_file_and_the_key(tmp_path, change, key, problem):
    doc = sandbox_doc()
    change(doc)
    path = write(tmp_path, doc)
    with pytest.raises(MappingFileError) as caught:
        DossierMapping.load(path)
    err = caught.value
    assert str(err).startswith(f"{path}: {key}: "), str(err)
    assert problem in str(err)
    assert (err.source, err.key, err.code) == (str(path), key, "MAPPING_FILE_INVALID")
    assert isinstance(err, MappingError)


def test_the_brief_example_message(tmp_path):
    path = write(tmp_path, SHIPPED.read_text(encoding="utf-8").replace("DANG_XU_LY: 4", "DANG_XU_LY: 11"))
    with pytest.raises(MappingFileError) as caught:
        DossierMapping.load(path)
    assert str(caught.value).endswith("onestop_sandbox.yaml: statuses.DANG_XU_LY: 11 is not a TrangThaiHoSo (1..10)")


@pytest.mark.parametrize(("text", "problem"), [
    ("source: [\n", "not valid YAML"),
    ("- 1\n", "must be a mapping with source, dossiers, steps"),
    ("source: {}\nsource: {}\n", "duplicate key 'source'"),
])
def test_unreadable_mapping_files(tmp_path, text, problem):
    path = write(tmp_path, text)
    with pytest.raises(MappingFileError, match=problem) as caught:
        DossierMapping.load(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_missing_mapping_file(tmp_path):
    with pytest.raises(MappingFileError, match="cannot read mapping file"):
        DossierMapping.load(tmp_path / "nope.yaml")
    with pytest.raises(MappingFileError, match="no shipped source mapping is called 'nope' .shipped: onestop_sandbox."):
        DossierMapping.shipped("nope")


def test_a_duplicate_local_code_is_refused(tmp_path):
    text = SHIPPED.read_text(encoding="utf-8").replace("  MOI: 1\n", "  MOI: 1\n  MOI: 2\n")
    with pytest.raises(MappingFileError, match="duplicate key 'MOI'"):
        DossierMapping.load(write(tmp_path, text))
    doc = sandbox_doc()
    doc["channels"] = {1: 1, "1": 2}
    with pytest.raises(MappingFileError, match=r"channels\.1: the same local code as 1"):
        DossierMapping.load(write(tmp_path, doc))


@pytest.mark.parametrize("value, national", [(True, "1"), (False, "0"), (1, "1"), (0, "0"), ("có", "1"),
                                             ("Không", "0"), ("true", "1"), ("0", "0")])
def test_flags_travel_in_the_national_encoding(tmp_path, value, national):
    """A yes/no field is "1" / "0" in the canonical record, as the portal's adapter and the 766
    scorecard read it; both transports carry that value (xs:boolean accepts it)."""
    def with_flag(doc):
        doc["dossiers"]["fields"]["HoSoCoThanhPhanSoHoa"] = {"column": "co_so_hoa", "type": "bool"}

    mapped = variant(tmp_path, with_flag).map_dossier(dossier_row(co_so_hoa=value)).record
    assert mapped["HoSoCoThanhPhanSoHoa"] == national


def test_the_submission_place_is_sent_as_its_national_code(tmp_path):
    """NoiNopHoSo is a code for the portal (2: the ministry's or province's own system), mapped from
    the one-stop system's local values like the other code fields; a value the map lacks is refused."""
    def with_place(doc):
        doc["dossiers"]["fields"]["NoiNopHoSo"] = {"column": "noi_nop", "type": "code", "codes": "submission_places"}
        doc["submission_places"] = {"MOT_CUA_BO": 2, "CONG_DVC": 1}

    mapped = variant(tmp_path, with_place)
    assert mapped.map_dossier(dossier_row(noi_nop="MOT_CUA_BO")).record["NoiNopHoSo"] == 2
    assert mapped.map_dossier(dossier_row(noi_nop="CONG_DVC")).record["NoiNopHoSo"] == 1
    with pytest.raises(UnknownCode, match="BUU_DIEN"):
        mapped.map_dossier(dossier_row(noi_nop="BUU_DIEN"))
    assert load_table("submission_place").label(2).startswith("Hệ thống thông tin giải quyết")

    def to_an_unknown_code(doc):
        with_place(doc)
        doc["submission_places"]["MOT_CUA_BO"] = 7

    with pytest.raises(MappingFileError, match="submission_places"):
        variant(tmp_path, to_an_unknown_code)
