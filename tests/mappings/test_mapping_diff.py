"""Readable, stable diffs between stored procedure documents."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from lienthong.mappings.diff import Change, diff_documents, format_diff
from lienthong.mappings.procedure import content_hash, from_national


@pytest.fixture
def doc(record) -> dict[str, Any]:
    """The document of a record with channels 1, 2, 3, each with one time and one fee."""
    return from_national(record).to_document()


def channel(d: dict[str, Any], kenh: int) -> dict[str, Any]:
    return next(c for c in d["channels"] if c["kenh"] == kenh)


def test_equal_documents_have_no_changes(doc):
    assert diff_documents(doc, copy.deepcopy(doc)) == []
    assert format_diff([]) == []


def test_scalar_change(doc):
    new = copy.deepcopy(doc)
    new["name"] = "Cấp lại giấy chứng nhận"
    assert diff_documents(doc, new) == [Change("name", "changed", doc["name"], "Cấp lại giấy chứng nhận")]
    assert format_diff(diff_documents(doc, new)) == [f"~ name: {doc['name']} → Cấp lại giấy chứng nhận"]


def test_fee_change_on_one_channel_is_one_change_with_a_readable_path(doc):
    new = copy.deepcopy(doc)
    fee = channel(new, 2)["times"][0]["fees"][0]
    old_amount, fee["amount"] = fee["amount"], "50000"
    changes = diff_documents(doc, new)
    path = f"channels[kenh=2].times[0].fees[code={fee['code']}].amount"
    assert changes == [Change(path, "changed", old_amount, "50000")]
    assert format_diff(changes) == [f"~ {path}: {old_amount} → 50000"]


def test_processing_time_change(doc):
    new = copy.deepcopy(doc)
    channel(doc, 2)["times"][0]["amount"] = "15"
    channel(new, 2)["times"][0]["amount"] = "10"
    assert format_diff(diff_documents(doc, new)) == ["~ channels[kenh=2].times[0].amount: 15 → 10"]


def test_channel_added_in_front_is_matched_by_kenh_not_position(doc):
    old = copy.deepcopy(doc)
    old["channels"] = [c for c in doc["channels"] if c["kenh"] != 1]  # 2, 3
    changes = diff_documents(old, doc)  # 1 now comes first
    assert changes == [Change("channels[kenh=1]", "added", None, channel(doc, 1))]
    (line,) = format_diff(changes)
    assert line.startswith('+ channels[kenh=1]: {"kenh": 1, "label": "Trực tiếp"')


def test_channel_removed(doc):
    new = copy.deepcopy(doc)
    new["channels"] = [c for c in doc["channels"] if c["kenh"] != 3]
    changes = diff_documents(doc, new)
    assert changes == [Change("channels[kenh=3]", "removed", channel(doc, 3), None)]
    assert format_diff(changes)[0].startswith("- channels[kenh=3]: {")


def test_documents_and_legal_bases_are_matched_by_their_codes(doc):
    new = copy.deepcopy(doc)
    documents = new["components"][0]["documents"]
    gone = documents.pop(0)
    documents.append({"code": "GT-MOI", "name": "Tờ khai điện tử", "form_name": None, "url": None})
    new["legal_bases"][0]["title"] = "Luật sửa đổi"
    changes = diff_documents(doc, new)
    assert [(c.path, c.kind) for c in changes] == [
        (f"components[0].documents[code={gone['code']}]", "removed"),
        ("components[0].documents[code=GT-MOI]", "added"),
        (f"legal_bases[number={doc['legal_bases'][0]['number']}].title", "changed"),
    ]


def test_steps_are_compared_by_position(doc):
    new = copy.deepcopy(doc)
    new["steps"][2] = "Bước 3: Thẩm định hồ sơ trong thời hạn 10 ngày làm việc."
    new["steps"].append("Bước 5: Lưu hồ sơ.")
    changes = diff_documents(doc, new)
    assert [(c.path, c.kind) for c in changes] == [("steps[2]", "changed"), ("steps[4]", "added")]
    assert format_diff(changes)[1] == "+ steps[4]: Bước 5: Lưu hồ sơ."


def test_optional_text_and_extra_fields_appear_and_disappear(doc):
    new = copy.deepcopy(doc)
    old_requirement = doc["requirements"]
    new["requirements"] = None
    new["extra"]["MACHUONGTRINH"] = "CT-2026"
    fee = channel(new, 1)["times"][0]["fees"][0]
    fee["extra"] = {"HINHTHUCTHU": "Trực tuyến"}
    changes = diff_documents(doc, new)
    assert Change("requirements", "changed", old_requirement, None) in changes
    assert Change("extra.MACHUONGTRINH", "added", None, "CT-2026") in changes
    assert Change(f"channels[kenh=1].times[0].fees[code={fee['code']}].extra", "added", None,
                  {"HINHTHUCTHU": "Trực tuyến"}) in changes
    assert "~ requirements: " + (old_requirement or "∅") + " → ∅" in format_diff(changes)
    assert diff_documents(new, doc)[-1] == Change("extra.MACHUONGTRINH", "removed", "CT-2026", None)


def test_reordering_a_keyed_list_is_reported(doc):
    new = copy.deepcopy(doc)
    new["channels"].reverse()
    assert diff_documents(doc, new) == [Change("channels#order", "changed", [1, 2, 3], [3, 2, 1])]


def test_duplicate_keys_fall_back_to_positions(doc):
    old = copy.deepcopy(doc)
    fees = channel(old, 1)["times"][0]["fees"]
    fees.append(dict(fees[0], amount="1"))  # the same fee code twice
    new = copy.deepcopy(old)
    channel(new, 1)["times"][0]["fees"][1]["amount"] = "2"
    assert diff_documents(old, new) == [Change("channels[kenh=1].times[0].fees[1].amount", "changed", "1", "2")]


def test_a_change_of_type_is_a_change():
    assert diff_documents({"status": 1}, {"status": "1"}) == [Change("status", "changed", 1, "1")]
    assert diff_documents({"published": True}, {"published": 1}) == [Change("published", "changed", True, 1)]


def test_changes_follow_document_order(doc):
    new = copy.deepcopy(doc)
    new["online_level"] = "thong_tin"
    new["name"] = "Tên mới"
    new["subjects"] = new["subjects"][:-1]
    assert [c.path.split("[")[0] for c in diff_documents(doc, new)] == ["name", "subjects", "online_level"]


def test_format_diff_keeps_one_line_per_change_and_shows_empty_text():
    changes = [Change("requirements", "changed", "Dòng 1\nDòng 2", ""),
               Change("extra.MOTA", "added", None, "x" * 500)]
    lines = format_diff(changes, width=40)
    assert lines[0] == '~ requirements: Dòng 1\\nDòng 2 → ""'
    assert len(lines[1]) == len("+ extra.MOTA: ") + 40 and lines[1].endswith("…")


def test_diff_is_empty_exactly_when_the_hash_says_unchanged(catalogue, national):
    """Against the sandbox moving its catalogue: a new revision brings new fees/times, which the diff names."""
    moved = type(catalogue)(size=catalogue.size, seed=catalogue.seed)
    seen_changes = 0
    for code in catalogue.codes()[:40]:
        before = from_national(national(code))
        moved.touch(code, datetime(2026, 2, 1, 9, 0, tzinfo=UTC))
        after = from_national(moved.record(code))
        changes = [c for c in diff_documents(before.to_document(), after.to_document()) if c.path != "updated_at"]
        assert (content_hash(before) == content_hash(after)) == (changes == [])
        assert all(c.path.startswith(("channels[", "steps[", "requirements")) for c in changes), changes
        seen_changes += len(changes)
    assert seen_changes
