"""Catalogue revisions: a deterministic, moving national catalogue for incremental-sync tests."""

from __future__ import annotations

import threading
import time
import unicodedata
from datetime import timedelta

import pytest
from lienthong.connectors.payload import element
from lienthong.connectors.services import SERVICES
from lienthong.sandbox.catalogue import (
    ABOLISHED,
    CATALOGUE_EPOCH,
    MAX_REVISION,
    PUBLISHED,
    Catalogue,
    amended_name,
    revision_time,
)
from lienthong.sandbox.server import build_parser, config_from_args
from lxml import etree

NS = SERVICES["csdl_tthc"].namespace


@pytest.fixture(scope="module")
def csdl_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SERVICES["csdl_tthc"].xsd_path)))


@pytest.fixture(scope="module")
def national() -> Catalogue:
    """20,000 procedures at revision 5 (read-only in the tests that share it)."""
    return Catalogue(20_000, seed=9, revision=5)


def listing(cat: Catalogue, *, since=None, status=None, page_size: int = 1000) -> list:
    """Every summary of a listing, paged as a sync would page it."""
    total, first = cat.page(1, page_size, since=since, status=status)
    out = list(first)
    page = 2
    while len(out) < total:
        _total, more = cat.page(page, page_size, since=since, status=status)
        assert more, f"page {page} empty before {total} items"
        out += more
        page += 1
    return out


# ------------------------------------------------------------------------------------ determinism
def test_same_parameters_same_catalogue_however_the_revision_was_reached():
    direct = Catalogue(3000, seed=4, revision=6)
    stepped = Catalogue(3000, seed=4)
    for _ in range(6):
        listing(stepped)  # queries in between must not influence what comes next
        stepped.record(stepped.summary(17).code)
        stepped.advance()
    jumped = Catalogue(3000, seed=4)
    jumped.set_revision(9)
    jumped.set_revision(6)  # back: rebuilt from revision 0
    reference = listing(direct)
    for other in (stepped, jumped):
        assert other.revision == 6
        assert listing(other) == reference
        assert [other.changes(r) for r in range(1, 7)] == [direct.changes(r) for r in range(1, 7)]
    touched = sorted(set().union(*(direct.changes(r).listed for r in range(1, 7))))
    for code in touched[::7]:
        assert direct.record(code) == stepped.record(code) == jumped.record(code)


def test_another_seed_or_other_rates_move_differently():
    a, b = Catalogue(2000, seed=1, revision=1), Catalogue(2000, seed=2, revision=1)
    assert a.changes(1).changed != b.changes(1).changed
    busy = Catalogue(2000, seed=1, revision=1, change_rate=0.05)
    assert len(busy.changes(1).changed) == 100 and len(a.changes(1).changed) == 20


def test_revision_zero_is_the_catalogue_as_generated():
    plain, explicit = Catalogue(300, seed=1), Catalogue(300, seed=1, revision=0)
    assert listing(plain) == listing(explicit)
    assert all(s.revision == 0 and not s.removed and s.updated < CATALOGUE_EPOCH for s in listing(plain))
    moved = Catalogue(300, seed=1, revision=4)
    assert listing(moved) != listing(plain)
    moved.set_revision(0)
    assert moved.revision == 0 and moved.count == moved.total == 300
    assert listing(moved) == listing(plain)
    code = plain.summary(42).code
    assert moved.record(code) == plain.record(code)


# ------------------------------------------------------------------------------------ rates
def test_rates_at_national_scale(national):
    present = 20_000
    for r in range(1, 6):
        done = national.changes(r)
        assert done.at == revision_time(r)
        assert abs(len(done.changed) / present - 0.01) <= 0.003
        assert abs(len(done.added) / present - 0.002) <= 0.0006
        assert abs(len(done.unpublished) / present - 0.001) <= 0.0004
        assert abs(len(done.removed) / present - 0.0005) <= 0.0003
        sets = (set(done.changed), set(done.added), set(done.unpublished), set(done.removed))
        assert sum(map(len, sets)) == len(set().union(*sets)), "the sets of one revision are disjoint"
        present += len(done.added) - len(done.removed)
    assert national.count == present > 20_000
    assert national.total == 20_000 + sum(len(national.changes(r).added) for r in range(1, 6))


