"""FileDropSource: export files (JSON, CSV, XML) from an inbox; processed ones moved aside,
broken ones quarantined with the reason, and the rest of the inbox carries on."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from lienthong.connectors.sources import (
    MAPPED,
    FileDropSource,
    RejectedFile,
    Source,
    SourceBatch,
    map_rows,
)
from lienthong.hub.errors import ConfigurationError
from lienthong.mappings.dossier import DOSSIER, STEP, DossierMapping

CODE = "000.00.10.G10-20261123-{:07d}"
HOSO_COLUMNS = ("so_ho_so", "ma_thu_tuc", "ten_thu_tuc", "ma_linh_vuc", "ten_linh_vuc", "kenh_nop", "chu_ho_so",
                "so_giay_to", "loai_chu_ho_so", "email", "dien_thoai", "trich_yeu", "ngay_nop", "ngay_tiep_nhan",
                "ngay_hen_tra", "ngay_ket_thuc_xu_ly", "ngay_tra", "trang_thai", "don_vi_xu_ly", "co_quan",
                "cap_nhat_luc", "phien_ban")
STEP_COLUMNS = ("id", "so_ho_so", "nguoi_xu_ly", "chuc_danh", "phong_ban", "noi_dung", "trang_thai", "thoi_diem",
                "ngay_bat_dau", "han_xu_ly", "cap_nhat_luc")


def dossier(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "so_ho_so": CODE.format(n), "ma_thu_tuc": "1.004500", "ten_thu_tuc": "Cấp chứng chỉ hành nghề thú y",
        "ma_linh_vuc": "G10-TY", "ten_linh_vuc": "Thú y", "kenh_nop": "TRUC_TIEP", "chu_ho_so": "Đỗ Minh Khoa",
        "so_giay_to": "031095000777", "loai_chu_ho_so": "CONG_DAN", "email": None, "dien_thoai": None,
        "trich_yeu": "Cấp chứng chỉ hành nghề thú y cho ông Đỗ Minh Khoa", "ngay_nop": "2026-11-20 14:30:00",
        "ngay_tiep_nhan": "2026-11-20 14:30:00", "ngay_hen_tra": "2026-12-01 17:00:00", "ngay_ket_thuc_xu_ly": None,
        "ngay_tra": None, "trang_thai": "DA_TIEP_NHAN", "don_vi_xu_ly": "Chi cục Thú y vùng I",
        "co_quan": "000.00.10.G10", "cap_nhat_luc": "2026-11-20T07:30:00Z", "phien_ban": 2,
    }
    row.update(changes)
    return row


def step(i: int, n: int, **changes: Any) -> dict[str, Any]:
    row = {"id": i, "so_ho_so": CODE.format(n), "nguoi_xu_ly": "Vũ Thị Lan", "chuc_danh": "Cán bộ một cửa",
           "phong_ban": "Bộ phận Tiếp nhận và Trả kết quả", "noi_dung": "Tiếp nhận hồ sơ trực tiếp",
           "trang_thai": "DA_TIEP_NHAN", "thoi_diem": "2026-11-20 14:30:00", "ngay_bat_dau": None,
           "han_xu_ly": None, "cap_nhat_luc": "2026-11-20T07:30:00Z"}
    row.update(changes)
    return row


def csv_bytes(columns, rows, *, bom: bool = False) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")


def xml_bytes(dossiers, step_rows) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', "<xuat_du_lieu>"]
    for tag, rows in (("hoso", dossiers), ("buoc_xu_ly", step_rows)):
        for row in rows:
            fields = "".join(f"<{k}>{_escape(v)}</{k}>" for k, v in row.items() if v is not None)
            parts.append(f"  <{tag}>{fields}</{tag}>")
    parts.append("</xuat_du_lieu>")
    return "\n".join(parts).encode("utf-8")


def _escape(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.fixture(scope="module")
def mapping() -> DossierMapping:
    return DossierMapping.shipped("onestop_sandbox")


@pytest.fixture
def inbox(tmp_path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def source(inbox, mapping) -> FileDropSource:
    return FileDropSource(inbox, mapping)


def drop(inbox: Path, name: str, data: bytes | str) -> Path:
    path = inbox / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def keys(batch: SourceBatch) -> list[str]:
    return [i.source_key for i in batch.items]


# --------------------------------------------------------------------------------------------
# each format
# --------------------------------------------------------------------------------------------
def test_json_export_is_one_batch_and_moves_to_processed_after_ack(inbox, source):
    doc = {"buoc_xu_ly": [step(7, 1), step(8, 2, trang_thai="TU_CHOI")], "hoso": [dossier(1), dossier(2, trang_thai="TU_CHOI")]}
    drop(inbox, "onestop-20261120T073000Z-0000000008.json", json.dumps(doc, ensure_ascii=False))
    assert isinstance(source, Source) and source.name == "onestop_sandbox"
    (batch,) = list(source.changes())
    assert batch.origin == "onestop-20261120T073000Z-0000000008.json"
    assert batch.cursor == f"{batch.origin}|sha256:{hashlib.sha256(batch.file.read_bytes()).hexdigest()}"
    assert batch.file == inbox / batch.origin and batch.outcomes() == {MAPPED: 4}
    assert [i.kind for i in batch.items] == [DOSSIER, DOSSIER, STEP, STEP]  # dossiers first, whatever the file's order
    assert keys(batch) == [f"hoso:{CODE.format(1)}:2", f"hoso:{CODE.format(2)}:2", "buoc:7", "buoc:8"]
    first = batch.changes[0]
    assert first.record["KenhThucHien"] == 1 and first.record["NgayTiepNhan"] == "20261120143000"
    assert [c.status for c in batch.changes] == [2, 3, 2, 3]

    source.ack(batch)
    assert not batch.file.exists() and (inbox / "processed" / batch.origin).is_file()
    assert list(source.changes(batch.cursor)) == []


def test_csv_exports_one_file_per_table_dossiers_first(inbox, source):
    drop(inbox, "buoc_xu_ly-20261120T073000Z-0000000003.csv", csv_bytes(STEP_COLUMNS, [step(3, 5)]))
    drop(inbox, "hoso-20261120T073000Z-0000000003.csv",
         csv_bytes(HOSO_COLUMNS, [dossier(5, email="khoa.do@example.vn"), dossier(6, phien_ban="1")], bom=True))
    batches = list(source.changes())
    assert [b.origin for b in batches] == ["hoso-20261120T073000Z-0000000003.csv",
                                           "buoc_xu_ly-20261120T073000Z-0000000003.csv"]
    hoso_batch, step_batch = batches
    assert keys(hoso_batch) == [f"hoso:{CODE.format(5)}:2", f"hoso:{CODE.format(6)}:1"]
    assert keys(step_batch) == ["buoc:3"]
    change = hoso_batch.changes[0]
    assert change.record["Email"] == "khoa.do@example.vn" and "SoDienThoai" not in change.record  # empty cell = NULL
    assert change.record["MaHoSo"] == CODE.format(5)  # the BOM did not stick to the first column name
    for batch in batches:
        source.ack(batch)
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(b.origin for b in batches)


def test_xml_export(inbox, source):
    drop(inbox, "onestop-1.xml", xml_bytes([dossier(9, trich_yeu="Xin cấp phép & gia hạn <khẩn>")], [step(1, 9)]))
    (batch,) = list(source.changes())
    assert batch.outcomes() == {MAPPED: 2}
    assert batch.changes[0].record["TrichYeuHoSo"] == "Xin cấp phép & gia hạn <khẩn>"
    assert batch.changes[1].record["NguoiXuLy"] == "Vũ Thị Lan"


def test_every_format_maps_to_the_same_changes(inbox, mapping, tmp_path):
    rows = [dossier(1), dossier(2, kenh_nop="TRUC_TUYEN", trich_yeu=unicodedata.normalize("NFD", "Hồ sơ số hai"))]
    step_rows = [step(1, 1), step(2, 2)]
    drop(inbox, "a.json", json.dumps({"hoso": rows, "buoc_xu_ly": step_rows}, ensure_ascii=False))
    drop(inbox, "b.xml", xml_bytes(rows, step_rows))
    drop(inbox, "hoso-c.csv", csv_bytes(HOSO_COLUMNS, rows))
    drop(inbox, "buoc_xu_ly-c.csv", csv_bytes(STEP_COLUMNS, step_rows))
    batches = list(FileDropSource(inbox, mapping).changes())
    by_file = {b.origin: b for b in batches}
    expected = [c.record for c in by_file["a.json"].changes]
    assert [c.record for c in by_file["b.xml"].changes] == expected
    assert [c.record for c in by_file["hoso-c.csv"].changes + by_file["buoc_xu_ly-c.csv"].changes] == expected
    assert all(b.outcomes()["normalised"] == 1 for b in batches if b.origin != "buoc_xu_ly-c.csv")


# --------------------------------------------------------------------------------------------
# what is left alone
# --------------------------------------------------------------------------------------------
def test_files_being_written_and_folders_are_left_alone(inbox, mapping):
    good = json.dumps({"hoso": [dossier(1)]})
    for name in (".onestop.json", "onestop.json.tmp", "hoso-1.csv.part", "ONESTOP.JSON.TMP"):
        drop(inbox, name, good)
    (inbox / "archive.json").mkdir()
    fresh = drop(inbox, "fresh.json", good)
    now = fresh.stat().st_mtime
    source = FileDropSource(inbox, mapping, min_age_seconds=30, clock=lambda: now + 5)
    assert source.pending() == [] and list(source.changes()) == []
    assert not source.rejected
    later = FileDropSource(inbox, mapping, min_age_seconds=30, clock=lambda: now + 31)
    assert [b.origin for b in later.changes()] == ["fresh.json"]


def test_a_committed_file_left_in_the_inbox_is_not_read_again(inbox, source):
    drop(inbox, "a.json", json.dumps({"hoso": [dossier(1)]}))
    drop(inbox, "b.json", json.dumps({"hoso": [dossier(2)]}))
    first = next(iter(source.changes()))
    assert first.cursor.startswith("a.json|sha256:")
    # the caller committed a.json's events and cursor, then stopped before ack: next run
    batches = list(source.changes(first.cursor))
    assert [b.cursor.split("|")[0] for b in batches] == ["b.json"]
    assert (inbox / "processed" / "a.json").is_file()
    # a cursor only ever names a file in the inbox
    assert [b.cursor.split("|")[0] for b in source.changes("../inbox/" + batches[0].cursor)] == ["b.json"]
    assert list(source.changes(batches[0].cursor)) == [] and (inbox / "processed" / "b.json").is_file()


def test_a_new_export_under_a_committed_name_is_read(inbox, source):
    """An exporter that writes export.json every time: the name is the committed cursor's, the
    bytes are new, so it is a new export and must not be skipped."""
    drop(inbox, "export.json", json.dumps({"hoso": [dossier(1)]}))
    (first,) = list(source.changes())
    source.ack(first)
    drop(inbox, "export.json", json.dumps({"hoso": [dossier(2)]}))
    (second,) = list(source.changes(first.cursor))
    assert [item.change.payload["MaHoSo"] for item in second.items] == [dossier(2)["so_ho_so"]]
    assert second.cursor != first.cursor
    # a cursor without a digest (or for other bytes) never skips a file: reading it again is harmless
    assert len(list(source.changes("export.json"))) == 1


def test_a_file_sent_twice_is_kept_twice(inbox, source):
    for _ in range(2):
        drop(inbox, "a.json", json.dumps({"hoso": [dossier(1)]}))
        (batch,) = list(source.changes())
        source.ack(batch)
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.1.json", "a.json"]


# --------------------------------------------------------------------------------------------
# broken files: quarantined with the reason, the rest carries on
# --------------------------------------------------------------------------------------------
GOOD_JSON = json.dumps({"hoso": [dossier(1)], "buoc_xu_ly": [step(1, 1)]}, ensure_ascii=False)
BROKEN = [
    ("truncated.json", GOOD_JSON[: len(GOOD_JSON) // 2], "EXPORT_FILE_MALFORMED", "not valid JSON at line 1"),
    ("dupkey.json", '{"hoso": [], "hoso": []}', "EXPORT_FILE_MALFORMED", "has the key 'hoso' twice"),
    ("nan.json", '{"hoso": [{"phien_ban": NaN}]}', "EXPORT_FILE_MALFORMED", "NaN is not a JSON value"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "EXPORT_FILE_MALFORMED", "nested too deeply"),
    ("list.json", json.dumps([dossier(1)]), "EXPORT_FILE_LAYOUT", "expected a JSON object"),
    ("other.json", json.dumps({"ho_so": []}), "EXPORT_FILE_LAYOUT", "unexpected key 'ho_so'"),
    ("empty_object.json", "{}", "EXPORT_FILE_LAYOUT", "no 'hoso' or 'buoc_xu_ly' or 'ket_qua' list"),
    ("records.json", json.dumps({"hoso": ["x"]}), "EXPORT_FILE_LAYOUT", "hoso[0] is not an object"),
    ("nested.json", json.dumps({"hoso": [{"so_ho_so": {"a": 1}}]}), "EXPORT_FILE_LAYOUT", "hoso[0].so_ho_so is nested"),
    ("hoso-wrong.csv", csv_bytes(["ma_ho_so", *HOSO_COLUMNS[1:]], [dossier(1)]), "EXPORT_FILE_LAYOUT",
     "the header lacks column so_ho_so"),
    ("hoso-noheader.csv", csv_bytes(HOSO_COLUMNS, [dossier(1)]).split(b"\r\n", 1)[1], "EXPORT_FILE_LAYOUT",
     "the header lacks column"),
    ("hoso-twice.csv", csv_bytes([*HOSO_COLUMNS, "email"], []), "EXPORT_FILE_LAYOUT", "names column 'email' twice"),
    ("hoso-ragged.csv", csv_bytes(HOSO_COLUMNS, [dossier(1)]) + b"a,b\r\n", "EXPORT_FILE_LAYOUT",
     "line 3 has 2 fields, the header has 22"),
    ("hoso-quote.csv", csv_bytes(HOSO_COLUMNS, []) + b'"a"b,c\r\n', "EXPORT_FILE_MALFORMED", "not valid CSV at line 2"),
    ("dossiers.csv", csv_bytes(HOSO_COLUMNS, [dossier(1)]), "EXPORT_FILE_LAYOUT", "named hoso-*.csv or buoc_xu_ly-*.csv"),
    ("hoso-ansi.csv", "so_ho_so,trich_yeu\r\nX,Hồ sơ\r\n".encode("cp1258", errors="replace").replace(b"H", b"H\xf2"),
     "EXPORT_FILE_ENCODING", "not valid utf-8 text at byte"),
    ("bomb.xml", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><xuat_du_lieu>&b;</xuat_du_lieu>',
     "XML_DTD_FORBIDDEN", "document type declaration"),
    ("xxe.xml", b'<xuat_du_lieu><hoso><trich_yeu>&xxe;</trich_yeu></hoso></xuat_du_lieu>', "XML_ENTITY_FORBIDDEN",
     "undeclared entity"),
    ("cut.xml", xml_bytes([dossier(1)], [])[:-20], "XML_MALFORMED", "not well-formed XML"),
    ("root.xml", b"<export><hoso/></export>", "EXPORT_FILE_LAYOUT", "the root element is <export>, expected <xuat_du_lieu>"),
    ("ns.xml", b'<xuat_du_lieu xmlns="urn:x"><hoso/></xuat_du_lieu>', "EXPORT_FILE_LAYOUT", "root element is <{urn:x}xuat_du_lieu>"),
    ("child.xml", b"<xuat_du_lieu><ho_so/></xuat_du_lieu>", "EXPORT_FILE_LAYOUT", "unexpected element <ho_so>"),
    ("deepfield.xml", b"<xuat_du_lieu><hoso><trich_yeu><b>x</b></trich_yeu></hoso></xuat_du_lieu>",
     "EXPORT_FILE_LAYOUT", "hoso[0]/trich_yeu has child elements"),
    ("twice.xml", b"<xuat_du_lieu><hoso><email>a@b.vn</email><email>c@d.vn</email></hoso></xuat_du_lieu>",
     "EXPORT_FILE_LAYOUT", "hoso[0]/email appears twice"),
    ("hoso-blank.csv", b"," + csv_bytes(HOSO_COLUMNS, []), "EXPORT_FILE_LAYOUT", "the header has an empty column name"),
    ("notes.txt", "hello", "EXPORT_FILE_UNSUPPORTED", "not an export file"),
    ("empty.json", "  \n", "EXPORT_FILE_MALFORMED", "the file is empty"),
]


@pytest.mark.parametrize(("name", "data", "code", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_file_is_quarantined_with_its_reason_and_the_inbox_carries_on(inbox, mapping, name, data, code, reason):
    drop(inbox, "a-good.json", GOOD_JSON)
    drop(inbox, name, data)
    drop(inbox, "z-good.json", GOOD_JSON)
    seen: list[RejectedFile] = []
    source = FileDropSource(inbox, mapping, on_reject=seen.append)
    batches = list(source.changes())
    assert [b.origin for b in batches] == ["a-good.json", "z-good.json"]
    assert all(b.outcomes() == {MAPPED: 2} for b in batches)
    (rejected,) = source.rejected
    assert seen == [rejected]
    assert (rejected.name, rejected.code) == (name, code) and reason in rejected.reason
    assert rejected.moved_to == inbox / "quarantine" / name and rejected.moved_to.read_bytes() == (
        data if isinstance(data, bytes) else data.encode("utf-8"))
    note = (inbox / "quarantine" / f"{name}.reason.txt").read_text(encoding="utf-8")
    assert f"file: {name}\n" in note and f"reason: {code}: " in note and reason in note
    assert not (inbox / name).exists()


def test_too_large_and_unaccepted_formats(inbox, mapping, tmp_path):
    drop(inbox, "big.json", GOOD_JSON)
    small = FileDropSource(inbox, mapping, max_bytes=100)
    assert list(small.changes()) == []
    assert [(r.code, r.reason) for r in small.rejected] == [
        ("EXPORT_FILE_TOO_LARGE", "big.json: larger than the limit of 100 bytes")]

    json_only = tmp_path / "json_only.yaml"
    json_only.write_text(Path(mapping.path).read_text(encoding="utf-8").replace("formats: [json, csv, xml]", "formats: [json]"),
                         encoding="utf-8")
    drop(inbox, "x.xml", xml_bytes([dossier(1)], []))
    source = FileDropSource(inbox, DossierMapping.load(json_only))
    assert list(source.changes()) == []
    assert source.rejected[0].code == "EXPORT_FILE_UNSUPPORTED" and "xml exports are not accepted" in source.rejected[0].reason


def test_a_symlink_is_not_followed(inbox, source, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(GOOD_JSON, encoding="utf-8")
    os.symlink(secret, inbox / "link.json")
    assert list(source.changes()) == []
    assert source.rejected[0].code == "EXPORT_FILE_UNSUPPORTED" and "not a regular file" in source.rejected[0].reason
    assert secret.read_text(encoding="utf-8") == GOOD_JSON


def test_unmappable_records_are_items_not_a_broken_file(inbox, source):
    drop(inbox, "a.json", json.dumps({"hoso": [dossier(1), dossier(2, trang_thai="CHUYEN_LIEN_THONG"),
                                               dossier(3, ngay_nop="31/02/2026"), dossier(4, phien_ban=None)],
                                      "buoc_xu_ly": [step(1, 1, thoi_diem=None)]}))
    (batch,) = list(source.changes())
    assert batch.outcomes() == {MAPPED: 1, "MAPPING_UNKNOWN_CODE": 1, "MAPPING_MALFORMED_VALUE": 1,
                                "MAPPING_MISSING_FIELD": 2}
    assert [i.source_key for i in batch.failures] == [f"hoso:{CODE.format(2)}:2", f"hoso:{CODE.format(3)}:2", None,
                                                      "buoc:1"]
    assert batch.failures[2].ma_ho_so == CODE.format(4)  # still findable by dossier
    # what a dead letter gets; a row without key or version gets a key made from its content
    unkeyed = batch.failures[2].rejected()
    assert unkeyed["source_key"].startswith("dossier:raw:") and unkeyed["partition_key"] == CODE.format(4)
    assert unkeyed["reason_code"] == "MAPPING_MISSING_FIELD" and unkeyed["payload"]["phien_ban"] is None
    assert unkeyed["reason"] == str(batch.failures[2].error)
    again = FileDropSource(source.inbox, source.mapping).read_file(batch.file)
    assert unkeyed["source_key"] == map_rows(source.mapping, DOSSIER, again[DOSSIER])[3].rejected()["source_key"]
    with pytest.raises(ValueError, match="nothing to reject"):
        batch.items[0].rejected()
    assert not source.rejected


# --------------------------------------------------------------------------------------------
# moving files by hand; configuration
# --------------------------------------------------------------------------------------------
def test_mark_done_and_quarantine_by_hand(inbox, source, tmp_path):
    drop(inbox, "a.json", GOOD_JSON)
    drop(inbox, "b.json", GOOD_JSON)
    assert source.mark_done("a.json") == inbox / "processed" / "a.json"
    moved = source.quarantine(inbox / "b.json", "rejected by the operator: wrong agency")
    assert moved == inbox / "quarantine" / "b.json"
    assert "reason: rejected by the operator: wrong agency" in (inbox / "quarantine" / "b.json.reason.txt").read_text()
    with pytest.raises(ValueError, match="is not a file of the inbox"):
        source.mark_done(tmp_path / "elsewhere.json")


def test_configuration_errors(tmp_path, mapping):
    with pytest.raises(ConfigurationError, match="does not exist or is not a folder"):
        FileDropSource(tmp_path / "missing", mapping)
    no_files = DossierMapping.parse(_without_files(mapping), "nofiles.yaml")
    assert no_files.files is None
    with pytest.raises(ConfigurationError, match="no 'files' section"):
        FileDropSource(tmp_path, no_files)


def _without_files(mapping: DossierMapping) -> str:
    lines = Path(mapping.path).read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index("files:\n")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i].startswith(" "))
    return "".join(lines[:start] + lines[end:])


# --------------------------------------------------------------------------------------------
# the sandbox's simulated one-stop system and its exports
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "csv", "xml"])
def test_reads_the_simulators_exports(tmp_path, mapping, fmt):
    onestop = pytest.importorskip("lienthong.sandbox.onestop")
    from lienthong.sandbox.catalogue import Catalogue

    sim = onestop.OneStopSimulator(f"sqlite:///{tmp_path / 'onestop.db'}", seed=5, agencies=2, procedures=8,
                                   catalogue=Catalogue(40, seed=1))
    try:
        sim.populate(40)
        inbox = tmp_path / "inbox"
        sim.export_files(inbox, format=fmt)
        for kind in onestop.BROKEN_KINDS:
            onestop.write_broken_file(inbox, kind)
        source = FileDropSource(inbox, mapping)
        batches = list(source.changes())
        items = [i for b in batches for i in b.items]
        assert all(i.ok for i in items), [str(i.error) for i in items if not i.ok][:3]
        assert sum(1 for i in items if i.kind == DOSSIER) == sim.db.count("hoso")
        assert sum(1 for i in items if i.kind == STEP) == sim.db.count("hoso_buoc_xu_ly")
        assert sorted(r.name for r in source.rejected) == sorted(
            p.name for p in (inbox / "quarantine").iterdir() if not p.name.endswith(".reason.txt"))
        assert len(source.rejected) == len(onestop.BROKEN_KINDS)
        assert {r.code for r in source.rejected} <= {"EXPORT_FILE_MALFORMED", "EXPORT_FILE_LAYOUT", "EXPORT_FILE_ENCODING",
                                                     "XML_DTD_FORBIDDEN", "XML_ENTITY_FORBIDDEN", "XML_MALFORMED"}
        for batch in batches:
            source.ack(batch)
        assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == []
    finally:
        sim.close()


def result(i: int, n: int, **changes: Any) -> dict[str, Any]:
    row = {"id": i, "so_ho_so": CODE.format(n), "ten_giay_to": "Chứng chỉ hành nghề thú y",
           "ma_giay_to": "KQ-1.004500-1", "ma_thanh_phan": "TP1", "ten_tep": f"{CODE.format(n)}-KQ1.pdf",
           "kieu_tep": "application/pdf", "tep": f"2026/{CODE.format(n)}-KQ1.pdf", "kich_thuoc": 120345,
           "sha256": "ab" * 32, "cap_nhat_luc": "2026-11-20T07:30:00Z"}
    row.update(changes)
    return row


def test_result_documents_come_after_their_dossiers_in_every_format(inbox, mapping, tmp_path):
    from lienthong.mappings.dossier import RESULT

    doc = {"ket_qua": [result(3, 1), result(4, 2, kich_thuoc="nhiều")], "hoso": [dossier(1), dossier(2)]}
    drop(inbox, "onestop-1.json", json.dumps(doc, ensure_ascii=False))
    columns = list(result(3, 1))
    drop(inbox, "ket_qua-2.csv", csv_bytes(columns, [result(5, 1)]))
    drop(inbox, "hoso-2.csv", csv_bytes(list(dossier(1)), [dossier(1, phien_ban=3)]))
    batches = {b.origin: b for b in FileDropSource(inbox, mapping).changes()}
    # CSV: hoso-2.csv before ket_qua-2.csv, whatever the names' order
    assert list(batches) == ["hoso-2.csv", "ket_qua-2.csv", "onestop-1.json"]
    assert batches["ket_qua-2.csv"].items[0].kind == RESULT
    first = batches["onestop-1.json"]
    assert [i.kind for i in first.items] == [DOSSIER, DOSSIER, RESULT, RESULT]
    assert first.items[2].change.record == {
        "MaHoSo": CODE.format(1), "TenGiayTo": "Chứng chỉ hành nghề thú y", "MaThanhPhanHoSo": "TP1",
        "MaGiayToKetQua": "KQ-1.004500-1", "TenTep": f"{CODE.format(1)}-KQ1.pdf", "KieuTep": "application/pdf",
        "TepKetQua": f"2026/{CODE.format(1)}-KQ1.pdf", "KichThuoc": 120345, "SHA256": "ab" * 32}
    assert first.items[2].source_key == "ketqua:3"
    assert first.items[3].error.code == "MAPPING_MALFORMED_VALUE"  # a size that is not a number
