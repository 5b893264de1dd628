"""A synthetic one-stop system (hệ thống một cửa điện tử) whose dossiers live realistic lives.

Why it exists: the hub reads every status change of every dossier from the ministry's one-stop
system (an SQL view or export files) and pushes it to the national portal, signed, in order, once.
Testing and benchmarking that needs a one-stop database that *moves* like a real one: dossiers
submitted online or at the desk, received, assigned, sent back for missing papers (possibly
several times), waiting for fees, approved, returned, and sometimes refused, withdrawn or stopped;
with Vietnamese names, several agencies and real procedure names, at volumes of tens of thousands
of dossiers. This module builds that database (:class:`OneStopDatabase`), moves it
(:class:`OneStopSimulator`), spoils it on purpose (:meth:`OneStopSimulator.inject`) and exports it
as the files a file-drop source reads (:func:`export_files`, :func:`write_broken_file`).

The database layout is the ministry's own, with local names and local status codes on purpose
(the hub maps them, see issue 4's contract): table ``hoso`` holds one row per dossier, updated in
place (``phien_ban`` + 1 and ``cap_nhat_luc`` = the change's time, the incremental cursor), and
``hoso_buoc_xu_ly`` is the append-only log of processing steps (``id`` is its cursor). Every
change of the simulation updates exactly one ``hoso`` row and appends exactly one step, so a
dossier's ``phien_ban`` equals its number of steps and the steps replay its life.

A dossier's life, in local codes (national ``TrangThaiHoSo`` in brackets)::

    MOI[1] ──► DA_TIEP_NHAN[2] ──► DANG_XU_LY[4] ──► DA_XU_LY[9] ──► DA_TRA_KQ[10]
      │              ▲   │           │  ▲   │  │        ▲
      │   direct     │   │           ▼  │   │  └► CHO_NOP_PHI[6]
      │   channel ───┘   │      CHO_BO_SUNG[5]
      ├► TU_CHOI[3]      │           │
      └► CONG_DAN_RUT[7] ◄───────────┴─ (from 1, 2, 4, 5)     DUNG_XU_LY[8] (from 4, 5)

:data:`TRANSITIONS` is that graph as data; terminal statuses (3, 7, 8, 10) never move again.

Determinism, and why the simulation keeps no state of its own: the simulator is a discrete-event
simulation whose future is a pure function of ``seed``, the constructor's parameters and the
rows in the database. What a dossier does next (which status, after how long) is drawn from
``Random(seed, so_ho_so, phien_ban)`` and timed from its ``cap_nhat_luc``; dossier number ``k``
arrives at a time drawn from ``Random(seed, k)``. So the same seed gives the same rows byte for
byte on SQLite and PostgreSQL, ``advance(a)`` then ``advance(b)`` equals ``advance(a + b)``, and a
simulator opened on an existing database (another process, a later run of the CLI) continues
exactly where the previous one stopped, with nothing to save but the database itself.

Time: ``cap_nhat_luc`` is a simulated UTC clock (whole seconds) that strictly increases from one
change to the next, starting at ``start``; the one-stop system's own dates (``ngay_nop``,
``ngay_hen_tra``…) are local 'YYYY-MM-DD HH:MM:SS' strings in Asia/Ho_Chi_Minh (UTC+7, no DST),
as such systems store them. Officials act in working hours (Monday to Friday, 07:30–11:30 and
13:30–17:00); online submissions arrive at any hour. The due date (``ngay_hen_tra``) is the
reception time plus the procedure's processing time for the channel (working days, from the
catalogue) and is pushed back by the time spent waiting for a supplement, so some dossiers finish
early and some late, as in real reports.

Scale: changes are applied in memory and written in batches (``executemany`` in one transaction
per ``batch_size`` changes), a dossier's successive changes within a batch collapsing into one
row write. ``populate(20_000)`` (about 90,000 changes) takes about 9 s on SQLite and 15 s on
PostgreSQL on a small two-core machine.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import io
import itertools
import json
import random
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal

from lxml import etree
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    create_engine,
    func,
    or_,
    select,
)
from sqlalchemy.engine import URL, make_url

from ..hub.files import write_atomic
from .catalogue import VN_TZ, Catalogue, lower_first, parse_code
from .onestop_results import (
    RESULT_INJECTION_KINDS,
    attach_results,
    hoso_ket_qua,
    inject_result,
    results_metadata,
)
from .onestop_results import result_rows as results_of

# =============================================================================================
# the local code tables
# =============================================================================================
#: local status code → national TrangThaiHoSo, in lifecycle order
LOCAL_STATUSES: dict[str, int] = {
    "MOI": 1,
    "DA_TIEP_NHAN": 2,
    "TU_CHOI": 3,
    "DANG_XU_LY": 4,
    "CHO_BO_SUNG": 5,
    "CHO_NOP_PHI": 6,
    "CONG_DAN_RUT": 7,
    "DUNG_XU_LY": 8,
    "DA_XU_LY": 9,
    "DA_TRA_KQ": 10,
}
STATUS_LABELS: dict[str, str] = {
    "MOI": "Mới đăng ký",
    "DA_TIEP_NHAN": "Đã tiếp nhận",
    "TU_CHOI": "Từ chối tiếp nhận",
    "DANG_XU_LY": "Đang xử lý",
    "CHO_BO_SUNG": "Chờ bổ sung hồ sơ",
    "CHO_NOP_PHI": "Chờ thực hiện nghĩa vụ tài chính",
    "CONG_DAN_RUT": "Công dân rút hồ sơ",
    "DUNG_XU_LY": "Dừng xử lý",
    "DA_XU_LY": "Đã xử lý xong",
    "DA_TRA_KQ": "Đã trả kết quả",
}
#: statuses a dossier is created in: online and postal submissions wait for reception (MOI),
#: a dossier handed in at the desk is received on the spot (DA_TIEP_NHAN)
INITIAL_STATUSES = frozenset({"MOI", "DA_TIEP_NHAN"})
TERMINAL_STATUSES = frozenset({"TU_CHOI", "CONG_DAN_RUT", "DUNG_XU_LY", "DA_TRA_KQ"})
#: the allowed moves; terminal statuses have none
TRANSITIONS: dict[str, frozenset[str]] = {
    "MOI": frozenset({"DA_TIEP_NHAN", "TU_CHOI", "CONG_DAN_RUT"}),
    "DA_TIEP_NHAN": frozenset({"DANG_XU_LY", "CONG_DAN_RUT"}),
    "DANG_XU_LY": frozenset({"CHO_BO_SUNG", "CHO_NOP_PHI", "DA_XU_LY", "CONG_DAN_RUT", "DUNG_XU_LY"}),
    "CHO_BO_SUNG": frozenset({"DANG_XU_LY", "CONG_DAN_RUT", "DUNG_XU_LY"}),
    "CHO_NOP_PHI": frozenset({"DA_XU_LY"}),
    "DA_XU_LY": frozenset({"DA_TRA_KQ"}),
    "TU_CHOI": frozenset(),
    "CONG_DAN_RUT": frozenset(),
    "DUNG_XU_LY": frozenset(),
    "DA_TRA_KQ": frozenset(),
}
#: local channel code → national KenhThucHien
CHANNELS: dict[str, int] = {"TRUC_TIEP": 1, "TRUC_TUYEN": 2, "BUU_CHINH": 3}
_CHANNEL_OF_KENH = {v: k for k, v in CHANNELS.items()}
#: how often each channel is used when the procedure offers it: online the most
CHANNEL_WEIGHTS: dict[str, float] = {"TRUC_TUYEN": 60.0, "TRUC_TIEP": 30.0, "BUU_CHINH": 10.0}
#: local owner type → national LoaiDoiTuong
OWNER_TYPES: dict[str, int] = {"CONG_DAN": 1, "DOANH_NGHIEP": 2, "CO_QUAN": 3, "TO_CHUC": 4}
OWNER_TYPE_WEIGHTS: dict[str, float] = {"CONG_DAN": 50.0, "DOANH_NGHIEP": 35.0, "TO_CHUC": 10.0, "CO_QUAN": 5.0}
#: the catalogue's DOITUONGTHUCHIEN → local owner type
_SUBJECT_TYPES = {
    "Công dân Việt Nam": "CONG_DAN", "Người Việt Nam định cư ở nước ngoài": "CONG_DAN",
    "Người nước ngoài": "CONG_DAN", "Doanh nghiệp": "DOANH_NGHIEP", "Hợp tác xã": "TO_CHUC",
    "Tổ chức (không bao gồm doanh nghiệp, hợp tác xã)": "TO_CHUC", "Tổ chức nước ngoài": "TO_CHUC",
    "Cơ quan nhà nước": "CO_QUAN", "Đơn vị sự nghiệp công lập": "CO_QUAN",
}

#: bad data :meth:`OneStopSimulator.inject` can produce
INJECTION_KINDS = ("unknown_status", "missing_field", "malformed_date", "overlong_text", "non_nfc",
                   "unknown_procedure")
#: the local status no mapping knows (a transfer to another agency, which the national list lacks)
UNKNOWN_STATUS = "CHUYEN_LIEN_THONG"
MALFORMED_DATES = ("31/02/2026", "2026-02-31 08:00:00", "2026-13-05 25:61:00", "hôm qua")
#: the portal's TrichYeuHoSo limit; ordinary rows stay within it, ``overlong_text`` exceeds it
TRICH_YEU_MAX = 1000

EXPORT_FORMATS = ("json", "csv", "xml")
#: broken export files :func:`write_broken_file` can write (a reader must quarantine each)
BROKEN_KINDS = ("truncated_json", "json_wrong_shape", "csv_wrong_header", "xml_dtd", "xml_external_entity",
                "xml_malformed", "not_utf8")

# =============================================================================================
# tables (SQLAlchemy Core)
# =============================================================================================
metadata = MetaData()

hoso = Table(
    "hoso", metadata,
    Column("so_ho_so", Text, primary_key=True),
    Column("ma_thu_tuc", Text),
    Column("ten_thu_tuc", Text),
    Column("ma_linh_vuc", Text),
    Column("ten_linh_vuc", Text),
    Column("kenh_nop", Text),
    Column("chu_ho_so", Text),
    Column("so_giay_to", Text),
    Column("loai_chu_ho_so", Text),
    Column("email", Text, nullable=True),
    Column("dien_thoai", Text, nullable=True),
    Column("trich_yeu", Text),
    Column("ngay_nop", Text),
    Column("ngay_tiep_nhan", Text, nullable=True),
    Column("ngay_hen_tra", Text, nullable=True),
    Column("ngay_ket_thuc_xu_ly", Text, nullable=True),
    Column("ngay_tra", Text, nullable=True),
    Column("trang_thai", Text),
    Column("don_vi_xu_ly", Text),
    Column("co_quan", Text),
    Column("cap_nhat_luc", DateTime(timezone=False), nullable=False),
    Column("phien_ban", Integer, nullable=False),
    # the incremental read: WHERE (cap_nhat_luc, so_ho_so) > cursor ORDER BY cap_nhat_luc, so_ho_so
    Index("ix_hoso_cap_nhat_luc", "cap_nhat_luc", "so_ho_so"),
)

hoso_buoc_xu_ly = Table(
    "hoso_buoc_xu_ly", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("so_ho_so", Text, nullable=False),
    Column("nguoi_xu_ly", Text),
    Column("chuc_danh", Text, nullable=True),
    Column("phong_ban", Text, nullable=True),
    Column("noi_dung", Text),
    Column("trang_thai", Text),
    Column("thoi_diem", Text),
    Column("ngay_bat_dau", Text, nullable=True),
    Column("han_xu_ly", Text, nullable=True),
    Column("cap_nhat_luc", DateTime(timezone=False), nullable=False),
    Index("ix_hoso_buoc_xu_ly_so_ho_so", "so_ho_so", "id"),
    # AUTOINCREMENT: SQLite never reuses an id, so "id > cursor" can never miss a step
    sqlite_autoincrement=True,
)

HOSO_COLUMNS: tuple[str, ...] = tuple(c.name for c in hoso.columns)
STEP_COLUMNS: tuple[str, ...] = tuple(c.name for c in hoso_buoc_xu_ly.columns)
RESULT_COLUMNS: tuple[str, ...] = tuple(c.name for c in hoso_ket_qua.columns)
#: the hoso columns a change may alter (the rest is fixed when the dossier is created)
_DYNAMIC = ("trang_thai", "ngay_tiep_nhan", "ngay_hen_tra", "ngay_ket_thuc_xu_ly", "ngay_tra", "cap_nhat_luc",
            "phien_ban")
_UPDATE = hoso.update().where(hoso.c.so_ho_so == bindparam("b_so_ho_so"))

# =============================================================================================
# time: integers of UTC seconds inside, local strings at the edge
# =============================================================================================
_VN_OFFSET = 7 * 3600  # Asia/Ho_Chi_Minh has been UTC+7 without DST since 1975
_EPOCH = datetime(1970, 1, 1)
_DAY = 86400
#: working windows of a day (local seconds since midnight): 07:30–11:30 and 13:30–17:00
_AM_START, _AM_END, _PM_START, _PM_END = 27000, 41400, 48600, 61200
_AM_LEN = _AM_END - _AM_START
WORKDAY_SECONDS = _AM_LEN + (_PM_END - _PM_START)  # 7.5 hours
_WEEK_WORK = 5 * WORKDAY_SECONDS
_LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
_LOCAL_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")

#: the simulation's default first arrival: Monday 5 January 2026, 07:30 Vietnam time
DEFAULT_START = datetime(2026, 1, 5, 7, 30, tzinfo=VN_TZ)


def local_text(t: int) -> str:
    """UTC seconds → the one-stop system's local 'YYYY-MM-DD HH:MM:SS' (Vietnam time)."""
    return time.strftime(_LOCAL_FORMAT, time.gmtime(t + _VN_OFFSET))