def test_tiny_rates_still_move_a_small_catalogue_on_average():
    cat = Catalogue(300, seed=1)
    cat.advance(50)
    changed = sum(len(cat.changes(r).changed) for r in range(1, 51))
    added = sum(len(cat.changes(r).added) for r in range(1, 51))
    assert 100 <= changed <= 200  # 300 × 1 % × 50 = 150
    assert 10 <= added <= 60  # 300 × 0.2 % × 50 = 30


def test_an_exhausted_catalogue_does_not_hang():
    cat = Catalogue(5, seed=3, change_rate=0.3, unpublish_rate=0.3, remove_rate=0.4, add_rate=0.0)
    started = time.perf_counter()
    cat.advance(60)
    assert time.perf_counter() - started < 1
    removed = sum(len(cat.changes(r).removed) for r in range(1, 61))
    assert cat.count == 5 - removed >= 0
    assert len(listing(cat)) == cat.count


@pytest.mark.parametrize("kwargs", [
    {"change_rate": -0.01}, {"add_rate": 1.5}, {"unpublish_rate": float("nan")},
    {"change_rate": 0.6, "remove_rate": 0.5}, {"revision": -1}, {"revision": MAX_REVISION + 1},
])
def test_impossible_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Catalogue(100, **kwargs)


def test_bad_moves_are_refused():
    cat = Catalogue(100, revision=2)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            cat.advance(bad)
    with pytest.raises(ValueError, match="between 1 and the current revision 2"):
        cat.changes(3)
    with pytest.raises(ValueError):
        cat.changes(0)
    with pytest.raises(ValueError, match="beyond the last one"):
        cat.advance(MAX_REVISION)
    assert cat.advance(0) == 2 and cat.revision == 2


# ------------------------------------------------------------------------------------ listings
def test_changed_since_lists_exactly_what_the_revision_touched(national):
    for r in (1, 3, 5):
        since = revision_time(r)
        listed = listing(national, since=since)
        expected = set().union(*(national.changes(k).listed for k in range(r, 6)))
        expected -= set().union(*(national.changes(k).removed for k in range(r + 1, 6)))
        assert {s.code for s in listed} == expected
        assert all(s.updated >= since and s.revision >= r for s in listed)
    last = national.changes(5)
    just_after = listing(national, since=revision_time(5) + timedelta(seconds=1))
    assert just_after == []
    by_code = {s.code: s for s in listing(national, since=revision_time(5))}
    assert {c for c, s in by_code.items() if s.status == ABOLISHED} >= set(last.unpublished)
    assert all(by_code[c].status == PUBLISHED for c in last.added + last.changed)


def test_full_listing_is_ordered_by_code_with_abolished_ones_and_without_removed(national):
    everything = listing(national)
    codes = [s.code for s in everything]
    assert codes == sorted(codes) and len(set(codes)) == len(codes) == national.count
    assert codes[0].startswith("1.") and codes[-1].startswith("2.")
    removed = set().union(*(national.changes(r).removed for r in range(1, 6)))
    assert removed and not removed & set(codes)
    unpublished = set().union(*(national.changes(r).unpublished for r in range(1, 6)))
    statuses = {s.code: s.status for s in everything}
    assert all(statuses[c] == ABOLISHED for c in unpublished - removed)
    # new ministry-level codes sit between the old ministry codes and the provincial ones
    added_bo = [c for r in range(1, 6) for c in national.changes(r).added if c.startswith("1.")]
    last_old_bo = max(c for c in codes if c.startswith("1.") and c not in added_bo)
    assert added_bo and all(last_old_bo < c < codes[-1] for c in added_bo)
    total_abolished, _ = national.page(1, 1, status=ABOLISHED)
    total_published, _ = national.page(1, 1, status=PUBLISHED)
    assert total_abolished + total_published == national.count


def test_removed_procedures_are_gone_for_a_full_sync_to_notice():
    cat = Catalogue(4000, seed=5, remove_rate=0.01)
    before = {s.code for s in listing(cat)}
    cat.advance()
    gone = cat.changes(1).removed
    assert len(gone) == 40
    after = {s.code for s in listing(cat)}
    assert before - after == set(gone)
    code = gone[0]
    assert cat.record(code) is None and cat.index_of(code) is None
    assert cat.removed_in(code) == 1 and cat.removed_in(sorted(after)[0]) is None
    assert cat.removed_in("9.999999") is None
    with pytest.raises(KeyError):
        cat.touch(code, revision_time(2))
    summary = cat.summary(int(code[2:]) - 1000)
    assert summary.removed and summary.code == code


