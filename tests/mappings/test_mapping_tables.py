"""Code tables: shipped as YAML data, validated completely on load, cached."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from lienthong.connectors.services import SERVICES
from lienthong.mappings.errors import CodeTableError, MappingError, UnknownCode
from lienthong.mappings.tables import (
    ADMINISTRATIVE_LEVEL,
    CHANNEL,
    ONLINE_LEVEL,
    PROCEDURE_STATUS,
    TABLE_NAMES,
    load_all,
    load_table,
    read_table,
)
from lxml import etree

XS = "{http://www.w3.org/2001/XMLSchema}"


def xsd_enumeration(type_name: str) -> set[str]:
    tree = etree.parse(str(SERVICES["csdl_tthc"].xsd_path))
    (simple,) = tree.getroot().iterfind(f"{XS}simpleType[@name='{type_name}']")
    return {e.get("value") for e in simple.iter(f"{XS}enumeration")}


def test_every_shipped_table_loads_and_is_cached():
    tables = load_all()
    assert set(tables) == set(TABLE_NAMES) == {ADMINISTRATIVE_LEVEL, ONLINE_LEVEL, CHANNEL, PROCEDURE_STATUS}
    for name, table in tables.items():
        assert load_table(name) is table  # read once per process
        assert table.source.endswith(f"tables/{name}.yaml")
        assert read_table(table.source) == table  # the same file read directly validates the same way
        for entry in table.entries.values():
            assert entry["label"] and unicodedata.is_normalized("NFC", entry["label"])


def test_administrative_levels_match_the_xsd():
    table = load_table(ADMINISTRATIVE_LEVEL)
    assert set(table.codes()) == xsd_enumeration("CapHanhChinh")
    assert [table.label(c) for c in ("BO", "TINH", "XA")] == ["Bộ", "Tỉnh", "Xã"]
    assert table.label("HUYEN") == "Huyện (bãi bỏ từ 2025)"
    assert table.fields == ("CAPTHUCHIEN", "CAPDONVI")


def test_online_levels_follow_decree_42_2022():
    table = load_table(ONLINE_LEVEL)
    assert set(table.codes()) == xsd_enumeration("MucDo")
    level = {code: table.entry(code)["level"] for code in table.codes()}
    assert level == {"TOAN_TRINH": "toan_trinh", "MOT_PHAN": "mot_phan", "THONG_TIN": "thong_tin",
                     "MUC_DO_4": "toan_trinh", "MUC_DO_3": "mot_phan", "MUC_DO_2": "thong_tin"}
    assert {c for c in table.codes() if table.entry(c)["legacy"]} == {"MUC_DO_2", "MUC_DO_3", "MUC_DO_4"}
    assert set(table.sections["levels"]) == set(level.values())
    assert "Decree 42/2022" in Path(table.source).read_text(encoding="utf-8")


def test_channels_and_statuses():
    channel = load_table(CHANNEL)
    assert {c: channel.label(c) for c in channel.codes()} == {1: "Trực tiếp", 2: "Trực tuyến", 3: "Bưu chính công ích"}
    assert channel.label("2") == "Trực tuyến"  # the text of an XML element finds the integer code
    assert "2" in channel and 4 not in channel

    status = load_table(PROCEDURE_STATUS)
    assert [c for c in status.codes() if status.entry(c)["published"]] == [1]
    assert status.label(2) == "Bãi bỏ"
    assert status.entry(8)["published"] is False  # unlisted: kept as "not in force", as the XSD says


def test_unknown_code_names_field_and_table():
    with pytest.raises(UnknownCode) as caught:
        load_table(CHANNEL).entry(9, field="CACHTHUCTHUCHIEN[0].KENH", procedure="1.001011")
    message = str(caught.value)
    assert message.startswith("procedure 1.001011: CACHTHUCTHUCHIEN[0].KENH: unknown code 9")
    assert "channel.yaml" in message and "known codes: 1, 2, 3" in message
    assert caught.value.field == "CACHTHUCTHUCHIEN[0].KENH"
    with pytest.raises(UnknownCode, match="MUCDO: unknown code 'MUC_DO_1'"):
        load_table(ONLINE_LEVEL).label("MUC_DO_1")


def test_unknown_table_name():
    with pytest.raises(CodeTableError, match="no code table is called 'province'"):
        load_table("province")


ONLINE_HEAD = "fields: [MUCDO]\nlevels: {toan_trinh: Toàn trình, mot_phan: Một phần}\n"
BROKEN = [
    # (table name, file text, what the error must say)
    (CHANNEL, "fields: [KENH]\ncodes:\n  1: {label: Trực tiếp}\n  1: {label: Trực tuyến}\n", "duplicate key 1"),
    (CHANNEL, "fields: [KENH]\ncodes:\n  1: {label: Trực tiếp}\n  2: {}\n", "codes.2: missing label"),
    (CHANNEL, "fields: [KENH]\ncodes:\n  1: {label: '  '}\n", "codes.1.label: must be a non-empty text"),
    (CHANNEL, "fields: [KENH]\ncodes:\n  1: {lable: Trực tiếp, label: Trực tiếp}\n", "codes.1: unknown attribute lable"),
    (CHANNEL, "fields: [KENH]\ncodes:\n  A: {label: Trực tiếp}\n", "codes.A: codes of this table are non-negative"),
    (CHANNEL, "fields: [KENH]\ncodes:\n  1: Trực tiếp\n", "codes.1: must be a mapping of attributes"),
    (CHANNEL, "fields: [KENH]\ncodes: {}\n", "codes: must map each code"),
    (CHANNEL, "codes:\n  1: {label: Trực tiếp}\n", "fields: must list the national fields"),
    (CHANNEL, "fields: [KENH]\ncodez:\n  1: {label: Trực tiếp}\n", "unknown key codez"),
    (CHANNEL, "- 1\n- 2\n", "must be a mapping with 'fields' and 'codes'"),
    (CHANNEL, "fields: [KENH]\ncodes: [\n", "not valid YAML"),
    (ADMINISTRATIVE_LEVEL, "fields: [CAPTHUCHIEN]\ncodes:\n  bo: {label: Bộ}\n", "codes.bo: codes of this table are upper-case"),
    (PROCEDURE_STATUS, "fields: [TRANGTHAI]\ncodes:\n  1: {label: Công bố}\n", "codes.1: missing published"),
    (PROCEDURE_STATUS, "fields: [TRANGTHAI]\ncodes:\n  1: {label: Công bố, published: true}\nunlisted: {label: Khác}\n",
     "unlisted: missing published"),
    (ONLINE_LEVEL, "fields: [MUCDO]\ncodes:\n  MOT_PHAN: {label: Một phần, level: mot_phan, legacy: false}\n",
     "levels: missing"),
    (ONLINE_LEVEL, ONLINE_HEAD + "codes:\n  MUC_DO_4: {label: Mức độ 4, level: muc_do_4, legacy: true}\n",
     "codes.MUC_DO_4.level: must be one of the normalised levels"),
    (ONLINE_LEVEL, ONLINE_HEAD + "codes:\n  MUC_DO_4: {label: Mức độ 4, level: toan_trinh, legacy: maybe}\n",
     "codes.MUC_DO_4.legacy: must be true or false"),
]


@pytest.mark.parametrize(("name", "text", "problem"), BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_a_broken_table_names_the_file_and_the_key(tmp_path, name, text, problem):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CodeTableError) as caught:
        read_table(path)
    assert isinstance(caught.value, MappingError)
    assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value)
    assert caught.value.source == str(path) and caught.value.code == "MAPPING_TABLE_INVALID"


def test_a_missing_table_file_is_a_table_error(tmp_path):
    with pytest.raises(CodeTableError, match="cannot read code table"):
        read_table(tmp_path / "channel.yaml")


def test_labels_are_normalised_to_nfc_on_load(tmp_path):
    path = tmp_path / "channel.yaml"
    path.write_text("fields: [KENH]\ncodes:\n  1: {label: '%s'}\n" % unicodedata.normalize("NFD", "Trực tiếp "),
                    encoding="utf-8")
    assert read_table(path).label(1) == "Trực tiếp"
