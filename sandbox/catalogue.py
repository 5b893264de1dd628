"""A deterministic, synthetic national procedure catalogue for the CSDL TTHC emulator.

Why synthetic but seeded from real data: the hub's procedure sync must be exercised with records
that look like the national ones (Vietnamese names, several agencies and levels, per-channel times
and fees, components, legal bases) and in realistic volumes (tens of thousands), yet tests need
the same catalogue on every run and on every machine. So:

* names, lead agencies and online levels start from ~60 real procedures of the agriculture
  ministry (``data/procedures.tsv``, extracted once from the ministry's 2013 online-service plan),
  and are varied ("cấp lại", "gia hạn", "điều chỉnh"…, provincial copies) to reach any size;
* every record is a pure function of ``(seed, index, content revision)``: nothing is generated
  until asked for, and the per-procedure state is a handful of compact arrays (a 20,000-procedure
  catalogue costs a few hundred kilobytes, never a kept XML record).

Revisions: why the catalogue moves. The national catalogue changes every week (procedures amended,
announced, abolished, withdrawn) and the hub syncs it incrementally (``LayDanhSachTTHC`` with
``TuNgay``). To test that sync, the catalogue steps through *revisions*: revision ``r ≥ 1``
applies, on top of revision ``r - 1``, a change set drawn from ``random.Random(seed, r)`` alone:

* ``change_rate`` (default 1 %) of the procedures present get new content (fees, processing
  times, components, sometimes the name or the online level, plus the publication decision of the
  revision in CANCUPHAPLY, so the record always differs);
* ``add_rate`` (0.2 %) new procedures appear, with codes beyond every earlier one;
* ``unpublish_rate`` (0.1 %) published procedures become abolished (TRANGTHAI 2, "bãi bỏ");
* ``remove_rate`` (0.05 %) procedures disappear altogether: no longer listed, ``LayThuTuc`` answers
  NOT_FOUND (only a full listing can reveal that).

Counts are ``rate × procedures present`` with the fraction rounded up or down by the revision's
own draw, so small catalogues still move. The four sets of one revision are disjoint. Every
procedure a revision touches (except removed ones) gets NGAYCAPNHAT = :func:`revision_time`
``(r)`` = ``CATALOGUE_EPOCH + r`` hours. The original dates all lie in the two years *before*
CATALOGUE_EPOCH, so revision times strictly increase, follow every original date, and
``TuNgay = revision_time(r)`` selects exactly what revisions ``≥ r`` touched.

Revision times are catalogue time, not wall-clock time: the catalogue at revision 5 is the same
whenever it is built, which is what makes runs reproducible. A sync must therefore take its next
``TuNgay`` from the NGAYCAPNHAT values the service returned (the highest seen), never from its own
clock, which is also the only safe rule against the real service (clock skew, late commits).
Revisions up to about 7,800 (ten and a half months) fall before late 2026, so they are also in the
past of the machines running the tests; nothing here depends on that.

Same ``(size, seed, rates, revision)`` → the same catalogue, byte for byte, however it was reached
(``advance`` one at a time, ``set_revision`` forward or back) and whatever was queried before.
:meth:`Catalogue.touch` is an extra, manual change outside the sequence (kept when moving
forward, dropped when ``set_revision`` goes back).

Thread safety: the state of a revision is published as one immutable snapshot; readers take the
snapshot once per call, writers (``advance``, ``set_revision``, ``touch``) build the next one
under a lock. A listing page and a record are therefore each consistent, while a sync paging
through a listing may see the catalogue move between pages, as against the real service.

Codes: MATTHC is ``1.00xxxx`` for ministry-level and ``2.00xxxx`` for provincial procedures
(suffix = 1000 + index, unique); listings are ordered by code. Agency codes follow Decision
20/2020/QĐ-TTg shapes (``000.00.NN.G10`` ministry units, ``000.00.00.Hnn`` provinces). Province
H-codes here are sequential and synthetic: do not read them as the official ones.
"""

from __future__ import annotations

import csv
import random
import re
import threading
import unicodedata
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

MINISTRY_CODE = "000.00.00.G10"
MINISTRY_NAME = "Bộ Nông nghiệp và Môi trường"

#: the moment the synthetic catalogue "was published"; original update dates fall in the two years
#: before it, revision r is dated CATALOGUE_EPOCH + r × REVISION_STEP
CATALOGUE_EPOCH = datetime(2026, 1, 1, tzinfo=VN_TZ)
REVISION_STEP = timedelta(hours=1)
#: replaying revisions costs ~rate × size draws each; 10,000 hourly revisions span 14 months
MAX_REVISION = 10_000
_SPREAD_DAYS = 730
_SUFFIX_BASE = 1000
#: codes are [12].00xxxx with xxxx = 1000 + index: six digits in all, additions included
MAX_PROCEDURES = 999_999 - _SUFFIX_BASE

#: TRANGTHAI per the XSD: 1 published and in force, 2 abolished (bãi bỏ)
PUBLISHED = 1
ABOLISHED = 2

DEFAULT_CHANGE_RATE = 0.01
DEFAULT_ADD_RATE = 0.002
DEFAULT_UNPUBLISH_RATE = 0.001
DEFAULT_REMOVE_RATE = 0.0005

_BASE = 255  # status byte: "as generated from the seed"
_EPOCH_TS = int(CATALOGUE_EPOCH.timestamp())
_STEP_S = int(REVISION_STEP.total_seconds())


def revision_time(revision: int) -> datetime:
    """NGAYCAPNHAT of everything revision ``revision`` touched (aware, Vietnam time)."""
    return CATALOGUE_EPOCH + revision * REVISION_STEP