def parse_local(text: str | None) -> int | None:
    """The inverse of :func:`local_text`; None for anything that is not such a date."""
    if not text or not _LOCAL_RE.fullmatch(text):
        return None
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        return None
    return int((local - _EPOCH).total_seconds()) - _VN_OFFSET


def _naive_utc(t: int) -> datetime:
    return _EPOCH + timedelta(seconds=t)


def _seconds(value: datetime) -> int:
    """A ``cap_nhat_luc`` as read back (naive UTC, or aware) → UTC seconds."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return int((value - _EPOCH).total_seconds())


def work_index(t: int) -> int:
    """Working seconds elapsed between a fixed Monday and ``t`` (time outside working hours counts
    as nothing), so that "N working hours later" is plain addition on this scale."""
    local = t + _VN_OFFSET
    days, sec = divmod(local, _DAY)
    weeks, weekday = divmod(days + 3, 7)  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    base = weeks * _WEEK_WORK
    if weekday >= 5:
        return base + _WEEK_WORK
    base += weekday * WORKDAY_SECONDS
    if sec < _AM_START:
        return base
    if sec < _AM_END:
        return base + sec - _AM_START
    if sec < _PM_START:
        return base + _AM_LEN
    if sec < _PM_END:
        return base + _AM_LEN + sec - _PM_START
    return base + WORKDAY_SECONDS


def from_work_index(w: int) -> int:
    """The instant at working-second ``w`` (the inverse of :func:`work_index` on working time)."""
    weeks, rest = divmod(w, _WEEK_WORK)
    weekday, in_day = divmod(rest, WORKDAY_SECONDS)
    sec = _AM_START + in_day if in_day < _AM_LEN else _PM_START + in_day - _AM_LEN
    return (weeks * 7 + weekday - 3) * _DAY + sec - _VN_OFFSET


def next_working_time(t: int) -> int:
    """``t`` if it falls in working hours, else the start of the next working window."""
    return from_work_index(work_index(t))


def _after_working(t: int, working_seconds: float) -> int:
    return from_work_index(work_index(t) + int(working_seconds))


# =============================================================================================
# Vietnamese people and organisations
# =============================================================================================
def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _nfc_all(*items: str) -> tuple[str, ...]:
    return tuple(_nfc(s) for s in items)


#: family names with rough national frequencies (%)
FAMILY_NAMES: tuple[tuple[str, float], ...] = tuple((_nfc(n), w) for n, w in (
    ("Nguyễn", 38.0), ("Trần", 11.0), ("Lê", 9.5), ("Phạm", 7.0), ("Hoàng", 4.0), ("Huỳnh", 3.0),
    ("Phan", 4.5), ("Vũ", 2.5), ("Võ", 2.0), ("Đặng", 2.1), ("Bùi", 2.0), ("Đỗ", 1.4), ("Hồ", 1.3),
    ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5), ("Đinh", 0.6), ("Trương", 0.6), ("Đào", 0.5),
    ("Mai", 0.4), ("Lương", 0.4), ("Tạ", 0.2), ("Châu", 0.2), ("Quách", 0.1),
))
MIDDLE_NAMES_MALE = _nfc_all("Văn", "Hữu", "Đức", "Minh", "Quốc", "Thành", "Công", "Xuân", "Quang", "Anh", "Đình")
MIDDLE_NAMES_FEMALE = _nfc_all("Thị", "Ngọc", "Thu", "Thanh", "Minh", "Phương", "Hồng", "Kim", "Bích", "Thùy")
GIVEN_NAMES_MALE = _nfc_all(
    "An", "Bình", "Cường", "Dũng", "Đạt", "Hải", "Hùng", "Huy", "Khánh", "Long", "Minh", "Nam", "Phúc",
    "Quang", "Sơn", "Thắng", "Tuấn", "Việt", "Hiếu", "Trung", "Thịnh", "Lộc", "Tâm", "Khoa", "Hoàng")
GIVEN_NAMES_FEMALE = _nfc_all(
    "Anh", "Chi", "Dung", "Hà", "Hạnh", "Hoa", "Hương", "Lan", "Linh", "Mai", "Ngọc", "Nhung", "Phương",
    "Quỳnh", "Thảo", "Trang", "Uyên", "Vân", "Yến", "Thủy", "Hằng", "Loan", "Giang", "Hiền", "Oanh")
_FAMILY = tuple(n for n, _w in FAMILY_NAMES)
_FAMILY_CUM = tuple(itertools.accumulate(w for _n, w in FAMILY_NAMES))

_COMPANY_FORMS = _nfc_all("Công ty TNHH", "Công ty cổ phần", "Công ty TNHH một thành viên", "Doanh nghiệp tư nhân")
_COMPANY_TRADES = _nfc_all(
    "Nông sản", "Thủy sản", "Giống cây trồng", "Thức ăn chăn nuôi", "Thuốc thú y", "Phân bón",
    "Xuất nhập khẩu nông sản", "Lâm sản", "Chế biến gỗ", "Thiết bị nông nghiệp", "Môi trường xanh",
    "Giống thủy sản", "Thuốc bảo vệ thực vật")
_COMPANY_BRANDS = _nfc_all(
    "Phú Điền", "Tân Lộc", "Minh Khang", "Đồng Xanh", "Sông Hậu", "Bình Minh", "Trường Thịnh", "An Phú",
    "Hưng Thịnh", "Việt Xanh", "Thái Bình Dương", "Hoàng Gia", "Mê Kông", "Tây Nguyên", "Hồng Hà",
    "Kim Ngân", "Thành Đạt", "Phương Nam")
_ORGANISATIONS = _nfc_all(
    "Hợp tác xã nông nghiệp {place}", "Hợp tác xã thủy sản {place}", "Hội Nông dân {place}",
    "Viện Nghiên cứu nông nghiệp {place}", "Tổ hợp tác chăn nuôi {place}", "Quỹ Bảo vệ và phát triển rừng {place}")
_PUBLIC_BODIES = _nfc_all(
    "Ủy ban nhân dân xã {place}", "Chi cục Thủy sản {place}", "Trung tâm Khuyến nông {place}",
    "Ban Quản lý rừng phòng hộ {place}", "Chi cục Kiểm lâm {place}", "Trạm Thú y {place}")
_PLACES = _nfc_all(
    "Tân Phú", "Hòa Bình", "An Khánh", "Phước Long", "Thạnh Mỹ", "Đông Hưng", "Yên Lạc", "Cẩm Giàng",
    "Ninh Hải", "Quỳnh Lưu", "Mỹ Xuyên", "Hàm Thuận", "Krông Pắc", "Bảo Lộc", "Sa Pa", "Mộc Châu")
#: the 63 provincial codes in use on citizen ID cards (CCCD) before the 2025 merger
_CCCD_PROVINCES = (
    "001", "002", "004", "006", "008", "010", "011", "012", "014", "015", "017", "019", "020", "022", "024",
    "025", "026", "027", "030", "031", "033", "034", "035", "036", "037", "038", "040", "042", "044", "045",
    "046", "048", "049", "051", "052", "054", "056", "058", "060", "062", "064", "066", "067", "068", "070",
    "072", "074", "075", "077", "079", "080", "082", "083", "084", "086", "087", "089", "091", "092", "093",
    "094", "095", "096")
_MOBILE_PREFIXES = ("032", "033", "034", "035", "036", "037", "038", "039", "070", "076", "077", "078", "079",
                    "081", "082", "083", "084", "085", "086", "088", "089", "090", "091", "093", "094", "096",
                    "097", "098")
#: a reserved top-level domain: no mail can ever leave for these synthetic addresses
EMAIL_DOMAIN = "sandbox.lienthong.invalid"


def person_name(rng: random.Random) -> str:
    """A Vietnamese full name (family, middle, given; NFC) drawn with realistic family-name weights."""
    family = rng.choices(_FAMILY, cum_weights=_FAMILY_CUM)[0]
    if rng.random() < 0.5:
        return f"{family} {rng.choice(MIDDLE_NAMES_FEMALE)} {rng.choice(GIVEN_NAMES_FEMALE)}"
    return f"{family} {rng.choice(MIDDLE_NAMES_MALE)} {rng.choice(GIVEN_NAMES_MALE)}"


def ascii_fold(text: str) -> str:
    """'Nguyễn Đức' → 'Nguyen Duc' (for e-mail local parts)."""
    decomposed = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# =============================================================================================
# procedures and the people who handle them
# =============================================================================================
@dataclass(frozen=True)
class Procedure:
    """What the simulation needs of a catalogue procedure (``Catalogue.record``), read once."""

    code: str  # MATTHC
    name: str  # TENTTHC
    field_code: str
    field_name: str
    agency_code: str  # the handling unit (COQUANTHUCHIEN), prefix of its dossier codes
    agency_name: str
    #: local channel code → processing time in working days, for the channels the procedure offers
    days: Mapping[str, int]
    owner_types: tuple[str, ...]
    documents: tuple[str, ...]
    fee: tuple[str, int] | None  # (name, amount in đồng)
    result: str  # KETQUATHUCHIEN name
    department: str  # the unit's department that examines it

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.days)


@dataclass(frozen=True)
class Official:
    name: str
    title: str  # chuc_danh
    department: str  # phong_ban


@dataclass(frozen=True)
class _Roster:
    reception: tuple[Official, ...]
    #: department → (specialists, heads and deputies)
    departments: Mapping[str, tuple[tuple[Official, ...], tuple[Official, ...]]]
    leaders: tuple[Official, ...]


_RECEPTION = _nfc("Bộ phận Tiếp nhận và Trả kết quả")
_DEPARTMENTS = _nfc_all(
    "Phòng Cấp phép", "Phòng Thẩm định", "Phòng Quản lý chất lượng", "Phòng Kỹ thuật", "Phòng Pháp chế",
    "Phòng Kiểm dịch", "Phòng Quản lý giống", "Phòng Hợp tác và Đầu tư")


def _leadership(agency_name: str) -> tuple[str, str, str]:
    """(head title, deputy title, department of the leadership) from the unit's kind."""
    for prefix, head, unit in (("Tổng cục", "Tổng cục trưởng", "Lãnh đạo Tổng cục"),
                               ("Cục", "Cục trưởng", "Lãnh đạo Cục"), ("Vụ", "Vụ trưởng", "Lãnh đạo Vụ"),
                               ("Trung tâm", "Giám đốc", "Ban Giám đốc"), ("Sở", "Giám đốc Sở", "Ban Giám đốc Sở")):
        if agency_name.startswith(prefix + " "):
            return _nfc(head), _nfc("Phó " + head), _nfc(unit)
    return _nfc("Thủ trưởng đơn vị"), _nfc("Phó Thủ trưởng đơn vị"), _nfc("Lãnh đạo đơn vị")


