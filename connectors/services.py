"""The three national services the hub talks to: where their WSDL/XSD live and what they offer.

Shared by the connectors and the sandbox so both sides read the same contract from ``schemas/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"


#: the transports a national service can be reached with (``connectors.transport.transport_for``)
TRANSPORTS = ("soap", "json")

MiB = 1024 * 1024
#: the reply limit of an operation that names none: an acknowledgement, a status, one record
DEFAULT_REPLY_LIMIT = 1 * MiB


def schemas_dir() -> Path:
    return Path(str(resources.files("lienthong.schemas")))


#: fields of a LayThuTuc record (``ThuTuc``) that are lists, even when only one occurs
THUTUC_LISTS = frozenset({
    "CAPTHUCHIEN", "LINHVUCTHUCHIEN", "COQUANTHUCHIEN", "TRINHTUTHUCHIEN", "CACHTHUCTHUCHIEN",
    "THOIGIAN", "PHILEPHI", "THANHPHANHOSO", "GIAYTO", "DOITUONGTHUCHIEN", "KETQUATHUCHIEN", "CANCUPHAPLY",
})


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # the hub's short name, also the audit "partner"
    title: str  # Vietnamese name, for people
    namespace: str  # payload namespace
    wsdl_file: str
    xsd_file: str
    path: str  # URL path under the sandbox / gateway root
    airflow_conn_id: str
    operations: tuple[str, ...]
    #: the largest reply (decoded bytes) each operation may have; others: DEFAULT_REPLY_LIMIT. A reply
    #: over it is abandoned as it arrives (``LIENTHONG_MAX_REPLY_BYTES`` sets one limit for all)
    reply_limits: Mapping[str, int] = field(default_factory=dict)
    #: the prefix of the payload namespace in the XML the hub writes (``tthc:``, ``dvc:``, ``bc:``)
    prefix: str | None = None
    #: per operation, the answer's fields that are lists even when one item (or none) came: in XML a
    #: repeated element cannot say so itself; JSON says it with its own arrays
    repeated: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def reply_limit(self, operation: str) -> int:
        return self.reply_limits.get(operation, DEFAULT_REPLY_LIMIT)

    def repeated_in(self, operation: str) -> frozenset[str]:
        return self.repeated.get(operation, frozenset())

    @property
    def wsdl_path(self) -> Path:
        return schemas_dir() / self.wsdl_file

    @property
    def xsd_path(self) -> Path:
        return schemas_dir() / self.xsd_file


CSDL_TTHC = ServiceSpec(
    name="csdl_tthc",
    title="CSDL quốc gia về thủ tục hành chính",
    namespace="urn:lienthong:csdl-tthc:1",
    wsdl_file="csdl_tthc.wsdl",
    xsd_file="csdl_tthc.xsd",
    path="/csdl-tthc",
    airflow_conn_id="lienthong_csdl",
    operations=("LayDanhSachTTHC", "LayThuTuc", "LayDanhMucCoQuan", "LayDanhMucLinhVuc"),
    # a page of the procedure list and the agency list are the largest answers the hub reads
    reply_limits={"LayDanhSachTTHC": 16 * MiB, "LayDanhMucCoQuan": 16 * MiB, "LayDanhMucLinhVuc": 4 * MiB,
                  "LayThuTuc": 4 * MiB},
    prefix="tthc",
    repeated={"LayDanhSachTTHC": frozenset({"TTHC"}), "LayThuTuc": THUTUC_LISTS,
              "LayDanhMucCoQuan": frozenset({"CoQuan"}), "LayDanhMucLinhVuc": frozenset({"LinhVuc"})},
)
DVC_PORTAL = ServiceSpec(
    name="dvc_portal",
    title="Cổng Dịch vụ công quốc gia",
    namespace="urn:lienthong:dvc:1",
    wsdl_file="dvc_portal.wsdl",
    xsd_file="dvc_portal.xsd",
    path="/dvc",
    airflow_conn_id="lienthong_dvc",
    operations=("DongBoHoSoMC", "CapNhatTienDoHoSoMC", "TraCuuHoSo",
                "BatDauTaiTepKetQua", "TaiPhanTepKetQua", "KetThucTaiTepKetQua"),
    # one result per dossier of a batch (up to 500)
    reply_limits={"DongBoHoSoMC": 4 * MiB, "CapNhatTienDoHoSoMC": 4 * MiB},
    prefix="dvc",
    repeated={"DongBoHoSoMC": frozenset({"KetQua"}), "CapNhatTienDoHoSoMC": frozenset({"KetQua"})},
)
BAOCAO = ServiceSpec(
    name="baocao",
    title="Hệ thống thông tin báo cáo quốc gia",
    namespace="urn:lienthong:baocao:1",
    wsdl_file="baocao.wsdl",
    xsd_file="baocao.xsd",
    path="/baocao",
    airflow_conn_id="lienthong_baocao",
    operations=("GuiBaoCao", "LayTrangThaiBaoCao"),
    prefix="bc",
)

SERVICES: dict[str, ServiceSpec] = {s.name: s for s in (CSDL_TTHC, DVC_PORTAL, BAOCAO)}


@cache
def service(name: str) -> ServiceSpec:
    try:
        return SERVICES[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None
