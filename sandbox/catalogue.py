"""A deterministic, synthetic national procedure catalogue for the CSDL TTHC emulator.

Why synthetic but seeded from real data: the hub's procedure sync must be exercised with records
that look like the national ones (Vietnamese names, several agencies and levels, per-channel times
and fees, components, legal bases) and in realistic volumes (tens of thousands), yet tests need
the same catalogue on every run and on every machine. So:

* names, lead agencies and online levels start from ~60 real procedures of the agriculture
  ministry (``data/procedures.tsv``, extracted once from the ministry's 2013 online-service plan),
  and are varied ("cấp lại", "gia hạn", "điều chỉnh"…, provincial copies) to reach any size;
* every record is a pure function of ``(seed, index, revision)``: nothing is generated until asked
  for, a 20,000-procedure catalogue costs a few kilobytes, and listing/filtering only computes a
  cheap hash per index;
* :meth:`Catalogue.touch` bumps a procedure's revision (new NGAYCAPNHAT, changed fees/times) so
  incremental pulls ("changed since") can be tested against a catalogue that moves.

Codes: MATTHC is ``1.00xxxx`` for ministry-level and ``2.00xxxx`` for provincial procedures
(suffix = 1000 + index, unique); agency codes follow Decision 20/2020/QĐ-TTg shapes
(``000.00.NN.G10`` ministry units, ``000.00.00.Hnn`` provinces). Province H-codes here are
sequential and synthetic: do not read them as the official ones.
"""

from __future__ import annotations

import csv
import random
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

MINISTRY_CODE = "000.00.00.G10"
MINISTRY_NAME = "Bộ Nông nghiệp và Môi trường"

#: the moment the synthetic catalogue "was published"; update dates fall in the two years before
CATALOGUE_EPOCH = datetime(2026, 1, 1, tzinfo=VN_TZ)
_SPREAD_DAYS = 730
_SUFFIX_BASE = 1000
MAX_PROCEDURES = 999_999 - _SUFFIX_BASE


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
    revision: int


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


def _lower_first(text: str) -> str:
    # "Giấy chứng nhận" → "giấy chứng nhận", but keep acronyms such as "CITES" or "ODA"
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
            return prefixes[choice % len(prefixes)] + _lower_first(obj)
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