# ------------------------------------------------------------------------------------ records
def test_changed_records_differ_and_stay_the_same_procedure(csdl_schema):
    before = Catalogue(6000, seed=2)
    after = Catalogue(6000, seed=2, revision=1)
    changed = after.changes(1).changed
    assert len(changed) == 60
    aspects = {"TENTTHC": 0, "CACHTHUCTHUCHIEN": 0, "THANHPHANHOSO": 0, "MUCDO": 0}
    for code in changed:
        old, new = before.record(code), after.record(code)
        assert new != old
        assert new["NGAYCAPNHAT"] == revision_time(1) > old["NGAYCAPNHAT"]
        assert (new["MATTHC"], new["MACOQUANCONGBO"], new["COQUANTHUCHIEN"]) == (
            old["MATTHC"], old["MACOQUANCONGBO"], old["COQUANTHUCHIEN"])
        assert new["CANCUPHAPLY"][-1]["SOVANBAN"] == "1001/QĐ-BNNMT"
        for key in aspects:
            aspects[key] += new[key] != old[key]
        assert csdl_schema.validate(element(NS, "LayThuTucResult", {"ThuTuc": new})), csdl_schema.error_log.last_error
        for text in (new["TENTTHC"], new["CANCUPHAPLY"][-1]["TENVANBAN"], new["CANCUPHAPLY"][-1]["SOVANBAN"]):
            assert unicodedata.is_normalized("NFC", text)
    assert all(aspects.values()), f"every aspect changes for some procedure: {aspects}"
    assert aspects["CACHTHUCTHUCHIEN"] > 30  # fees or processing times: most changes
    # a procedure no revision touched is exactly as before
    untouched = next(s.code for s in listing(after) if s.revision == 0)
    assert after.record(untouched) == before.record(untouched)


def test_abolished_and_added_records(csdl_schema):
    cat = Catalogue(5000, seed=6, revision=2)
    [abolished, *_] = cat.changes(2).unpublished
    record = cat.record(abolished)
    assert record["TRANGTHAI"] == ABOLISHED and record["NGAYCAPNHAT"] == revision_time(2)
    assert record["TENTTHC"] == Catalogue(5000, seed=6).record(abolished)["TENTTHC"]
    added = cat.changes(2).added
    assert added and all(int(c[2:]) - 1000 >= 5000 for c in added)
    for code in added:
        record = cat.record(code)
        assert record["TRANGTHAI"] == PUBLISHED and record["NGAYCAPNHAT"] == revision_time(2)
        assert csdl_schema.validate(element(NS, "LayThuTucResult", {"ThuTuc": record}))
        assert unicodedata.is_normalized("NFC", record["TENTTHC"])
    assert Catalogue(5000, seed=6).record(added[0]) is None  # not there before revision 2


def test_amended_names_read_like_real_ones():
    assert amended_name("Cấp giấy chứng nhận đăng ký tàu cá") == "Cấp, cấp lại giấy chứng nhận đăng ký tàu cá"
    assert amended_name("Gia hạn giấy phép xuất khẩu") == "Gia hạn, điều chỉnh giấy phép xuất khẩu"
    assert amended_name("Cấp lại giấy chứng nhận đăng ký tàu cá") is None
    assert amended_name("Đăng ký lại thức ăn vào danh mục") is None
    assert amended_name("Nghiệm thu, đánh giá dự án khuyến nông Trung ương hàng năm") is None


def test_touch_still_works_on_top_of_revisions():
    cat = Catalogue(500, seed=1, revision=2)
    code = next(s.code for s in listing(cat) if s.revision == 0)
    when = revision_time(2) + timedelta(minutes=30)
    cat.touch(code, when)
    assert [s.code for s in listing(cat, since=when)] == [code]
    cat.advance()  # touches survive moving forward...
    assert cat.summary(cat.index_of(code)).updated >= when
    cat.set_revision(1)  # ...not moving back
    assert cat.summary(cat.index_of(code)).updated < CATALOGUE_EPOCH