@dataclass(frozen=True)
class Agency:
    code: str  # MADONVI
    name: str  # TENDONVI
    level: str  # CAPDONVI: BO | TINH | HUYEN | XA | KHAC


@dataclass(frozen=True)
class Field:
    code: str  # MALINHVUC
    name: str  # TENLINHVUC
    sector: str  # MANGANH


@dataclass(frozen=True)
class SeedProcedure:
    name: str
    lead_agency: str
    level: int  # highest planned "mức độ" (3 or 4)


@dataclass(frozen=True)
class Summary:
    """What LayDanhSachTTHC lists for one procedure (cheap: no full record is built)."""

    index: int
    code: str  # MATTHC
    updated: datetime  # NGAYCAPNHAT, aware
    status: int  # TRANGTHAI
    level: str  # BO | TINH
    #: catalogue revision that last moved NGAYCAPNHAT (0 = the original date)
    revision: int
    #: withdrawn from the catalogue: not listed, LayThuTuc answers NOT_FOUND
    removed: bool = False


@dataclass(frozen=True)
class ChangeRates:
    """Shares of the procedures present that one revision changes, adds, abolishes and removes."""

    change: float = DEFAULT_CHANGE_RATE
    add: float = DEFAULT_ADD_RATE
    unpublish: float = DEFAULT_UNPUBLISH_RATE
    remove: float = DEFAULT_REMOVE_RATE

    def __post_init__(self) -> None:
        for name in ("change", "add", "unpublish", "remove"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}_rate must be between 0 and 1, not {value}")
        if self.change + self.unpublish + self.remove > 1.0 + 1e-9:
            raise ValueError(f"change_rate + unpublish_rate + remove_rate must not exceed 1 ({self})")


@dataclass(frozen=True)
class ChangeSet:
    """What one revision did, as codes in code order (the expected outcome of an incremental sync)."""

    revision: int
    at: datetime  # NGAYCAPNHAT given to every procedure the revision touched
    changed: tuple[str, ...]
    added: tuple[str, ...]
    unpublished: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def listed(self) -> frozenset[str]:
        """Codes a listing with ``TuNgay = at`` shows for this revision (removed ones are gone)."""
        return frozenset(self.changed + self.added + self.unpublished)


# --------------------------------------------------------------------------------------------
# reference data
# --------------------------------------------------------------------------------------------
FIELDS: tuple[Field, ...] = (
    Field("G10-TS", "Thủy sản", "NN"),
    Field("G10-LN", "Lâm nghiệp", "NN"),
    Field("G10-TL", "Thủy lợi", "NN"),
    Field("G10-TY", "Thú y", "NN"),
    Field("G10-TT", "Trồng trọt", "NN"),
    Field("G10-CN", "Chăn nuôi", "NN"),
    Field("G10-QLCL", "Quản lý chất lượng nông lâm sản và thủy sản", "NN"),
    Field("G10-BVTV", "Bảo vệ thực vật", "NN"),
    Field("G10-HTQT", "Hợp tác quốc tế", "NN"),
    Field("G10-KN", "Khuyến nông", "NN"),
    Field("G10-PCTT", "Phòng, chống thiên tai", "NN"),
    Field("G10-MT", "Môi trường", "MT"),
    Field("G10-TNN", "Tài nguyên nước", "MT"),
    Field("G10-DD", "Đất đai", "MT"),
    Field("G10-KTTV", "Khí tượng thủy văn", "MT"),
)
_FIELD_BY_CODE = {f.code: f for f in FIELDS}

#: ministry units named in the seed list → (agency code, field code)
MINISTRY_UNITS: dict[str, tuple[str, str]] = {
    "Tổng cục Thủy sản": ("000.00.01.G10", "G10-TS"),
    "Tổng cục Lâm nghiệp": ("000.00.02.G10", "G10-LN"),
    "Tổng cục Thủy lợi": ("000.00.03.G10", "G10-TL"),
    "Cục Thú y": ("000.00.04.G10", "G10-TY"),
    "Cục Trồng trọt": ("000.00.05.G10", "G10-TT"),
    "Cục Chăn nuôi": ("000.00.06.G10", "G10-CN"),
    "Cục Quản lý chất lượng NLS & TS": ("000.00.07.G10", "G10-QLCL"),
    "Cục Bảo vệ thực vật": ("000.00.08.G10", "G10-BVTV"),
    "Vụ Hợp tác Quốc tế": ("000.00.09.G10", "G10-HTQT"),
    "Trung tâm Khuyến nông quốc gia": ("000.00.10.G10", "G10-KN"),
    "Cục Quản lý đê điều và Phòng, chống thiên tai": ("000.00.11.G10", "G10-PCTT"),
    "Cục Môi trường": ("000.00.12.G10", "G10-MT"),
    "Cục Quản lý tài nguyên nước": ("000.00.13.G10", "G10-TNN"),
    "Cục Quản lý đất đai": ("000.00.14.G10", "G10-DD"),
    "Cục Khí tượng Thủy văn": ("000.00.15.G10", "G10-KTTV"),
}