class Catalogue:
    """``size`` procedures generated on demand from ``seed``; safe to share between threads."""

    def __init__(self, size: int = 300, seed: int = 1) -> None:
        if not 1 <= size <= MAX_PROCEDURES:
            raise ValueError(f"procedures must be between 1 and {MAX_PROCEDURES}, not {size}")
        self.size = size
        self.seed = seed
        self._seeds = seed_procedures()
        self._lock = threading.Lock()
        self._revisions: dict[int, tuple[int, datetime]] = {}
        self._version = 0  # bumped by touch(): invalidates cached filtered listings
        self._filtered: OrderedDict[tuple, list[int]] = OrderedDict()

    # -- summaries -------------------------------------------------------------------------
    def _variant(self, index: int) -> tuple[int, str]:
        """(variant number, level) of index: variant 0 is the seed itself at ministry level."""
        variant = index // len(self._seeds)
        if variant == 0:
            return 0, "BO"
        kind = (_mix(self.seed, index) >> 8) % 4
        return variant, ("BO" if kind < 2 else "TINH")

    def summary(self, index: int) -> Summary:
        if not 0 <= index < self.size:
            raise IndexError(index)
        h = _mix(self.seed, index)
        _variant, level = self._variant(index)
        code = f"{1 if level == 'BO' else 2}.{_SUFFIX_BASE + index:06d}"
        changed = self._revisions.get(index)
        if changed is not None:
            revision, updated = changed
        else:
            revision = 0
            updated = CATALOGUE_EPOCH - timedelta(days=h % _SPREAD_DAYS, seconds=(h >> 20) % 86400)
        status = 2 if (h >> 40) % 100 < 4 else 1  # ~4 % abolished (bãi bỏ)
        return Summary(index, code, updated, status, level, revision)

    def index_of(self, code: str) -> int | None:
        parsed = parse_code(code)
        if parsed is None:
            return None
        digit, index = parsed
        if not 0 <= index < self.size:
            return None
        return index if self.summary(index).code == code else None

    def codes(self) -> list[str]:
        return [self.summary(i).code for i in range(self.size)]

    def page(self, page: int, size: int, *, since: datetime | None = None,
             status: int | None = None) -> tuple[int, list[Summary]]:
        """(total matching, the summaries of 1-based ``page``), in catalogue order."""
        if page < 1 or size < 1:
            raise ValueError("page and size start at 1")
        start = (page - 1) * size
        if since is None and status is None:
            stop = min(start + size, self.size)
            return self.size, [self.summary(i) for i in range(start, stop)]
        matching = self._matching(since, status)
        return len(matching), [self.summary(i) for i in matching[start:start + size]]

    def _matching(self, since: datetime | None, status: int | None) -> list[int]:
        key = (since, status, self._version)
        with self._lock:
            hit = self._filtered.get(key)
            if hit is not None:
                self._filtered.move_to_end(key)
                return hit
        found = []
        for i in range(self.size):
            s = self.summary(i)
            if since is not None and s.updated < since:
                continue
            if status is not None and s.status != status:
                continue
            found.append(i)
        with self._lock:
            self._filtered[key] = found
            while len(self._filtered) > 16:
                self._filtered.popitem(last=False)
        return found

    def touch(self, code: str, when: datetime) -> Summary:
        """Record a change of ``code`` at ``when``: new revision, new NGAYCAPNHAT, new details."""
        index = self.index_of(code)
        if index is None:
            raise KeyError(code)
        if when.tzinfo is None:
            raise ValueError("when must be timezone-aware")
        with self._lock:
            revision = self._revisions.get(index, (0, when))[0] + 1
            self._revisions[index] = (revision, when)
            self._version += 1
            self._filtered.clear()
        return self.summary(index)

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
        """The full LayThuTuc record (ordered like ``tthc:ThuTuc``), or None if unknown."""
        index = self.index_of(code)
        if index is None:
            return None
        s = self.summary(index)
        seed_proc = self._seeds[index % len(self._seeds)]
        variant, level = self._variant(index)
        rng = random.Random(f"lienthong-sandbox:{self.seed}:{index}")
        rev = random.Random(f"lienthong-sandbox:{self.seed}:{index}:r{s.revision}")

        name = seed_proc.name
        if variant:
            alt = variant_name(seed_proc.name, rng.randrange(12))
            if alt is not None and rng.random() < 0.7:
                name = alt
        publisher, handler, levels = self._agency_for(index, rng, seed_proc, level)
        field_code = MINISTRY_UNITS.get(seed_proc.lead_agency, ("", "G10-TS"))[1]
        field = _FIELD_BY_CODE[field_code]

        if seed_proc.level >= 4:
            mucdo = "MUC_DO_4" if rng.random() < 0.15 else "TOAN_TRINH"
        else:
            mucdo = "MUC_DO_3" if rng.random() < 0.15 else "MOT_PHAN"
        if variant and rng.random() < 0.1:
            mucdo = "THONG_TIN"
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
        components = [{"GIAYTO": [
            {
                "MAGIAYTO": f"GT-{code}-{k + 1}",
                "TENGIAYTO": doc,
                "TENMAUDON": form,
                "URL": f"https://tthc.sandbox.lienthong.invalid/mau-don/{code}/{k + 1}.docx" if form else None,
            }
            for k, (doc, form) in enumerate(documents)
        ]}]

        lower_name = _lower_first(name)
        if "giấy phép" in lower_name:
            result_name = "Giấy phép"
        elif "giấy chứng nhận" in lower_name or "chứng chỉ" in lower_name:
            result_name = "Giấy chứng nhận"
        elif lower_name.startswith(("thẩm định", "xây dựng và phê duyệt", "nghiệm thu")):
            result_name = "Quyết định phê duyệt"
        else:
            result_name = "Văn bản chấp thuận"
        legal = list(_LEGAL.get(field.code, ())) + [rng.choice(_LEGAL_COMMON)]

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