# ------------------------------------------------------------------------------------ cost, threads
def test_national_scale_revisions_are_cheap():
    started = time.perf_counter()
    cat = Catalogue(20_000, seed=11, revision=5)
    everything = listing(cat)
    recent = listing(cat, since=revision_time(5))
    elapsed = time.perf_counter() - started
    assert len(everything) == cat.count and recent
    assert elapsed < 2.0, f"revision 5 of 20,000 + full listing took {elapsed:.2f} s"


def test_readers_see_whole_revisions_while_it_advances():
    cat = Catalogue(3000, seed=8)
    errors: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            total, items = cat.page(1, 1000)
            codes = [s.code for s in items]
            if codes != sorted(codes) or len(set(codes)) != len(codes) or total < len(codes):
                errors.append(f"inconsistent page: total {total}, {len(codes)} codes")

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for _ in range(30):
            cat.advance()
    finally:
        stop.set()
        for t in readers:
            t.join(10)
    assert not errors
    assert listing(cat) == listing(Catalogue(3000, seed=8, revision=30))


# ------------------------------------------------------------------------------------ server
def test_the_server_serves_the_moving_catalogue(make_sandbox, hub_signer, hub_verifier):
    from sandbox_helpers import SandboxClient

    sandbox = make_sandbox(procedures=2000, seed=3, revision=2, change_rate=0.02, remove_rate=0.002)
    client = SandboxClient(sandbox.base_url, hub_signer, hub_verifier)
    assert sandbox.catalogue.revision == 2
    assert sandbox.advance_catalogue() == 3
    done = sandbox.catalogue.changes(3)

    def codes(**request) -> tuple[int, set[str], dict[str, str]]:
        result = client.call("csdl_tthc", "LayDanhSachTTHC", {**request, "Trang": 1, "SoBanGhi": 1000}).result
        items = result.findall(f"{{{NS}}}TTHC")
        return (int(result.findtext(f"{{{NS}}}TongSo")), {el.findtext(f"{{{NS}}}MATTHC") for el in items},
                {el.findtext(f"{{{NS}}}MATTHC"): el.findtext(f"{{{NS}}}TRANGTHAI") for el in items})

    total, since, statuses = codes(TuNgay=revision_time(3).isoformat())
    assert since == done.listed and total == len(done.listed)
    assert all(statuses[c] == "2" for c in done.unpublished)
    changed = client.call("csdl_tthc", "LayThuTuc", {"MATTHC": done.changed[0]}).result
    assert changed.findtext(f".//{{{NS}}}NGAYCAPNHAT") == "2026-01-01T03:00:00+07:00"
    gone = client.call("csdl_tthc", "LayThuTuc", {"MATTHC": done.removed[0]})
    assert gone.fault_code == "NOT_FOUND"
    full_total, _codes, _ = codes()
    assert full_total == sandbox.catalogue.count


def test_the_server_can_advance_on_its_own(make_sandbox):
    sandbox = make_sandbox(procedures=500, advance_every=0.05)
    deadline = time.monotonic() + 5
    while sandbox.catalogue.revision < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sandbox.catalogue.revision >= 3
    sandbox.stop()
    stopped_at = sandbox.catalogue.revision
    time.sleep(0.15)
    assert sandbox.catalogue.revision == stopped_at


def test_catalogue_options_on_the_command_line(tmp_home):
    args = build_parser().parse_args([
        "--store", ":memory:", "--procedures", "20000", "--revision", "7", "--change-rate", "0.02",
        "--add-rate", "0.005", "--unpublish-rate", "0.002", "--remove-rate", "0", "--advance-every", "30",
    ])
    config = config_from_args(args)
    assert (config.procedures, config.revision, config.advance_every) == (20000, 7, 30.0)
    assert (config.change_rate, config.add_rate, config.unpublish_rate, config.remove_rate) == (0.02, 0.005, 0.002, 0.0)
    defaults = config_from_args(build_parser().parse_args(["--store", ":memory:"]))
    assert (defaults.revision, defaults.change_rate, defaults.add_rate, defaults.unpublish_rate,
            defaults.remove_rate, defaults.advance_every) == (0, 0.01, 0.002, 0.001, 0.0005, None)


def test_the_server_refuses_a_bad_catalogue_setting(make_sandbox):
    from lienthong.hub.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="advance_every"):
        make_sandbox(advance_every=0)
    with pytest.raises(ValueError, match="change_rate"):
        make_sandbox(change_rate=2.0)