#: the 34 provincial-level units after the 2025 merger; (name, is a centrally-run city)
PROVINCES: tuple[tuple[str, bool], ...] = (
    ("Hà Nội", True), ("Huế", True), ("Hải Phòng", True), ("Đà Nẵng", True),
    ("Hồ Chí Minh", True), ("Cần Thơ", True), ("Lai Châu", False), ("Điện Biên", False),
    ("Sơn La", False), ("Lạng Sơn", False), ("Quảng Ninh", False), ("Thanh Hóa", False),
    ("Nghệ An", False), ("Hà Tĩnh", False), ("Cao Bằng", False), ("Tuyên Quang", False),
    ("Lào Cai", False), ("Thái Nguyên", False), ("Phú Thọ", False), ("Bắc Ninh", False),
    ("Hưng Yên", False), ("Ninh Bình", False), ("Quảng Trị", False), ("Quảng Ngãi", False),
    ("Gia Lai", False), ("Khánh Hòa", False), ("Lâm Đồng", False), ("Đắk Lắk", False),
    ("Đồng Nai", False), ("Tây Ninh", False), ("Vĩnh Long", False), ("Đồng Tháp", False),
    ("Cà Mau", False), ("An Giang", False),
)


def _province_label(name: str, city: bool) -> str:
    return f"thành phố {name}" if city else f"tỉnh {name}"


def province_committee(n: int) -> Agency:
    name, city = PROVINCES[n]
    return Agency(f"000.00.00.H{n + 1:02d}", f"Ủy ban nhân dân {_province_label(name, city)}", "TINH")


def province_department(n: int) -> Agency:
    name, city = PROVINCES[n]
    return Agency(f"000.00.12.H{n + 1:02d}", f"Sở Nông nghiệp và Môi trường {_province_label(name, city)}", "TINH")


def province_communes(n: int) -> Agency:
    name, city = PROVINCES[n]
    return Agency(f"000.00.31.H{n + 1:02d}", f"Ủy ban nhân dân cấp xã thuộc {_province_label(name, city)}", "XA")


@cache
def agencies() -> tuple[Agency, ...]:
    """The agency catalogue (LayDanhMucCoQuan): the ministry, its units, each province's bodies."""
    out = [Agency("000.00.00.G22", "Văn phòng Chính phủ", "BO"), Agency(MINISTRY_CODE, MINISTRY_NAME, "BO")]
    out += [Agency(code, name, "BO") for name, (code, _f) in MINISTRY_UNITS.items()]
    for n in range(len(PROVINCES)):
        out += [province_committee(n), province_department(n), province_communes(n)]
    return tuple(out)


# legal bases per field: (number, title)
_LEGAL: dict[str, tuple[tuple[str, str], ...]] = {
    "G10-TS": (("18/2017/QH14", "Luật Thủy sản"), ("26/2019/NĐ-CP", "Nghị định quy định chi tiết một số điều và biện pháp thi hành Luật Thủy sản")),
    "G10-LN": (("16/2017/QH14", "Luật Lâm nghiệp"), ("06/2019/NĐ-CP", "Nghị định về quản lý thực vật rừng, động vật rừng nguy cấp, quý, hiếm và thực thi Công ước CITES")),
    "G10-TL": (("08/2017/QH14", "Luật Thủy lợi"), ("67/2018/NĐ-CP", "Nghị định quy định chi tiết một số điều của Luật Thủy lợi")),
    "G10-TY": (("79/2015/QH13", "Luật Thú y"), ("35/2016/NĐ-CP", "Nghị định quy định chi tiết một số điều của Luật Thú y")),
    "G10-TT": (("31/2018/QH14", "Luật Trồng trọt"), ("94/2019/NĐ-CP", "Nghị định quy định chi tiết một số điều của Luật Trồng trọt về giống cây trồng và canh tác")),
    "G10-CN": (("32/2018/QH14", "Luật Chăn nuôi"), ("13/2020/NĐ-CP", "Nghị định hướng dẫn chi tiết Luật Chăn nuôi")),
    "G10-QLCL": (("55/2010/QH12", "Luật An toàn thực phẩm"), ("15/2018/NĐ-CP", "Nghị định quy định chi tiết thi hành một số điều của Luật An toàn thực phẩm")),
    "G10-BVTV": (("41/2013/QH13", "Luật Bảo vệ và kiểm dịch thực vật"),),
    "G10-HTQT": (("114/2021/NĐ-CP", "Nghị định về quản lý và sử dụng vốn hỗ trợ phát triển chính thức (ODA) và vốn vay ưu đãi của nhà tài trợ nước ngoài"),
                 ("80/2020/NĐ-CP", "Nghị định về quản lý và sử dụng viện trợ không hoàn lại không thuộc hỗ trợ phát triển chính thức")),
    "G10-KN": (("83/2018/NĐ-CP", "Nghị định về khuyến nông"),),
    "G10-PCTT": (("79/2006/QH11", "Luật Đê điều"), ("33/2013/QH13", "Luật Phòng, chống thiên tai")),
}
_LEGAL_COMMON = (
    ("61/2018/NĐ-CP", "Nghị định về thực hiện cơ chế một cửa, một cửa liên thông trong giải quyết thủ tục hành chính"),
    ("42/2022/NĐ-CP", "Nghị định quy định về việc cung cấp thông tin và dịch vụ công trực tuyến của cơ quan nhà nước trên môi trường mạng"),
)

_DOCUMENTS = (
    ("Đơn đề nghị theo mẫu", "Mẫu số 01"),
    ("Bản sao Giấy chứng nhận đăng ký doanh nghiệp hoặc Giấy chứng nhận đăng ký hộ kinh doanh", None),
    ("Bản thuyết minh điều kiện cơ sở vật chất, trang thiết bị", "Mẫu số 02"),
    ("Bản sao hợp đồng thương mại hoặc hợp đồng mua bán", None),
    ("Báo cáo kết quả khảo nghiệm", "Mẫu số 03"),
    ("Danh sách nhân sự kỹ thuật kèm văn bằng, chứng chỉ chuyên môn", "Mẫu số 04"),
    ("Giấy ủy quyền (trường hợp nộp thay)", None),
    ("Bản chính giấy chứng nhận đã được cấp (trường hợp cấp lại, điều chỉnh)", None),
    ("Tài liệu kỹ thuật của sản phẩm bằng tiếng Việt hoặc tiếng Anh", None),
    ("Bản sao kết quả phân tích mẫu của phòng thử nghiệm được chỉ định", None),
)