def _roster(seed: int, agency_code: str, agency_name: str) -> _Roster:
    rng = random.Random(f"lienthong-onestop:{seed}:can-bo:{agency_code}")
    reception = tuple(Official(person_name(rng), _nfc("Chuyên viên"), _RECEPTION) for _ in range(3))
    departments = {}
    for dept in _DEPARTMENTS:
        specialists = tuple(Official(person_name(rng), rng.choice(_nfc_all("Chuyên viên", "Chuyên viên chính")), dept)
                            for _ in range(3))
        heads = (Official(person_name(rng), _nfc("Trưởng phòng"), dept),
                 Official(person_name(rng), _nfc("Phó Trưởng phòng"), dept))
        departments[dept] = (specialists, heads)
    head, deputy, unit = _leadership(agency_name)
    leaders = (Official(person_name(rng), head, unit), Official(person_name(rng), deputy, unit),
               Official(person_name(rng), deputy, unit))
    return _Roster(reception, departments, leaders)


def procedure_from_record(record: Mapping[str, Any]) -> Procedure:
    """A :class:`Procedure` from a ``Catalogue.record`` (LayThuTuc) dict."""
    code = record["MATTHC"]
    field = (record.get("LINHVUCTHUCHIEN") or [{}])[0]
    handler = (record.get("COQUANTHUCHIEN") or [{}])[0]
    days: dict[str, int] = {}
    fee: tuple[str, int] | None = None
    for way in record.get("CACHTHUCTHUCHIEN") or ():
        channel = _CHANNEL_OF_KENH.get(int(way["KENH"]))
        times = way.get("THOIGIAN") or []
        if channel is None or not times:
            continue
        days[channel] = max(1, int(times[0]["THOIGIANGIAIQUYET"]))
        for item in times[0].get("PHILEPHI") or ():
            if fee is None and item.get("SOTIEN"):
                name = str(item.get("MOTA") or "Phí, lệ phí").split(" theo ")[0]
                fee = (_nfc(name), int(item["SOTIEN"]))
    if not days:
        days = {"TRUC_TIEP": 15}
    # keep the channel order stable whatever the record's order
    days = {c: days[c] for c in CHANNELS if c in days}
    owners = tuple(dict.fromkeys(_SUBJECT_TYPES[s] for s in record.get("DOITUONGTHUCHIEN") or ()
                                 if s in _SUBJECT_TYPES)) or tuple(OWNER_TYPE_WEIGHTS)
    documents = tuple(_nfc(g["TENGIAYTO"]) for part in record.get("THANHPHANHOSO") or ()
                      for g in part.get("GIAYTO") or ()) or (_nfc("Đơn đề nghị theo mẫu"),)
    results = record.get("KETQUATHUCHIEN") or [{"TENKETQUA": "Văn bản chấp thuận"}]
    department = _DEPARTMENTS[int(code.replace(".", "")) % len(_DEPARTMENTS)]
    return Procedure(
        code=code, name=_nfc(record["TENTTHC"]), field_code=field.get("MALINHVUC") or "",
        field_name=_nfc(field.get("TENLINHVUC") or ""), agency_code=handler.get("MADONVI") or "",
        agency_name=_nfc(handler.get("TENDONVI") or ""), days=days, owner_types=owners, documents=documents,
        fee=fee, result=_nfc(results[0]["TENKETQUA"]), department=department,
    )


# =============================================================================================
# the database
# =============================================================================================
@dataclass(frozen=True)
class ExportCursor:
    """How far a reader (or an export) has got: the last ``hoso`` change seen, as the pair
    (``cap_nhat_luc``, ``so_ho_so``), and the last step ``id``. ``None``/0 = before everything."""

    hoso_at: datetime | None = None  # naive UTC, as stored
    hoso_key: str = ""
    step_id: int = 0
    #: the last ``hoso_ket_qua`` id (result documents)
    result_id: int = 0

    def hoso_after(self) -> Any:
        """The WHERE clause selecting ``hoso`` rows changed after this cursor (None = all)."""
        if self.hoso_at is None:
            return None
        at = self.hoso_at.astimezone(UTC).replace(tzinfo=None) if self.hoso_at.tzinfo else self.hoso_at
        return or_(hoso.c.cap_nhat_luc > at, and_(hoso.c.cap_nhat_luc == at, hoso.c.so_ho_so > self.hoso_key))