_SUBJECTS = (
    "Công dân Việt Nam", "Người Việt Nam định cư ở nước ngoài", "Người nước ngoài", "Doanh nghiệp",
    "Hợp tác xã", "Tổ chức (không bao gồm doanh nghiệp, hợp tác xã)", "Tổ chức nước ngoài",
    "Cơ quan nhà nước", "Đơn vị sự nghiệp công lập",
)

_REQUIREMENTS = (
    "Cơ sở phải có đủ điều kiện về cơ sở vật chất, trang thiết bị và nhân lực theo quy định.",
    "Sản phẩm phải có tên trong danh mục được phép lưu hành tại Việt Nam.",
    "Tổ chức, cá nhân phải hoàn thành nghĩa vụ tài chính trước khi nhận kết quả.",
    "Hồ sơ nộp trực tuyến phải được ký số theo quy định.",
)

_FEE_NAMES = ("Phí thẩm định", "Lệ phí cấp giấy", "Phí kiểm tra", "Phí thẩm định điều kiện kinh doanh")

_VARIANT_PREFIXES = {
    "Cấp ": ("Cấp lại ", "Cấp đổi ", "Gia hạn ", "Điều chỉnh nội dung "),
    "Đăng ký ": ("Đăng ký lại ", "Đăng ký thay đổi ", "Đăng ký gia hạn "),
    "Nhập khẩu ": ("Gia hạn giấy phép nhập khẩu ", "Điều chỉnh giấy phép nhập khẩu "),
    "Xuất khẩu ": ("Gia hạn giấy phép xuất khẩu ",),
}


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip())


@cache
def seed_procedures() -> tuple[SeedProcedure, ...]:
    """The real procedures of ``data/procedures.tsv`` (read once per process, from the package)."""
    raw = resources.files("lienthong.sandbox").joinpath("data/procedures.tsv").read_text(encoding="utf-8")
    rows = csv.DictReader((line for line in raw.splitlines() if line and not line.startswith("#")), delimiter="\t")
    out = []
    for row in rows:
        out.append(SeedProcedure(_nfc(row["ten_tthc"]), _nfc(row["co_quan_chu_tri"]), int(row["muc_do"])))
    if not out:  # pragma: no cover - packaging error
        raise RuntimeError("sandbox/data/procedures.tsv holds no procedures")
    return tuple(out)


def lower_first(text: str) -> str:
    """Lower the first letter so a name can follow another phrase ("Giấy chứng nhận" → "giấy chứng
    nhận"); acronyms such as "CITES" or "ODA" stay as they are."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def variant_name(name: str, choice: int) -> str | None:
    """A plausible related procedure name ("Cấp lại …", "Gia hạn …"), or None if none fits."""
    rest = name[len("Thủ tục "):] if name.startswith("Thủ tục ") else name
    for head, prefixes in _VARIANT_PREFIXES.items():
        if rest.startswith(head):
            obj = rest[len(head):]
            if obj.startswith(("lại ", "đổi ", "gia hạn ")):
                return None
            return prefixes[choice % len(prefixes)] + lower_first(obj)
    return None


def _mix(seed: int, index: int) -> int:
    """splitmix64 of (seed, index): a stable, fast per-record hash (independent of PYTHONHASHSEED)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def parse_code(code: str) -> tuple[int, int] | None:
    """``"1.001234"`` → (level digit 1, index 234); None when not a sandbox code."""
    m = re.fullmatch(r"([0-9])\.([0-9]{6})", code or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)) - _SUFFIX_BASE



def _seed_status(h: int) -> int:
    return ABOLISHED if (h >> 40) % 100 < 4 else PUBLISHED  # ~4 % abolished before revision 1


def _seed_updated(h: int) -> datetime:
    return CATALOGUE_EPOCH - timedelta(days=h % _SPREAD_DAYS, seconds=(h >> 20) % 86400)


def _seed_updated_ts(h: int) -> int:
    # same instant as _seed_updated (Vietnam has kept UTC+7 throughout), without building a datetime
    return _EPOCH_TS - (h % _SPREAD_DAYS) * 86400 - (h >> 20) % 86400


#: how a revision may rename a procedure: the national catalogue merges "cấp" and "cấp lại" etc.
_AMENDMENTS = (("Cấp ", "Cấp, cấp lại "), ("Gia hạn ", "Gia hạn, điều chỉnh "), ("Đăng ký ", "Đăng ký, đăng ký lại "))
_AMENDED_ALREADY = ("lại ", "đổi ", "gia hạn ", "điều chỉnh ", "thay đổi ")
#: reclassification of the online level a revision may apply (Decree 42/2022: upgrades only)
_LEVEL_UPGRADES = {"THONG_TIN": "MOT_PHAN", "MUC_DO_3": "MOT_PHAN", "MOT_PHAN": "TOAN_TRINH", "MUC_DO_4": "TOAN_TRINH"}


def amended_name(name: str) -> str | None:
    """The name a procedure may take when amended ("Cấp, cấp lại …"), or None if none fits."""
    rest = name[len("Thủ tục "):] if name.startswith("Thủ tục ") else name
    for head, amended in _AMENDMENTS:
        if rest.startswith(head):
            obj = rest[len(head):]
            if obj.startswith(_AMENDED_ALREADY):
                return None
            return amended + obj
    return None


def _draw_count(rng: random.Random, expected: float) -> int:
    """``expected`` rounded down or up at random, so the mean is exact even for tiny catalogues."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _draw(rng: random.Random, k: int, total: int, ok: Callable[[int], bool], chosen: set[int]) -> list[int]:
    """``k`` distinct indices below ``total`` that pass ``ok`` (which must reject ``chosen``).

    Rejection sampling costs O(k) while most indices are eligible; should the eligible ones become
    rare (a tiny catalogue after many revisions), fall back to sampling the explicit pool, which is
    as deterministic and cannot loop forever.
    """
    picked: list[int] = []
    budget = 16 * k + 64
    while len(picked) < k and budget:
        budget -= 1
        i = rng.randrange(total)
        if ok(i):
            picked.append(i)
            chosen.add(i)
    if len(picked) < k:
        pool = [i for i in range(total) if ok(i)]
        extra = rng.sample(pool, min(k - len(picked), len(pool)))
        picked += extra
        chosen.update(extra)
    return picked


@dataclass(frozen=True)
class _Revision:
    """The indices one revision touched; codes are derived on demand (see :meth:`Catalogue.changes`)."""

    changed: array
    added_from: int
    added: int
    unpublished: array
    removed: array


@dataclass(frozen=True)
class _State:
    """One published snapshot. Never mutated once published: writers copy, change, publish anew."""

    revision: int
    total: int  # indices created: initial size + additions
    removed: int  # how many of them are withdrawn
    stamp_rev: array  # 'I' per index: revision that last moved NGAYCAPNHAT, 0 = the original date
    content_rev: array  # 'I' per index: revision that last changed the content, 0 = original
    status: bytearray  # TRANGTHAI per index, _BASE = as derived from the seed
    present: bytearray  # 1 = listed, 0 = removed
    touches: Mapping[int, tuple[int, datetime]]  # manual touch(): index → (count, when)
    history: tuple[_Revision, ...]  # history[r - 1] = what revision r did
    version: int = 0

    @property
    def count(self) -> int:
        return self.total - self.removed


class Catalogue:
    """``size`` procedures generated on demand from ``seed``, at a revision; safe to share between threads.

    ``size`` is the size at revision 0; revisions add (and remove) procedures, see :attr:`count`.
    """

    def __init__(self, size: int = 300, seed: int = 1, revision: int = 0, *,
                 change_rate: float = DEFAULT_CHANGE_RATE, add_rate: float = DEFAULT_ADD_RATE,
                 unpublish_rate: float = DEFAULT_UNPUBLISH_RATE, remove_rate: float = DEFAULT_REMOVE_RATE) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PROCEDURES:
            raise ValueError(f"procedures must be between 1 and {MAX_PROCEDURES}, not {size}")
        self.size = size
        self.seed = seed
        self.rates = ChangeRates(change_rate, add_rate, unpublish_rate, remove_rate)
        self._seeds = seed_procedures()
        self._write_lock = threading.Lock()
        self._next_version = 1
        # listings computed for a snapshot version: (version, since, status) → indices in code order
        self._cache_lock = threading.Lock()
        self._listings: OrderedDict[tuple, array] = OrderedDict()
        # seed-derived per-index values for filtering, computed once and only when a listing needs them
        self._base_lock = threading.Lock()
        self._base_ts = array("q")
        self._base_status = bytearray()
        self._bo = array("I")  # indices of ministry-level procedures, ascending (= code order)
        self._tinh = array("I")  # provincial ones
        self._state = self._initial()
        if revision:
            self.set_revision(revision)

    # -- revisions -------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._state.revision

    @property
    def count(self) -> int:
        """Procedures listed now (initial size + added − removed)."""
        return self._state.count

    @property
    def total(self) -> int:
        """Codes ever created (initial size + added): removed ones included."""
        return self._state.total

    def __len__(self) -> int:
        return self.count

    def _initial(self) -> _State:
        n = self.size
        return _State(0, n, 0, array("I", [0]) * n, array("I", [0]) * n, bytearray([_BASE]) * n,
                      bytearray([1]) * n, MappingProxyType({}), ())

    def advance(self, n: int = 1) -> int:
        """Apply the next ``n`` revisions; returns the new revision."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"advance by a whole number of revisions ≥ 0, not {n!r}")
        with self._write_lock:
            state = self._state
            if state.revision + n > MAX_REVISION:
                raise ValueError(f"revision {state.revision + n} is beyond the last one ({MAX_REVISION})")
            if n:
                self._publish(self._replay(state, state.revision + n))
            return self._state.revision

    def set_revision(self, revision: int) -> int:
        """Move to ``revision`` (forward: apply the missing ones; back: rebuild, dropping touches)."""
        if isinstance(revision, bool) or not isinstance(revision, int) or not 0 <= revision <= MAX_REVISION:
            raise ValueError(f"revision must be a whole number between 0 and {MAX_REVISION}, not {revision!r}")
        with self._write_lock:
            state = self._state
            if revision > state.revision:
                self._publish(self._replay(state, revision))
            elif revision < state.revision:
                self._publish(self._replay(self._initial(), revision))
            return self._state.revision

    def _publish(self, state: _State) -> None:
        # (called with the write lock held)
        version, self._next_version = self._next_version, self._next_version + 1
        self._state = _State(**{**state.__dict__, "version": version})
        with self._cache_lock:
            self._listings.clear()

    def _replay(self, state: _State, target: int) -> _State:
        """The snapshot at ``target`` ≥ ``state.revision``, built on copies of ``state``'s arrays."""
        stamp, content = array("I", state.stamp_rev), array("I", state.content_rev)
        status, present = bytearray(state.status), bytearray(state.present)
        total, removed, history = state.total, state.removed, list(state.history)
        for r in range(state.revision + 1, target + 1):
            total, removed, done = self._apply(r, total, removed, stamp, content, status, present)
            history.append(done)
        return _State(target, total, removed, stamp, content, status, present, state.touches, tuple(history))

    def _apply(self, r: int, total: int, removed: int, stamp: array, content: array, status: bytearray,
               present: bytearray) -> tuple[int, int, _Revision]:
        """Revision ``r``'s change set, drawn from (seed, r) and the catalogue as it stands, applied in place."""
        rng = random.Random(f"lienthong-sandbox:{self.seed}:revision:{r}")
        rates, seed = self.rates, self.seed
        listed = total - removed
        k_change = _draw_count(rng, listed * rates.change)
        k_unpublish = _draw_count(rng, listed * rates.unpublish)
        k_remove = _draw_count(rng, listed * rates.remove)
        k_add = min(_draw_count(rng, listed * rates.add), MAX_PROCEDURES - total)
        chosen: set[int] = set()

        def in_force(i: int) -> bool:
            if not present[i] or i in chosen:
                return False
            s = status[i]
            return (s if s != _BASE else _seed_status(_mix(seed, i))) == PUBLISHED

        def still_listed(i: int) -> bool:
            return bool(present[i]) and i not in chosen

        changed = sorted(_draw(rng, k_change, total, in_force, chosen))
        unpublished = sorted(_draw(rng, k_unpublish, total, in_force, chosen))
        gone = sorted(_draw(rng, k_remove, total, still_listed, chosen))
        for i in changed:
            content[i] = r
            stamp[i] = r
        for i in unpublished:
            status[i] = ABOLISHED
            stamp[i] = r
        for i in gone:
            present[i] = 0
        if k_add:
            stamp.extend(array("I", [r]) * k_add)
            content.extend(array("I", [0]) * k_add)
            status.extend(bytes([PUBLISHED]) * k_add)
            present.extend(b"\x01" * k_add)
        done = _Revision(array("I", changed), total, k_add, array("I", unpublished), array("I", gone))
        return total + k_add, removed + len(gone), done

    def changes(self, revision: int) -> ChangeSet:
        """What revision ``revision`` (1 … current) changed, added, abolished and removed."""
        state = self._state
        if not 1 <= revision <= state.revision:
            raise ValueError(f"revision {revision} is not between 1 and the current revision {state.revision}")
        done = state.history[revision - 1]

        def codes(indices: Any) -> tuple[str, ...]:
            return tuple(sorted(self._code(i) for i in indices))

        return ChangeSet(revision, revision_time(revision), codes(done.changed),
                         codes(range(done.added_from, done.added_from + done.added)),
                         codes(done.unpublished), codes(done.removed))

    def removed_in(self, code: str) -> int | None:
        """The revision that withdrew ``code``, or None if it is listed or was never a code here."""
        parsed = parse_code(code)
        state = self._state
        if parsed is None or not 0 <= parsed[1] < state.total or state.present[parsed[1]]:
            return None
        if self._code(parsed[1]) != code:
            return None
        for r, done in enumerate(state.history, start=1):
            k = bisect_left(done.removed, parsed[1])
            if k < len(done.removed) and done.removed[k] == parsed[1]:
                return r
        return None  # pragma: no cover - a removed index is always in some revision

    # -- summaries -------------------------------------------------------------------------
    def _variant(self, index: int, h: int | None = None) -> tuple[int, str]:
        """(variant number, level) of index: variant 0 is the seed itself at ministry level."""
        variant = index // len(self._seeds)
        if variant == 0:
            return 0, "BO"
        kind = ((_mix(self.seed, index) if h is None else h) >> 8) % 4
        return variant, ("BO" if kind < 2 else "TINH")

    def _code(self, index: int) -> str:
        _variant, level = self._variant(index)
        return f"{1 if level == 'BO' else 2}.{_SUFFIX_BASE + index:06d}"

    def summary(self, index: int) -> Summary:
        """The listing entry of ``index`` (any index created so far; see ``Summary.removed``)."""
        return self._summary(self._state, index)

    def _summary(self, state: _State, index: int) -> Summary:
        if not 0 <= index < state.total:
            raise IndexError(index)
        h = _mix(self.seed, index)
        _variant, level = self._variant(index, h)
        code = f"{1 if level == 'BO' else 2}.{_SUFFIX_BASE + index:06d}"
        revision = state.stamp_rev[index]
        updated = revision_time(revision) if revision else _seed_updated(h)
        touched = state.touches.get(index)
        if touched is not None and touched[1] > updated:
            updated = touched[1]
        status = state.status[index]
        if status == _BASE:
            status = _seed_status(h)
        return Summary(index, code, updated, status, level, revision, not state.present[index])

    def _index_in(self, state: _State, code: str) -> int | None:
        parsed = parse_code(code)
        if parsed is None:
            return None
        _digit, index = parsed
        if not 0 <= index < state.total or not state.present[index]:
            return None
        return index if self._code(index) == code else None

    def index_of(self, code: str) -> int | None:
        """Index of a listed code; None for codes never created here and for removed ones."""
        return self._index_in(self._state, code)

    def codes(self) -> list[str]:
        """Listed codes in creation (index) order."""
        state = self._state
        return [self._code(i) for i in range(state.total) if state.present[i]]

    def page(self, page: int, size: int, *, since: datetime | None = None,
             status: int | None = None) -> tuple[int, list[Summary]]:
        """(total matching, the summaries of 1-based ``page``), ordered by code.

        ``since`` keeps procedures whose NGAYCAPNHAT ≥ since (abolished ones included: a sync must
        see them go); ``status`` keeps one TRANGTHAI. Removed procedures are never listed.
        """
        if page < 1 or size < 1:
            raise ValueError("page and size start at 1")
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        state = self._state
        matching = self._matching(state, since, status)
        start = (page - 1) * size
        return len(matching), [self._summary(state, i) for i in matching[start:start + size]]

    def _ensure_base(self, n: int) -> None:
        """Seed-derived dates, statuses and levels of indices below ``n`` (append-only cache)."""
        with self._base_lock:
            seed, seeds = self.seed, len(self._seeds)
            for i in range(len(self._base_ts), n):
                h = _mix(seed, i)
                (self._bo if i < seeds or (h >> 8) % 4 < 2 else self._tinh).append(i)
                self._base_ts.append(_seed_updated_ts(h))
                self._base_status.append(_seed_status(h))

    def _ordered(self, state: _State) -> array:
        """Listed indices of ``state`` in code order: ministry codes (1.…) then provincial (2.…)."""
        self._ensure_base(state.total)
        with self._base_lock:
            bo = self._bo[:bisect_left(self._bo, state.total)]
            tinh = self._tinh[:bisect_left(self._tinh, state.total)]
        if state.removed:
            present = state.present
            return array("I", [i for i in bo if present[i]] + [i for i in tinh if present[i]])
        return bo + tinh

    def _matching(self, state: _State, since: datetime | None, status: int | None) -> array:
        key = (state.version, since, status)
        with self._cache_lock:
            hit = self._listings.get(key)
            if hit is not None:
                self._listings.move_to_end(key)
                return hit
        order = self._ordered(state)
        if since is None and status is None:
            found = order
        else:
            found = array("I")
            since_ts = since.timestamp() if since is not None else None
            stamp, statuses, touches = state.stamp_rev, state.status, state.touches
            base_ts, base_status = self._base_ts, self._base_status
            for i in order:
                if since_ts is not None:
                    r = stamp[i]
                    ts: float = _EPOCH_TS + r * _STEP_S if r else base_ts[i]
                    if touches:
                        touched = touches.get(i)
                        if touched is not None:
                            ts = max(ts, touched[1].timestamp())
                    if ts < since_ts:
                        continue
                if status is not None:
                    s = statuses[i]
                    if (s if s != _BASE else base_status[i]) != status:
                        continue
                found.append(i)
        with self._cache_lock:
            if state.version == self._state.version:  # a listing of a superseded snapshot is not kept
                self._listings[key] = found
                while len(self._listings) > 16:
                    self._listings.popitem(last=False)
        return found

    def touch(self, code: str, when: datetime) -> Summary:
        """A manual change of ``code`` at ``when`` outside the revision sequence: new details and
        NGAYCAPNHAT = the later of ``when`` and its current date (kept by ``advance``, dropped when
        ``set_revision`` goes back)."""
        if when.tzinfo is None:
            raise ValueError("when must be timezone-aware")
        with self._write_lock:
            state = self._state
            index = self._index_in(state, code)
            if index is None:
                raise KeyError(code)
            touches = dict(state.touches)
            touches[index] = (touches.get(index, (0, when))[0] + 1, when)
            self._publish(_State(**{**state.__dict__, "touches": MappingProxyType(touches)}))
            return self._summary(self._state, index)

    # -- full records ----------------------------------------------------------------------
    def _agency_for(self, index: int, rng: random.Random, seed_proc: SeedProcedure, level: str) -> tuple[Agency, Agency, list[str]]:
        """(publishing agency, handling agency, CAPTHUCHIEN) of a record."""
        if level == "BO":
            code, _field = MINISTRY_UNITS.get(seed_proc.lead_agency, ("000.00.01.G10", "G10-TS"))
            unit = Agency(code, seed_proc.lead_agency, "BO")
            return Agency(MINISTRY_CODE, MINISTRY_NAME, "BO"), unit, ["BO"]
        n = rng.randrange(len(PROVINCES))
        levels = ["TINH", "XA"] if rng.random() < 0.2 else ["TINH"]
        return province_committee(n), province_department(n), levels

    def record(self, code: str) -> dict[str, Any] | None:
        """The full LayThuTuc record (ordered like ``tthc:ThuTuc``), or None if unknown or removed."""
        state = self._state
        index = self._index_in(state, code)
        if index is None:
            return None
        s = self._summary(state, index)
        seed_proc = self._seeds[index % len(self._seeds)]
        variant, level = self._variant(index)
        content_rev = state.content_rev[index]
        touched = state.touches.get(index)
        # rng: what a procedure *is* (stable across revisions); rev: details a revision redraws
        rng = random.Random(f"lienthong-sandbox:{self.seed}:{index}")
        rev = random.Random(f"lienthong-sandbox:{self.seed}:{index}:r{content_rev}"
                            + (f":t{touched[0]}" if touched else ""))
        # amend: what else revision content_rev changed (drawn up front, in a fixed order)
        amend = random.Random(f"lienthong-sandbox:{self.seed}:{index}:c{content_rev}") if content_rev else None
        rename, relevel, redocument = (amend.random(), amend.random(), amend.random()) if amend else (1.0, 1.0, 1.0)

        name = seed_proc.name
        if variant:
            alt = variant_name(seed_proc.name, rng.randrange(12))
            if alt is not None and rng.random() < 0.7:
                name = alt
        if rename < 0.3:
            name = amended_name(name) or name
        publisher, handler, levels = self._agency_for(index, rng, seed_proc, level)
        field_code = MINISTRY_UNITS.get(seed_proc.lead_agency, ("", "G10-TS"))[1]
        field = _FIELD_BY_CODE[field_code]

        if seed_proc.level >= 4:
            mucdo = "MUC_DO_4" if rng.random() < 0.15 else "TOAN_TRINH"
        else:
            mucdo = "MUC_DO_3" if rng.random() < 0.15 else "MOT_PHAN"
        if variant and rng.random() < 0.1:
            mucdo = "THONG_TIN"
        if relevel < 0.3:
            mucdo = _LEVEL_UPGRADES.get(mucdo, mucdo)
        online = mucdo in ("TOAN_TRINH", "MOT_PHAN", "MUC_DO_3", "MUC_DO_4")

        days = rev.choice((5, 7, 10, 15, 20, 30))
        fee = Decimal(rev.choice((0, 0, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_500_000)))
        fee_name = rev.choice(_FEE_NAMES)
        channels = [1] + ([2] if online else []) + ([3] if rng.random() < 0.6 else [])
        ways = []
        for kenh in channels:
            channel_days = max(1, days - 2) if kenh == 2 and mucdo in ("TOAN_TRINH", "MUC_DO_4") else days
            fees = []
            if fee:
                fees.append({
                    "MAPHILEPHI": f"PLP-{code}-1",
                    "SOTIEN": fee,
                    "DONVI": "Đồng",
                    "MOTA": f"{fee_name} theo quy định của Bộ Tài chính",
                })
            ways.append({"KENH": kenh, "THOIGIAN": [{
                "THOIGIANGIAIQUYET": channel_days,
                "DONVITINH": "Ngày làm việc",
                "MOTA": f"{channel_days} ngày làm việc kể từ ngày nhận đủ hồ sơ hợp lệ",
                "PHILEPHI": fees,
            }]})

        documents = rng.sample(_DOCUMENTS, rng.randint(2, 5))
        if amend is not None and redocument < 0.5:
            documents = amend.sample(_DOCUMENTS, amend.randint(2, 5))
        components = [{"GIAYTO": [
            {
                "MAGIAYTO": f"GT-{code}-{k + 1}",
                "TENGIAYTO": doc,
                "TENMAUDON": form,
                "URL": f"https://tthc.sandbox.lienthong.invalid/mau-don/{code}/{k + 1}.docx" if form else None,
            }
            for k, (doc, form) in enumerate(documents)
        ]}]

        lower_name = lower_first(name)
        if "giấy phép" in lower_name:
            result_name = "Giấy phép"
        elif "giấy chứng nhận" in lower_name or "chứng chỉ" in lower_name:
            result_name = "Giấy chứng nhận"
        elif lower_name.startswith(("thẩm định", "xây dựng và phê duyệt", "nghiệm thu")):
            result_name = "Quyết định phê duyệt"
        else:
            result_name = "Văn bản chấp thuận"
        legal = list(_LEGAL.get(field.code, ())) + [rng.choice(_LEGAL_COMMON)]
        if content_rev:
            # every amendment is announced by a publication decision: the record always differs
            legal.append((f"{1000 + content_rev}/QĐ-BNNMT",
                          "Quyết định về việc công bố thủ tục hành chính được sửa đổi, bổ sung trong lĩnh vực "
                          + lower_first(field.name)))

        steps = [
            f"Bước 1: Tổ chức, cá nhân nộp hồ sơ đến {handler.name}"
            + (" hoặc nộp trực tuyến trên Cổng Dịch vụ công quốc gia." if online else "."),
            f"Bước 2: {handler.name} tiếp nhận, kiểm tra tính đầy đủ của hồ sơ; trường hợp hồ sơ chưa đầy đủ, "
            "hướng dẫn tổ chức, cá nhân bổ sung.",
            f"Bước 3: Thẩm định hồ sơ trong thời hạn {days} ngày làm việc.",
            "Bước 4: Trả kết quả giải quyết thủ tục hành chính.",
        ]
        return {
            "MATTHC": code,
            "TENTTHC": name,
            "MACOQUANCONGBO": publisher.code,
            "TRANGTHAI": s.status,
            "CAPTHUCHIEN": levels,
            "LINHVUCTHUCHIEN": [{"MALINHVUC": field.code, "TENLINHVUC": field.name}],
            "COQUANTHUCHIEN": [{"MADONVI": handler.code, "TENDONVI": handler.name}],
            "TRINHTUTHUCHIEN": [{"TENTRINHTU": step} for step in steps],
            "CACHTHUCTHUCHIEN": ways,
            "THANHPHANHOSO": components,
            "DOITUONGTHUCHIEN": rng.sample(_SUBJECTS, rng.randint(1, 3)),
            "KETQUATHUCHIEN": [{"MAKETQUA": f"KQ-{code}-1", "TENKETQUA": result_name}],
            "CANCUPHAPLY": [{"SOVANBAN": no, "TENVANBAN": title} for no, title in legal],
            "YEUCAU": rev.choice(_REQUIREMENTS) if rev.random() < 0.6 else None,
            "MUCDO": mucdo,
            "NGAYCAPNHAT": s.updated,
        }

    def fields(self) -> tuple[Field, ...]:
        return FIELDS

    def agencies(self) -> tuple[Agency, ...]:
        return agencies()