def _engine_for(url: str | URL) -> Engine:
    """SQLite and PostgreSQL go through the hub's engine factory (WAL, busy timeout, psycopg 3:
    the hub reads this database while the simulator writes it); any other URL SQLAlchemy knows
    is opened as is, since a ministry's one-stop system may live on anything."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() in {"sqlite", "postgresql", "postgres"}:
        from ..hub.store import make_engine

        return make_engine(parsed)
    return create_engine(parsed)


class OneStopDatabase:
    """The one-stop system's two tables on any SQLAlchemy URL (or engine), with read helpers."""

    def __init__(self, url: str | URL | Engine, *, create: bool = True) -> None:
        if isinstance(url, Engine):
            self.engine, self._owns_engine = url, False
        else:
            self.engine, self._owns_engine = _engine_for(url), True
        if create:
            self.create()

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def create(self) -> None:
        """Create the tables and indexes that do not exist yet (safe to repeat)."""
        metadata.create_all(self.engine)
        results_metadata.create_all(self.engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> OneStopDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    def count(self, table: Literal["hoso", "hoso_buoc_xu_ly"] = "hoso", *, status: str | None = None,
              so_ho_so: str | None = None) -> int:
        """Rows of ``table``, optionally of one local ``status`` and/or one dossier."""
        t = {"hoso": hoso, "hoso_buoc_xu_ly": hoso_buoc_xu_ly}.get(table)
        if t is None:
            raise ValueError(f"unknown table {table!r}: hoso or hoso_buoc_xu_ly")
        query = select(func.count()).select_from(t)
        if status is not None:
            query = query.where(t.c.trang_thai == status)
        if so_ho_so is not None:
            query = query.where(t.c.so_ho_so == so_ho_so)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def status_counts(self) -> dict[str, int]:
        """Dossiers per local status: every known code in lifecycle order (0 included), then any
        other code found in the table (injected ones) in alphabetical order."""
        with self.engine.connect() as conn:
            found = {s if s is not None else "": int(n) for s, n in
                     conn.execute(select(hoso.c.trang_thai, func.count()).group_by(hoso.c.trang_thai))}
        out = {code: found.pop(code, 0) for code in LOCAL_STATUSES}
        out.update(sorted(found.items()))
        return out

    def dossier(self, so_ho_so: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(hoso).where(hoso.c.so_ho_so == so_ho_so)).mappings().first()
        return dict(row) if row is not None else None

    def dossiers(self, *, since: ExportCursor | None = None, codes: Iterable[str] | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
        """``hoso`` rows in cursor order (``cap_nhat_luc``, ``so_ho_so``), changed after ``since``."""
        query = select(hoso).order_by(hoso.c.cap_nhat_luc, hoso.c.so_ho_so)
        after = since.hoso_after() if since is not None else None
        if after is not None:
            query = query.where(after)
        if codes is not None:
            query = query.where(hoso.c.so_ho_so.in_(list(codes)))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def steps(self, so_ho_so: str | None = None, *, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """``hoso_buoc_xu_ly`` rows in ``id`` order, of one dossier or all, after ``after_id``."""
        query = select(hoso_buoc_xu_ly).where(hoso_buoc_xu_ly.c.id > after_id).order_by(hoso_buoc_xu_ly.c.id)
        if so_ho_so is not None:
            query = query.where(hoso_buoc_xu_ly.c.so_ho_so == so_ho_so)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def high_water(self) -> ExportCursor:
        """The cursor just past everything in the database now."""
        with self.engine.connect() as conn:
            last = conn.execute(select(hoso.c.cap_nhat_luc, hoso.c.so_ho_so)
                                .order_by(hoso.c.cap_nhat_luc.desc(), hoso.c.so_ho_so.desc()).limit(1)).first()
            step = conn.execute(select(func.max(hoso_buoc_xu_ly.c.id))).scalar_one()
            result = conn.execute(select(func.max(hoso_ket_qua.c.id))).scalar_one()
        if last is None:
            return ExportCursor(None, "", int(step or 0), int(result or 0))
        return ExportCursor(last[0], last[1], int(step or 0), int(result or 0))


# =============================================================================================
# the simulation
# =============================================================================================
class _Dossier:
    """A dossier still alive in the simulation: what its next change needs, nothing more."""

    __slots__ = ("so", "seq", "proc", "kenh", "status", "version", "updated", "ngay_tiep_nhan", "ngay_hen_tra",
                 "ngay_ket_thuc_xu_ly", "ngay_tra", "due", "next_status", "next_time", "rng")

    def __init__(self, so: str, seq: int, proc: Procedure, kenh: str, status: str, version: int, updated: int,
                 ngay_tiep_nhan: str | None = None, ngay_hen_tra: str | None = None,
                 ngay_ket_thuc_xu_ly: str | None = None, ngay_tra: str | None = None) -> None:
        self.so, self.seq, self.proc, self.kenh = so, seq, proc, kenh
        self.status, self.version, self.updated = status, version, updated
        self.ngay_tiep_nhan, self.ngay_hen_tra = ngay_tiep_nhan, ngay_hen_tra
        self.ngay_ket_thuc_xu_ly, self.ngay_tra = ngay_ket_thuc_xu_ly, ngay_tra
        self.due = parse_local(ngay_hen_tra)
        self.next_status = ""
        self.next_time = 0
        #: the generator of the current version: it drew the next move, then draws its details
        self.rng: random.Random | None = None

    def dynamic(self) -> dict[str, Any]:
        return {"trang_thai": self.status, "ngay_tiep_nhan": self.ngay_tiep_nhan, "ngay_hen_tra": self.ngay_hen_tra,
                "ngay_ket_thuc_xu_ly": self.ngay_ket_thuc_xu_ly, "ngay_tra": self.ngay_tra,
                "cap_nhat_luc": _naive_utc(self.updated), "phien_ban": self.version}


@dataclass(frozen=True)
class PopulateReport:
    """What :meth:`OneStopSimulator.populate` did."""

    dossiers: int  # dossiers created by this call
    changes: int  # changes applied (= steps appended), creations included
    seconds: float  # wall-clock time taken
    status_counts: dict[str, int]  # the whole database afterwards

    @property
    def changes_per_second(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else float("inf")


_MAX_SEQUENCE = 9_999_999  # seven digits in the dossier code


class OneStopSimulator:
    """Moves the dossiers of a :class:`OneStopDatabase`, deterministically from ``seed``.

    ``agencies``: how many handling units (an int: the ministry's units with the most procedures
    first, then provincial departments), or their agency codes. ``procedures``: how many catalogue
    procedures those units handle (an int, spread over the units), or their MATTHC codes.
    ``catalogue``: the procedure catalogue (default: the sandbox's own, 300 procedures, seed 1,
    which is what ``lienthong sandbox serve`` serves by default). ``start``: the first arrival.
    ``arrivals_per_day``: mean new dossiers per calendar day. ``batch_size``: changes per
    transaction. The simulator is the database's only writer while it runs.
    """

    def __init__(self, db: OneStopDatabase | str | URL, *, seed: int = 1, agencies: int | Sequence[str] = 5,
                 procedures: int | Sequence[str] = 40, catalogue: Catalogue | None = None,
                 start: datetime = DEFAULT_START, arrivals_per_day: float = 120.0, batch_size: int = 5000) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (e.g. 2026-01-05T07:30:00+07:00)")
        if not arrivals_per_day > 0:
            raise ValueError(f"arrivals_per_day must be positive, not {arrivals_per_day}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, not {batch_size!r}")
        self._owns_db = not isinstance(db, OneStopDatabase)
        self.db = OneStopDatabase(db) if not isinstance(db, OneStopDatabase) else db
        try:
            self._setup(seed, agencies, procedures, catalogue, start, arrivals_per_day, batch_size)
        except BaseException:
            self.close()
            raise

    def _setup(self, seed: int, agencies: int | Sequence[str], procedures: int | Sequence[str],
               catalogue: Catalogue | None, start: datetime, arrivals_per_day: float, batch_size: int) -> None:
        self.seed = seed
        self.catalogue = catalogue if catalogue is not None else Catalogue(300, seed=1)
        self.start = int(start.timestamp())
        self.arrivals_per_day = float(arrivals_per_day)
        self.batch_size = batch_size
        self._gap = _DAY / self.arrivals_per_day
        self._proc_cache: dict[str, Procedure | None] = {}
        self._rosters: dict[str, _Roster] = {}
        self.procedures: tuple[Procedure, ...] = self._select(agencies, procedures)
        self.agencies: tuple[str, ...] = tuple(dict.fromkeys(p.agency_code for p in self.procedures))
        # a few procedures get most dossiers (Zipf-like), in an order drawn from the seed
        ranks = list(range(len(self.procedures)))
        random.Random(f"lienthong-onestop:{seed}:pho-bien").shuffle(ranks)
        self._proc_cum = tuple(itertools.accumulate(1.0 / (r + 1) ** 0.9 for r in ranks))
        self._load()

    # -- setup -----------------------------------------------------------------------------
    def _procedure(self, code: str | None) -> Procedure | None:
        """The catalogue procedure ``code`` (cached), None if the catalogue does not list it."""
        if not code:
            return None
        if code not in self._proc_cache:
            record = self.catalogue.record(code) if parse_code(code) is not None else None
            self._proc_cache[code] = procedure_from_record(record) if record is not None else None
        return self._proc_cache[code]

    def _select(self, agencies: int | Sequence[str], procedures: int | Sequence[str]) -> tuple[Procedure, ...]:
        if isinstance(procedures, str) or isinstance(agencies, str):
            raise TypeError("agencies and procedures are a count or a sequence of codes, not one string")
        if not isinstance(procedures, int):
            chosen = []
            for code in procedures:
                proc = self._procedure(code)
                if proc is None:
                    raise ValueError(f"procedure {code!r} is not in the catalogue")
                chosen.append(proc)
            if not isinstance(agencies, int):
                wanted = set(agencies)
                chosen = [p for p in chosen if p.agency_code in wanted]
                if not chosen:
                    raise ValueError(f"none of the procedures given is handled by agencies {sorted(wanted)}")
            if not chosen:
                raise ValueError("no procedures given")
            return tuple({p.code: p for p in chosen}.values())
        if isinstance(procedures, bool) or procedures < 1:
            raise ValueError(f"procedures must be at least 1, not {procedures!r}")
        scan = [c for c in self.catalogue.codes()[:3000] if self.catalogue.summary(
            self.catalogue.index_of(c)).status == 1]  # published ones only
        by_agency: dict[str, list[Procedure]] = {}
        for code in scan:
            proc = self._procedure(code)
            if proc is not None and proc.agency_code:
                by_agency.setdefault(proc.agency_code, []).append(proc)
        if isinstance(agencies, int):
            if isinstance(agencies, bool) or agencies < 1:
                raise ValueError(f"agencies must be at least 1, not {agencies!r}")
            # the ministry's own units (…G10) first, busiest first: a ministry's one-stop system
            order = sorted(by_agency, key=lambda a: (not a.endswith(".G10"), -len(by_agency[a]), a))
            if agencies > len(order):
                raise ValueError(f"agencies={agencies}: the catalogue has procedures for {len(order)} agencies only")
            units = order[:agencies]
        else:
            units = list(dict.fromkeys(agencies))
            missing = [a for a in units if a not in by_agency]
            if missing:
                raise ValueError(f"no published procedure of the catalogue is handled by {', '.join(missing)}")
        if procedures < len(units):
            raise ValueError(f"procedures={procedures} cannot cover agencies={len(units)}: give at least one each")
        pools = [list(by_agency[a]) for a in units]
        rng = random.Random(f"lienthong-onestop:{self.seed}:thu-tuc")
        for pool in pools:
            rng.shuffle(pool)
        chosen = []
        while len(chosen) < procedures and any(pools):
            for pool in pools:
                if pool and len(chosen) < procedures:
                    chosen.append(pool.pop())
        return tuple(chosen)

    def _roster_for(self, proc: Procedure) -> _Roster:
        roster = self._rosters.get(proc.agency_code)
        if roster is None:
            roster = self._rosters[proc.agency_code] = _roster(self.seed, proc.agency_code, proc.agency_name)
        return roster

    def _load(self) -> None:
        """(Re)build the simulation's state from the database: the clock, the next sequence
        number, and every dossier still alive with its next planned change."""
        self._inserts: dict[str, dict[str, Any]] = {}
        self._touched: dict[str, _Dossier] = {}
        self._step_rows: list[dict[str, Any]] = []
        self._active: dict[int, _Dossier] = {}
        self._heap: list[tuple[int, int]] = []
        self._next_draws: tuple[int, tuple[random.Random, int, Procedure, str]] | None = None
        live = [s for s in LOCAL_STATUSES if s not in TERMINAL_STATUSES]
        with self.db.engine.connect() as conn:
            last = conn.execute(select(func.max(hoso.c.cap_nhat_luc))).scalar_one()
            max_seq = 0
            for (code,) in conn.execute(select(hoso.c.so_ho_so)):
                seq = _sequence_of(code)
                if seq is not None and seq > max_seq:
                    max_seq = seq
            rows = conn.execute(select(
                hoso.c.so_ho_so, hoso.c.ma_thu_tuc, hoso.c.kenh_nop, hoso.c.trang_thai, hoso.c.phien_ban,
                hoso.c.cap_nhat_luc, hoso.c.ngay_nop, hoso.c.ngay_tiep_nhan, hoso.c.ngay_hen_tra,
                hoso.c.ngay_ket_thuc_xu_ly, hoso.c.ngay_tra, hoso.c.chu_ho_so, hoso.c.trich_yeu,
            ).where(hoso.c.trang_thai.in_(live))).mappings().all()
            self._total_changes = int(conn.execute(select(func.count()).select_from(hoso_buoc_xu_ly)).scalar_one())
            self._total_dossiers = int(conn.execute(select(func.count()).select_from(hoso)).scalar_one())
        self._clock = _seconds(last) if last is not None else self.start - 1
        self._next_seq = max_seq + 1
        for row in rows:
            seq = _sequence_of(row["so_ho_so"])
            proc = self._procedure(row["ma_thu_tuc"])
            if seq is None or proc is None or row["kenh_nop"] not in proc.days or self._spoiled(row):
                continue  # injected or foreign rows never move
            d = _Dossier(row["so_ho_so"], seq, proc, row["kenh_nop"], row["trang_thai"], int(row["phien_ban"]),
                         _seconds(row["cap_nhat_luc"]), row["ngay_tiep_nhan"], row["ngay_hen_tra"],
                         row["ngay_ket_thuc_xu_ly"], row["ngay_tra"])
            self._activate(d)
        self._arrival_at = self._arrival_time(self._next_seq)

    @staticmethod
    def _spoiled(row: Mapping[str, Any]) -> bool:
        """Whether a row carries one of the defects :meth:`inject` produces (such rows are frozen)."""
        owner, summary = row.get("chu_ho_so"), row.get("trich_yeu")
        if not owner or not summary or len(summary) > TRICH_YEU_MAX:
            return True
        if parse_local(row.get("ngay_nop")) is None:
            return True
        return not (unicodedata.is_normalized("NFC", owner) and unicodedata.is_normalized("NFC", summary))

    # -- public state ----------------------------------------------------------------------
    @property
    def clock(self) -> datetime:
        """The time of the last change (aware UTC); before any change, just before ``start``."""
        return datetime.fromtimestamp(self._clock, UTC)

    @property
    def total_changes(self) -> int:
        """Changes (= steps) in the database, including those of other simulator instances."""
        return self._total_changes

    @property
    def total_dossiers(self) -> int:
        return self._total_dossiers

    @property
    def active(self) -> int:
        """Dossiers that will still change (not terminal, not injected)."""
        return len(self._active)

    # -- running ---------------------------------------------------------------------------
    def advance(self, n_changes: int) -> int:
        """Apply the next ``n_changes`` changes (new dossiers and moves of existing ones, in time
        order); returns how many were applied."""
        if isinstance(n_changes, bool) or not isinstance(n_changes, int) or n_changes < 0:
            raise ValueError(f"advance by a whole number of changes ≥ 0, not {n_changes!r}")
        return self._run(changes=n_changes)[0]

    def populate(self, dossiers: int) -> PopulateReport:
        """Run the simulation until ``dossiers`` more dossiers have been submitted.

        The earlier dossiers have by then lived their lives and the recent ones are on their way,
        which is the mix of statuses a real system shows: most finished, a share in progress or
        waiting for a supplement, the last arrivals not yet received.
        """
        if isinstance(dossiers, bool) or not isinstance(dossiers, int) or dossiers < 0:
            raise ValueError(f"dossiers must be a whole number ≥ 0, not {dossiers!r}")
        began = time.perf_counter()
        changes, created = self._run(dossiers=dossiers)
        return PopulateReport(created, changes, time.perf_counter() - began, self.db.status_counts())

    def _run(self, *, changes: int | None = None, dossiers: int | None = None) -> tuple[int, int]:
        done = created = 0
        try:
            while (changes is None or done < changes) and (dossiers is None or created < dossiers):
                if self._heap and self._heap[0][0] <= self._arrival_at:
                    when, seq = heapq.heappop(self._heap)
                    self._clock = max(when, self._clock + 1)
                    self._move(self._active[seq], self._clock)
                else:
                    self._clock = max(self._arrival_at, self._clock + 1)
                    self._arrive(self._clock)
                    created += 1
                done += 1
                if len(self._step_rows) >= self.batch_size:
                    self._flush()
            self._flush()
        except BaseException:
            # the database is the state: forget what was not written and start again from it
            self._load()
            raise
        return done, created

    def _flush(self) -> None:
        if not self._step_rows:
            return
        inserts, updates = self._inserts, []
        for so, d in self._touched.items():
            row = inserts.get(so)
            if row is not None:
                row.update(d.dynamic())
            else:
                updates.append({**d.dynamic(), "b_so_ho_so": so})
        with self.db.engine.begin() as conn:
            if inserts:
                conn.execute(hoso.insert(), list(inserts.values()))
            if updates:
                conn.execute(_UPDATE, updates)
            conn.execute(hoso_buoc_xu_ly.insert(), self._step_rows)
        self._total_changes += len(self._step_rows)
        self._total_dossiers += len(inserts)
        self._inserts, self._touched, self._step_rows = {}, {}, []

    # -- arrivals --------------------------------------------------------------------------
    def _arrival_draws(self, seq: int) -> tuple[random.Random, int, Procedure, str]:
        """(generator, planned time, procedure, channel) of dossier number ``seq``.

        Kept for the next arrival: its time is needed first, the rest of it when it arrives.
        """
        cached = self._next_draws
        if cached is not None and cached[0] == seq:
            return cached[1]
        rng = random.Random(f"lienthong-onestop:{self.seed}:nop:{seq}")
        at = self.start + int((seq - 1 + rng.random()) * self._gap)
        proc = rng.choices(self.procedures, cum_weights=self._proc_cum)[0]
        channels = proc.channels
        kenh = rng.choices(channels, weights=[CHANNEL_WEIGHTS[c] for c in channels])[0]
        if kenh != "TRUC_TUYEN":  # the desk and the post office keep office hours
            at = next_working_time(at)
        self._next_draws = (seq, (rng, at, proc, kenh))
        return rng, at, proc, kenh

    def _arrival_time(self, seq: int) -> int:
        return self._arrival_draws(seq)[1]

    def _new_dossier(self, seq: int, now: int) -> tuple[dict[str, Any], dict[str, Any], _Dossier]:
        """The hoso row (static part), creation step and state of dossier ``seq`` submitted at ``now``."""
        if seq > _MAX_SEQUENCE:
            raise ValueError(f"dossier sequence {seq} exceeds the code's seven digits")
        rng, _at, proc, kenh = self._arrival_draws(seq)
        self._next_draws = None  # the generator is consumed from here on
        owner_type = rng.choices(proc.owner_types, weights=[OWNER_TYPE_WEIGHTS[o] for o in proc.owner_types])[0]
        owner, id_number, email, phone = _owner(rng, owner_type)
        local_now = local_text(now)
        so = f"{proc.agency_code}-{local_now[:10].replace('-', '')}-{seq:07d}"
        name = proc.name[len("Thủ tục "):] if proc.name.startswith("Thủ tục ") else proc.name
        summary = _nfc(f"Hồ sơ đề nghị {lower_first(name)} của {owner}")[:TRICH_YEU_MAX]
        static = {
            "so_ho_so": so, "ma_thu_tuc": proc.code, "ten_thu_tuc": proc.name, "ma_linh_vuc": proc.field_code,
            "ten_linh_vuc": proc.field_name, "kenh_nop": kenh, "chu_ho_so": owner, "so_giay_to": id_number,
            "loai_chu_ho_so": owner_type, "email": email, "dien_thoai": phone, "trich_yeu": summary,
            "ngay_nop": local_now, "don_vi_xu_ly": proc.agency_name, "co_quan": proc.agency_code,
        }
        d = _Dossier(so, seq, proc, kenh, "MOI", 1, now)
        roster = self._roster_for(proc)
        if kenh == "TRUC_TIEP":
            officer = rng.choice(roster.reception)
            d.status = "DA_TIEP_NHAN"
            self._receive(d, now)
            step = self._step(d, officer, "Tiếp nhận hồ sơ nộp trực tiếp tại Bộ phận Một cửa, chuyển "
                              f"{lower_first(proc.department)} giải quyết", now, started=True)
        else:
            how = ("Nộp hồ sơ trực tuyến trên Cổng Dịch vụ công quốc gia" if kenh == "TRUC_TUYEN"
                   else "Nộp hồ sơ qua dịch vụ bưu chính công ích")
            step = self._step(d, Official(owner, "", ""), how, now)
        return static, step, d

    def _arrive(self, now: int) -> None:
        static, step, d = self._new_dossier(self._next_seq, now)
        self._inserts[d.so] = static
        self._touched[d.so] = d
        self._step_rows.append(step)
        self._next_seq += 1
        self._arrival_at = self._arrival_time(self._next_seq)
        self._activate(d)

    # -- moves -----------------------------------------------------------------------------
    def _activate(self, d: _Dossier) -> None:
        """Plan ``d``'s next change (or forget it if terminal); a pure function of its row."""
        if d.status in TERMINAL_STATUSES:
            self._active.pop(d.seq, None)
            return
        rng = random.Random(f"lienthong-onestop:{self.seed}:{d.so}:{d.version}")
        target, delay = _plan(rng, d)
        d.rng = rng
        d.next_status = target
        d.next_time = max(_after_working(d.updated, delay), d.updated + 1)
        self._active[d.seq] = d
        heapq.heappush(self._heap, (d.next_time, d.seq))

    def _receive(self, d: _Dossier, now: int) -> None:
        d.ngay_tiep_nhan = local_text(now)
        d.due = _after_working(now, d.proc.days[d.kenh] * WORKDAY_SECONDS)
        d.ngay_hen_tra = local_text(d.due)

    def _step(self, d: _Dossier, who: Official, what: str, now: int, *, started: bool = False) -> dict[str, Any]:
        at = local_text(now)
        return {
            "so_ho_so": d.so, "nguoi_xu_ly": who.name, "chuc_danh": who.title or None,
            "phong_ban": who.department or None, "noi_dung": _nfc(what), "trang_thai": d.status,
            "thoi_diem": at, "ngay_bat_dau": at if started else None,
            "han_xu_ly": d.ngay_hen_tra, "cap_nhat_luc": _naive_utc(now),
        }

    def _move(self, d: _Dossier, now: int) -> None:
        rng = d.rng
        assert rng is not None, "a dossier moves only after _activate planned the move"
        roster = self._roster_for(d.proc)
        specialists, heads = roster.departments[d.proc.department]
        before, target = d.status, d.next_status
        entered_before = d.updated
        d.status, d.version, d.updated = target, d.version + 1, now
        started = False
        if target == "DA_TIEP_NHAN":
            who = rng.choice(roster.reception)
            self._receive(d, now)
            what = rng.choice(("Tiếp nhận hồ sơ, chuyển phòng chuyên môn thẩm định",
                               f"Kiểm tra hồ sơ đầy đủ, hợp lệ; tiếp nhận và chuyển {lower_first(d.proc.department)} "
                               "giải quyết"))
            started = True
        elif target == "TU_CHOI":
            who = rng.choice(roster.reception)
            what = "Từ chối tiếp nhận hồ sơ: " + rng.choice((
                "hồ sơ không thuộc thẩm quyền giải quyết của cơ quan",
                "thành phần hồ sơ không đúng quy định, đã hướng dẫn tổ chức, cá nhân hoàn thiện",
                "đối tượng đề nghị không thuộc phạm vi điều chỉnh của thủ tục"))
        elif target == "DANG_XU_LY" and before == "CHO_BO_SUNG":
            who = rng.choice(specialists)
            # the clock stops while the citizen gathers the papers: the due date moves by as much
            waited = work_index(now) - work_index(entered_before)
            if d.due is not None:
                d.due = from_work_index(work_index(d.due) + waited)
                d.ngay_hen_tra = local_text(d.due)
            what = "Đã nhận hồ sơ bổ sung đầy đủ, tiếp tục thẩm định"
            started = True
        elif target == "DANG_XU_LY":
            who = rng.choice(heads)
            what = f"Phân công chuyên viên {rng.choice(specialists).name} thụ lý, thẩm định hồ sơ"
            started = True
        elif target == "CHO_BO_SUNG":
            who = rng.choice(specialists)
            what = "Yêu cầu bổ sung: " + lower_first(rng.choice(d.proc.documents))
        elif target == "CHO_NOP_PHI":
            who = rng.choice(specialists)
            fee_name, amount = d.proc.fee or ("Phí thẩm định", 200_000)
            what = (f"Thông báo thực hiện nghĩa vụ tài chính: {lower_first(fee_name)} "
                    + f"{amount:,}".replace(",", ".") + " đồng")
        elif target == "DA_XU_LY":
            who = rng.choice(roster.leaders)
            d.ngay_ket_thuc_xu_ly = local_text(now)
            what = f"phê duyệt, ký số {lower_first(d.proc.result)}"
            what = ("Tổ chức, cá nhân đã hoàn thành nghĩa vụ tài chính; " + what if before == "CHO_NOP_PHI"
                    else "P" + what[1:])
        elif target == "DA_TRA_KQ":
            who = rng.choice(roster.reception)
            d.ngay_tra = local_text(now)
            what = "Trả kết quả cho tổ chức, cá nhân " + {
                "TRUC_TIEP": "tại Bộ phận Một cửa",
                "TRUC_TUYEN": "trên Cổng Dịch vụ công quốc gia (bản điện tử)",
                "BUU_CHINH": "qua dịch vụ bưu chính công ích"}[d.kenh]
        elif target == "CONG_DAN_RUT":
            who = rng.choice(roster.reception)
            what = "Tổ chức, cá nhân đề nghị rút hồ sơ; dừng giải quyết và trả lại hồ sơ"
        elif target == "DUNG_XU_LY":
            who = rng.choice(roster.leaders)
            d.ngay_ket_thuc_xu_ly = local_text(now)
            what = "Dừng xử lý hồ sơ: " + ("quá thời hạn bổ sung hồ sơ theo yêu cầu" if before == "CHO_BO_SUNG"
                                           else rng.choice(("kết quả thẩm định không đạt yêu cầu",
                                                            "cơ sở không đáp ứng điều kiện theo quy định")))
        else:  # pragma: no cover - _plan only draws from TRANSITIONS
            raise AssertionError(f"no move {before} → {target}")
        self._step_rows.append(self._step(d, who, what, now, started=started))
        self._touched[d.so] = d
        self._activate(d)

    # -- bad data --------------------------------------------------------------------------
    def inject(self, kind: str, count: int = 1) -> list[str]:
        """Submit ``count`` new dossiers carrying the defect ``kind``; returns their codes in order.

        Each is an ordinary new dossier (one ``hoso`` row, version 1, and its creation step, at the
        next ticks of the clock) except for the defect, which is in the ``hoso`` row:

        * ``unknown_status``: ``trang_thai`` = ``'CHUYEN_LIEN_THONG'`` (in the step too);
        * ``missing_field``: ``trich_yeu`` NULL (1st, 3rd… dossier) or ``chu_ho_so`` empty (2nd, 4th…);
        * ``malformed_date``: ``ngay_nop`` = ``'31/02/2026'`` (then other impossible dates in turn);
        * ``overlong_text``: ``trich_yeu`` longer than 1000 characters;
        * ``non_nfc``: ``chu_ho_so`` and ``trich_yeu`` in decomposed (NFD) Unicode;
        * ``unknown_procedure``: ``ma_thu_tuc`` = ``'9.999999'`` (then 9.999998…), in no catalogue.

        Injected dossiers never move afterwards (also when the database is reopened), so each
        one's outcome can be checked on its own.
        """
        if kind not in INJECTION_KINDS:
            raise ValueError(f"unknown injection kind {kind!r}: one of {', '.join(INJECTION_KINDS)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a whole number ≥ 1, not {count!r}")
        self._flush()
        codes = []
        try:
            for i in range(count):
                self._clock += 1
                static, step, d = self._new_dossier(self._next_seq, self._clock)
                row = {**static, **d.dynamic()}
                _spoil(kind, i, row, step)
                self._inserts[d.so] = row
                self._step_rows.append(step)
                self._next_seq += 1
                codes.append(d.so)
            self._arrival_at = self._arrival_time(self._next_seq)
            self._flush()
        except BaseException:
            self._load()
            raise
        return codes

    # -- files -----------------------------------------------------------------------------
    def export_files(self, inbox: Path, *, format: str = "json", since_cursor: ExportCursor | None = None,
                     max_records: int | None = None) -> list[Path]:
        """:func:`export_files` of this simulator's database."""
        return export_files(self.db, inbox, format=format, since_cursor=since_cursor, max_records=max_records)

    def close(self) -> None:
        if self._owns_db:
            self.db.close()


def _sequence_of(code: str | None) -> int | None:
    if not code:
        return None
    tail = code.rsplit("-", 1)[-1]
    return int(tail) if len(tail) == 7 and tail.isdigit() else None


def _owner(rng: random.Random, owner_type: str) -> tuple[str, str, str | None, str | None]:
    """(name, ID number, e-mail or None, phone or None) of a dossier's owner."""
    phone = rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**7):07d}" if rng.random() < 0.9 else None
    if owner_type == "CONG_DAN":
        name = person_name(rng)
        year = rng.randrange(1955, 2006)
        century_sex = (0 if year < 2000 else 2) + rng.randrange(2)
        id_number = f"{rng.choice(_CCCD_PROVINCES)}{century_sex}{year % 100:02d}{rng.randrange(10**6):06d}"
        folded = ascii_fold(name).lower().split()
        email = f"{folded[-1]}{folded[0]}{year % 100:02d}@{EMAIL_DOMAIN}" if rng.random() < 0.7 else None
        return name, id_number, email, phone
    place = rng.choice(_PLACES)
    if owner_type == "DOANH_NGHIEP":
        name = f"{rng.choice(_COMPANY_FORMS)} {rng.choice(_COMPANY_TRADES)} {rng.choice(_COMPANY_BRANDS)}"
    elif owner_type == "TO_CHUC":
        name = rng.choice(_ORGANISATIONS).format(place=place)
    else:
        name = rng.choice(_PUBLIC_BODIES).format(place=place)
    id_number = f"{rng.randrange(1, 97):02d}{rng.randrange(10**8):08d}"  # a tax code (MST), 10 digits
    email = f"lienhe.{id_number[-6:]}@{EMAIL_DOMAIN}" if rng.random() < 0.85 else None
    return _nfc(name), id_number, email, phone


def _plan(rng: random.Random, d: _Dossier) -> tuple[str, float]:
    """(next status, delay in working seconds) of a dossier that just reached ``d.status``."""
    W = WORKDAY_SECONDS
    status = d.status
    if status == "MOI":
        target = rng.choices(("DA_TIEP_NHAN", "TU_CHOI", "CONG_DAN_RUT"), weights=(90, 7, 3))[0]
        return target, rng.uniform(0.05, 1.5) * W
    if status == "DA_TIEP_NHAN":
        target = rng.choices(("DANG_XU_LY", "CONG_DAN_RUT"), weights=(97, 3))[0]
        return target, rng.uniform(0.05, 0.6) * W
    if status == "DANG_XU_LY":
        # each supplement already asked for makes another one less likely
        first = 2 if d.kenh == "TRUC_TIEP" else 3
        asked = max(0, (d.version - first) // 2)
        target = rng.choices(("DA_XU_LY", "CHO_BO_SUNG", "CHO_NOP_PHI", "DUNG_XU_LY", "CONG_DAN_RUT"),
                             weights=(68, 20 * 0.45 ** asked, 7, 3, 2))[0]
        span = d.proc.days[d.kenh] * W
        low, high = {"DA_XU_LY": (0.3, 1.0), "CHO_BO_SUNG": (0.1, 0.5), "CHO_NOP_PHI": (0.3, 0.8)}.get(target, (0.1, 0.8))
        return target, rng.uniform(low, high) * span
    if status == "CHO_BO_SUNG":
        target = rng.choices(("DANG_XU_LY", "CONG_DAN_RUT", "DUNG_XU_LY"), weights=(85, 7, 8))[0]
        low, high = {"DANG_XU_LY": (0.5, 8.0), "CONG_DAN_RUT": (1.0, 10.0)}.get(target, (10.0, 15.0))
        return target, rng.uniform(low, high) * W
    if status == "CHO_NOP_PHI":
        return "DA_XU_LY", rng.uniform(0.3, 3.0) * W
    if status == "DA_XU_LY":
        return "DA_TRA_KQ", rng.uniform(0.1, 3.0) * W
    raise ValueError(f"dossier {d.so} is in status {status!r}, which has no next move")


_OVERLONG_FILLER = _nfc(
    "Nội dung chi tiết: tổ chức, cá nhân cam kết các thông tin kê khai trong hồ sơ là đúng sự thật, "
    "chịu trách nhiệm trước pháp luật về tính chính xác của các giấy tờ đã nộp và thực hiện đầy đủ "
    "các nghĩa vụ theo quy định. ")


def _spoil(kind: str, i: int, row: dict[str, Any], step: dict[str, Any]) -> None:
    if kind == "unknown_status":
        row["trang_thai"] = step["trang_thai"] = UNKNOWN_STATUS
        step["noi_dung"] = _nfc("Chuyển hồ sơ liên thông đến cơ quan có thẩm quyền giải quyết")
    elif kind == "missing_field":
        if i % 2 == 0:
            row["trich_yeu"] = None
        else:
            row["chu_ho_so"] = ""
    elif kind == "malformed_date":
        row["ngay_nop"] = MALFORMED_DATES[i % len(MALFORMED_DATES)]
    elif kind == "overlong_text":
        target = TRICH_YEU_MAX + 1 + (i * 97) % 500
        text = row["trich_yeu"] + ". "
        while len(text) < target:
            text += _OVERLONG_FILLER
        row["trich_yeu"] = text[:target]
    elif kind == "non_nfc":
        row["chu_ho_so"] = unicodedata.normalize("NFD", row["chu_ho_so"])
        row["trich_yeu"] = unicodedata.normalize("NFD", row["trich_yeu"])
    elif kind == "unknown_procedure":
        row["ma_thu_tuc"] = f"9.{999999 - i:06d}"


# =============================================================================================
# export files for the file-drop source
# =============================================================================================
def atomic_write(path: Path, content: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` so that no reader (the file-drop intake) ever sees it half-written: see
    :func:`lienthong.hub.files.write_atomic`."""
    return write_atomic(path, content)


def export_value(value: Any) -> Any:
    """A column value as exported: ``cap_nhat_luc`` (UTC) as ISO 8601 with ``Z``, others unchanged."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    return value


def _text_value(value: Any) -> str:
    value = export_value(value)
    return "" if value is None else str(value)


def _json_bytes(hoso_rows: Sequence[Mapping[str, Any]], step_rows: Sequence[Mapping[str, Any]],
                result_rows: Sequence[Mapping[str, Any]] = ()) -> bytes:
    """``{"hoso": [...], "buoc_xu_ly": [...]}`` (and ``"ket_qua"`` when there are result documents)
    with one record per line (readable, diffable)."""
    out = io.StringIO()
    parts = [("hoso", hoso_rows, HOSO_COLUMNS), ("buoc_xu_ly", step_rows, STEP_COLUMNS)]
    if result_rows:
        parts.append(("ket_qua", result_rows, RESULT_COLUMNS))
    for n, (key, rows, columns) in enumerate(parts):
        out.write("{" if n == 0 else ",\n")
        out.write(f'"{key}": [')
        for i, row in enumerate(rows):
            out.write(",\n  " if i else "\n  ")
            out.write(json.dumps({c: export_value(row[c]) for c in columns}, ensure_ascii=False))
        out.write("\n]" if rows else "]")
    out.write("}\n")
    return out.getvalue().encode("utf-8")


def _csv_writer(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Callable[[BinaryIO], None]:
    def write(fh: BinaryIO) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
        try:
            writer = csv.writer(text)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_text_value(row[c]) for c in columns])
        finally:
            text.detach()  # the caller closes (and fsyncs) the underlying file
    return write


def _xml_bytes(hoso_rows: Sequence[Mapping[str, Any]], step_rows: Sequence[Mapping[str, Any]],
               result_rows: Sequence[Mapping[str, Any]] = ()) -> bytes:
    root = etree.Element("xuat_du_lieu")
    for tag, rows, columns in (("hoso", hoso_rows, HOSO_COLUMNS), ("buoc_xu_ly", step_rows, STEP_COLUMNS),
                               ("ket_qua", result_rows, RESULT_COLUMNS)):
        for row in rows:
            record = etree.SubElement(root, tag)
            for column in columns:
                value = row[column]
                if value is not None:  # NULL: the element is absent
                    etree.SubElement(record, column).text = _text_value(value)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def export_files(db: OneStopDatabase, inbox: Path, *, format: str = "json",
                 since_cursor: ExportCursor | None = None, max_records: int | None = None) -> list[Path]:
    """Write the rows changed after ``since_cursor`` (None: all rows) as export files in ``inbox``.

    Layouts (the file-drop contract of issue 4; UTF-8, no BOM):

    * ``json``: one file ``onestop-<stamp>.json`` = ``{"hoso": [...], "buoc_xu_ly": [...]}``, and
      ``"ket_qua": [...]`` (``ket_qua-<stamp>.csv``, ``<ket_qua>`` elements) when result documents
      (``hoso_ket_qua``) were added after the cursor's ``result_id``; the stamp then ends with the
      last result id;
    * ``csv``: ``hoso-<stamp>.csv`` and ``buoc_xu_ly-<stamp>.csv``, header row = column names (a
      table with no changed row gets no file); NULL is an empty field;
    * ``xml``: one file ``onestop-<stamp>.xml`` = ``<xuat_du_lieu><hoso>…</hoso><buoc_xu_ly>…
      </buoc_xu_ly></xuat_du_lieu>``, one child element per non-NULL column.

    Records are in cursor order (hoso by ``cap_nhat_luc``, ``so_ho_so``; steps by ``id``).
    ``cap_nhat_luc`` is written ``YYYY-MM-DDTHH:MM:SSZ`` (UTC); every other value as stored.
    ``<stamp>`` = ``<last cap_nhat_luc, UTC, yyyyMMddTHHmmssZ>-<last step id, 10 digits>``, so file
    names sort in export order. Nothing changed → no file. Every file is written atomically
    (:func:`atomic_write`). Returns the files written, in the order a reader must take them.

    ``max_records`` splits a large export (the hub's reader refuses files over 64 MiB, which
    20,000 dossiers with their steps exceed) into parts of at most that many records, each part
    holding one kind: ``onestop-<stamp>-p0001.json``… (``hoso-<stamp>-p0001.csv``…), dossier
    parts first, then step parts, numbered across both kinds. Read in name order (the CSV reader
    orders by the name after the ``hoso-``/``buoc_xu_ly-`` prefix), every dossier record thus
    comes before the steps of the same export, as in a single file.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}: one of {', '.join(EXPORT_FORMATS)}")
    if max_records is not None and (isinstance(max_records, bool) or not isinstance(max_records, int)
                                    or max_records < 1):
        raise ValueError(f"max_records must be a whole number ≥ 1, not {max_records!r}")
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    hoso_rows = db.dossiers(since=since_cursor)
    step_rows = db.steps(after_id=since_cursor.step_id if since_cursor is not None else 0)
    result_rows = results_of(db, after_id=since_cursor.result_id if since_cursor is not None else 0)
    if not hoso_rows and not step_rows and not result_rows:
        return []
    last_at = max((r["cap_nhat_luc"] for r in hoso_rows), default=None)
    if last_at is None and since_cursor is not None:
        last_at = since_cursor.hoso_at
    last_id = step_rows[-1]["id"] if step_rows else (since_cursor.step_id if since_cursor is not None else 0)
    at = last_at.strftime("%Y%m%dT%H%M%SZ") if last_at is not None else "00000000T000000Z"
    stamp = f"{at}-{last_id:010d}"
    if result_rows:  # a name of its own when only results changed
        stamp += f"-{result_rows[-1]['id']:010d}"
    if max_records is None or len(hoso_rows) + len(step_rows) + len(result_rows) <= max_records:
        parts = [(stamp, hoso_rows, step_rows, result_rows)]
    else:
        chunks = [(rows[i:i + max_records], kind)
                  for rows, kind in ((hoso_rows, "hoso"), (step_rows, "buoc"), (result_rows, "ket_qua"))
                  for i in range(0, len(rows), max_records)]
        parts = [(f"{stamp}-p{n:04d}", chunk if kind == "hoso" else [], chunk if kind == "buoc" else [],
                  chunk if kind == "ket_qua" else []) for n, (chunk, kind) in enumerate(chunks, start=1)]
    written = []
    for name, dossiers, steps, results in parts:
        if format == "json":
            written.append(atomic_write(inbox / f"onestop-{name}.json", _json_bytes(dossiers, steps, results)))
        elif format == "xml":
            written.append(atomic_write(inbox / f"onestop-{name}.xml", _xml_bytes(dossiers, steps, results)))
        else:
            if dossiers:
                written.append(atomic_write(inbox / f"hoso-{name}.csv", _csv_writer(dossiers, HOSO_COLUMNS)))
            if steps:
                written.append(atomic_write(inbox / f"buoc_xu_ly-{name}.csv", _csv_writer(steps, STEP_COLUMNS)))
            if results:
                written.append(atomic_write(inbox / f"ket_qua-{name}.csv", _csv_writer(results, RESULT_COLUMNS)))
    return written


#: a plausible dossier and step for the broken files (they must look like real exports but for the fault)
_SAMPLE_HOSO: dict[str, Any] = {
    "so_ho_so": "000.00.04.G10-20260105-0000001", "ma_thu_tuc": "1.001003",
    "ten_thu_tuc": _nfc("Cấp giấy chứng nhận kiểm dịch động vật, sản phẩm động vật trên cạn xuất khẩu"),
    "ma_linh_vuc": "G10-TY", "ten_linh_vuc": _nfc("Thú y"), "kenh_nop": "TRUC_TUYEN",
    "chu_ho_so": _nfc("Nguyễn Thị Hương"), "so_giay_to": "001190012345", "loai_chu_ho_so": "CONG_DAN",
    "email": f"huongnguyen90@{EMAIL_DOMAIN}", "dien_thoai": "0912345678",
    "trich_yeu": _nfc("Hồ sơ đề nghị cấp giấy chứng nhận kiểm dịch của Nguyễn Thị Hương"),
    "ngay_nop": "2026-01-05 08:12:45", "ngay_tiep_nhan": None, "ngay_hen_tra": None, "ngay_ket_thuc_xu_ly": None,
    "ngay_tra": None, "trang_thai": "MOI", "don_vi_xu_ly": _nfc("Cục Thú y"), "co_quan": "000.00.04.G10",
    "cap_nhat_luc": datetime(2026, 1, 5, 1, 12, 45), "phien_ban": 1,
}
_SAMPLE_STEP: dict[str, Any] = {
    "id": 1, "so_ho_so": _SAMPLE_HOSO["so_ho_so"], "nguoi_xu_ly": _SAMPLE_HOSO["chu_ho_so"], "chuc_danh": None,
    "phong_ban": None, "noi_dung": _nfc("Nộp hồ sơ trực tuyến trên Cổng Dịch vụ công quốc gia"), "trang_thai": "MOI",
    "thoi_diem": "2026-01-05 08:12:45", "ngay_bat_dau": None, "han_xu_ly": None,
    "cap_nhat_luc": datetime(2026, 1, 5, 1, 12, 45),
}


_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")  # grave, acute, tilde, hook above, dot below


def _cp1258(text: str) -> bytes:
    """``text`` as Windows-1258 (Vietnamese ANSI), which precomposes â, ă, ê, ô, ơ, ư, đ but keeps
    the five tone marks as separate combining characters: what old Windows tools export."""
    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", ch)
            base = unicodedata.normalize("NFC", "".join(c for c in parts if c not in _TONE_MARKS))
            out += (base + "".join(c for c in parts if c in _TONE_MARKS)).encode("cp1258")
    return bytes(out)


def write_broken_file(inbox: Path, kind: str) -> Path:
    """Write an export file a careful reader must refuse (and quarantine), named like a good one.

    * ``truncated_json``: a JSON export cut off in the middle (as if copied while being written
      by a tool that does not write atomically);
    * ``json_wrong_shape``: valid JSON, but a list of records instead of ``{"hoso": …}``;
    * ``csv_wrong_header``: ``hoso-*.csv`` whose header names other columns (``ma_ho_so``…);
    * ``xml_dtd``: an XML export with a DOCTYPE declaring nested entities (entity expansion);
    * ``xml_external_entity``: an XML export with an external entity (``file:///etc/hostname``);
    * ``xml_malformed``: an XML export that is not well-formed (an unclosed element);
    * ``not_utf8``: ``hoso-*.csv`` encoded in Windows-1258 (Vietnamese ANSI), not UTF-8.

    Written atomically, so the reader's refusal is about the content, never a half-written file.
    """
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    suffix = f"broken-{kind.replace('_', '-')}"
    if kind == "truncated_json":
        good = _json_bytes([_SAMPLE_HOSO] * 3, [_SAMPLE_STEP] * 3)
        return atomic_write(inbox / f"onestop-{suffix}.json", good[: len(good) * 3 // 5])
    if kind == "json_wrong_shape":
        body = json.dumps([{c: export_value(_SAMPLE_HOSO[c]) for c in HOSO_COLUMNS}], ensure_ascii=False)
        return atomic_write(inbox / f"onestop-{suffix}.json", body.encode("utf-8"))
    if kind == "csv_wrong_header":
        wrong = ["ma_ho_so" if c == "so_ho_so" else "tinh_trang" if c == "trang_thai" else c for c in HOSO_COLUMNS]
        out = io.StringIO(newline="")
        writer = csv.writer(out)
        writer.writerow(wrong)
        writer.writerow([_text_value(_SAMPLE_HOSO[c]) for c in HOSO_COLUMNS])
        return atomic_write(inbox / f"hoso-{suffix}.csv", out.getvalue().encode("utf-8"))
    if kind in ("xml_dtd", "xml_external_entity", "xml_malformed"):
        good = _xml_bytes([_SAMPLE_HOSO], [_SAMPLE_STEP]).decode("utf-8")
        declaration, body = good.split("\n", 1)
        if kind == "xml_dtd":
            doctype = ('<!DOCTYPE xuat_du_lieu [\n  <!ENTITY a "hahahahahahahahahahaha">\n'
                       '  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">\n]>')
            body = body.replace("<trich_yeu>", "<trich_yeu>&c;", 1)
        elif kind == "xml_external_entity":
            doctype = '<!DOCTYPE xuat_du_lieu [\n  <!ENTITY xxe SYSTEM "file:///etc/hostname">\n]>'
            body = body.replace("<trich_yeu>", "<trich_yeu>&xxe;", 1)
        else:
            doctype = ""
            body = body.replace("</hoso>", "", 1)
        text = "\n".join(part for part in (declaration, doctype, body) if part)
        return atomic_write(inbox / f"onestop-{suffix}.xml", text.encode("utf-8"))
    if kind == "not_utf8":
        out = io.StringIO(newline="")
        writer = csv.writer(out)
        writer.writerow(HOSO_COLUMNS)
        writer.writerow([_text_value(_SAMPLE_HOSO[c]) for c in HOSO_COLUMNS])
        return atomic_write(inbox / f"hoso-{suffix}.csv", _cp1258(out.getvalue()))
    raise ValueError(f"unknown broken-file kind {kind!r}: one of {', '.join(BROKEN_KINDS)}")


# =============================================================================================
# command line
# =============================================================================================
def build_parser(prog: str = "python -m lienthong.sandbox.onestop") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Fill (and move) a synthetic one-stop database, print what it holds, optionally export it.")
    p.add_argument("--db", help="SQLAlchemy URL of the one-stop database "
                                "(default sqlite:///$LIENTHONG_HOME/sandbox/onestop.db)")
    p.add_argument("--dossiers", type=int, default=0, metavar="N", help="submit N more dossiers, letting earlier ones live on")
    p.add_argument("--advance", type=int, default=0, metavar="M", help="then apply M more changes")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (same seed, same rows; default 1)")
    p.add_argument("--agencies", type=int, default=5, help="handling units (default 5)")
    p.add_argument("--procedures", type=int, default=40, help="procedures they handle (default 40)")
    p.add_argument("--catalogue-size", type=int, default=300, help="sandbox catalogue size (default 300)")
    p.add_argument("--catalogue-seed", type=int, default=1, help="sandbox catalogue seed (default 1)")
    p.add_argument("--start", default=DEFAULT_START.isoformat(), help="first arrival, ISO 8601 with offset")
    p.add_argument("--arrivals-per-day", type=float, default=120.0, help="mean new dossiers per day (default 120)")
    p.add_argument("--inject", action="append", default=[], metavar="KIND=COUNT",
                   help=f"add bad dossiers (repeatable): {', '.join(INJECTION_KINDS)}; or bad result files "
                        f"for dossiers at DA_XU_LY/DA_TRA_KQ: {', '.join(RESULT_INJECTION_KINDS)}")
    p.add_argument("--results", action="store_true",
                   help="give every dossier at DA_XU_LY/DA_TRA_KQ without a result its result file(s) "
                        "(hoso_ket_qua rows, files under --results-dir)")
    p.add_argument("--results-dir", type=Path, help="the system's result folder (default "
                   "$LIENTHONG_HOME/sandbox/ket-qua)")
    p.add_argument("--large-share", type=float, default=0.05,
                   help="share of result files that are large scans of 12-40 MB (default 0.05)")
    p.add_argument("--export-dir", type=Path, help="write every row as export files into this folder")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="json", help="export file format (default json)")
    p.add_argument("--only-this-run", action="store_true",
                   help="export only the rows this run changed (repeated runs then drop incremental files)")
    p.add_argument("--max-records", type=int, default=20_000,
                   help="records per export file at most; larger exports are split in parts (default 20000)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _default_results_dir() -> Path:
    from ..hub.settings import Settings

    return Settings.from_env().home / "sandbox" / "ket-qua"


def _default_db_url() -> str:
    from ..hub.settings import Settings

    return f"sqlite:///{Settings.from_env().home / 'sandbox' / 'onestop.db'}"


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """The command line (``prog`` names it in help and errors, e.g. ``lienthong sandbox onestop``)."""
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    injections, result_injections = [], []
    for item in args.inject:
        kind, _, count = item.partition("=")
        known = (*INJECTION_KINDS, *RESULT_INJECTION_KINDS)
        if kind not in known or not (count or "1").isdigit():
            parser.error(f"--inject {item!r}: expected KIND=COUNT with KIND one of {', '.join(known)}")
        (result_injections if kind in RESULT_INJECTION_KINDS else injections).append((kind, int(count or "1")))
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        parser.error(f"--start {args.start!r} is not an ISO 8601 date and time")
    from ..hub.errors import HubError

    try:
        url = args.db or _default_db_url()
        began = time.perf_counter()
        sim = OneStopSimulator(url, seed=args.seed, agencies=args.agencies, procedures=args.procedures,
                               catalogue=Catalogue(args.catalogue_size, seed=args.catalogue_seed), start=start,
                               arrivals_per_day=args.arrivals_per_day)
        try:
            before = sim.total_changes
            cursor = sim.db.high_water() if args.only_this_run else None
            created = sim.populate(args.dossiers).dossiers if args.dossiers else 0
            sim.advance(args.advance)
            injected = {kind: sim.inject(kind, count) for kind, count in injections}
            results = None
            if args.results or result_injections:
                results_dir = args.results_dir or _default_results_dir()
                for kind, count in result_injections:  # before the good ones take every dossier at 9/10
                    injected[kind] = inject_result(sim.db, results_dir, kind, count, seed=args.seed,
                                                   catalogue=sim.catalogue)
                results = (attach_results(sim.db, results_dir, seed=args.seed, catalogue=sim.catalogue,
                                          large_share=args.large_share).as_dict() if args.results else {})
                results["dir"] = str(results_dir)
            elapsed = time.perf_counter() - began
            exported = (sim.export_files(args.export_dir, format=args.format, since_cursor=cursor,
                                         max_records=args.max_records) if args.export_dir else [])
            summary = {
                "db": sim.db.url, "seed": args.seed, "dossiers": sim.total_dossiers, "steps": sim.total_changes,
                "created": created, "changes": sim.total_changes - before, "seconds": round(elapsed, 3),
                "clock": sim.clock.isoformat(), "active": sim.active,
                "agencies": list(sim.agencies), "procedures": len(sim.procedures),
                "status_counts": sim.db.status_counts(), "injected": injected,
                "exported": [str(p) for p in exported], "results": results,
            }
        finally:
            sim.close()
    except (ValueError, HubError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        _print_summary(summary)
    return 0


def _print_summary(summary: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console()
    table = RichTable(title=f"Hồ sơ theo trạng thái — {summary['db']}")
    table.add_column("trang_thai")
    table.add_column("TrangThaiHoSo", justify="right")
    table.add_column("")
    table.add_column("hồ sơ", justify="right")
    for code, n in summary["status_counts"].items():
        national = LOCAL_STATUSES.get(code)
        table.add_row(code, str(national) if national else "?", STATUS_LABELS.get(code, "(không có trong danh mục)"),
                      f"{n:,}")
    console.print(table)
    rate = summary["changes"] / summary["seconds"] if summary["seconds"] else 0.0
    console.print(f"{summary['dossiers']:,} dossiers, {summary['steps']:,} steps; this run: "
                  f"{summary['created']:,} submitted, {summary['changes']:,} changes in {summary['seconds']:.2f} s "
                  f"({rate:,.0f}/s); clock {summary['clock']}; {summary['active']:,} still moving")
    for kind, codes in summary["injected"].items():
        console.print(f"injected {kind}: {', '.join(codes)}")
    for path in summary["exported"]:
        console.print(f"exported {path}")
    results = summary.get("results")
    if results and "files" in results:
        console.print(f"results: {results['files']:,} file(s), {results['bytes'] / 1e6:,.1f} MB "
                      f"(largest {results['largest'] / 1e6:,.1f} MB) under {results['dir']}")


if __name__ == "__main__":
    sys.exit(main())
