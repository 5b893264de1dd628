"""How fast does the hub sign and verify a typical message, and what does XML-DSig cost on top of RSA?

Builds a ``DongBoHoSoMC`` envelope carrying 10 dossiers of ~25 Vietnamese text fields each (the
batch size the outbox sends), then measures with the key loaded once:

* ``Signer.sign`` (enveloped, exc-c14n, RSA-SHA256, X509Data) → signatures per second;
* ``Verifier.verify`` (hardened parse, pinned profile, chain/validity/CRL checks, signxml) → per second;
* raw RSA-2048 PKCS#1 v1.5 / SHA-256 ``sign`` and ``verify`` with ``cryptography`` over the same
  exclusive-canonical bytes – the floor no XML signature can beat – and the ratios to it.

Run: ``python benchmarks/bench_signing.py [--iterations N] [--key-type rsa|ec]``. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchkit import machine_info
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from lienthong.signing.keys import load_identity
from lienthong.signing.pki import init_dev_pki
from lienthong.signing.signer import Signer
from lienthong.signing.verifier import TrustStore, Verifier
from lxml import etree

HUB = ("000.00.00.G10", "Bộ Nông nghiệp và Môi trường")
NATIONAL = ("000.00.00.G22", "Văn phòng Chính phủ")
EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DVC_NS = "urn:lienthong:dvc:1"

PROCEDURES = [
    ("1.005129", "Cấp Giấy chứng nhận cơ sở đủ điều kiện an toàn thực phẩm đối với cơ sở sản xuất, kinh doanh nông, lâm, thủy sản"),
    ("1.003984", "Cấp giấy phép nhập khẩu thuốc bảo vệ thực vật"),
    ("2.001827", "Cấp Giấy chứng nhận kiểm dịch động vật, sản phẩm động vật thủy sản vận chuyển ra khỏi địa bàn cấp tỉnh"),
    ("1.008003", "Công nhận giống cây trồng lâm nghiệp mới"),
    ("1.004363", "Cấp phép khai thác thủy sản trong vùng nước ven bờ"),
]
OWNERS = ["Nguyễn Văn An", "Trần Thị Bích Ngọc", "Lê Hoàng Phúc", "Phạm Thị Thu Hương", "Công ty TNHH Nông sản Việt Đức",
          "Hợp tác xã Thủy sản Cà Mau", "Đặng Quốc Khánh", "Vũ Thị Mỹ Duyên", "Hoàng Minh Tuấn", "Bùi Thị Lan Anh"]


def _dossier(parent: etree._Element, i: int) -> None:
    """One ``HoSo`` with the ~25 fields DongBoHoSoMC carries (see DOMAIN.md)."""
    code, name = PROCEDURES[i % len(PROCEDURES)]
    d = lambda tag: f"{{{DVC_NS}}}{tag}"  # noqa: E731
    hs = etree.SubElement(parent, d("HoSo"))
    fields = [
        ("MaHoSo", f"G09.20-20260609-{92637 + i:07d}"),
        ("MaTTHC", code),
        ("TenTTHC", name),
        ("MaLinhVuc", "G09-NN-ATTP"),
        ("TenLinhVuc", "Quản lý chất lượng nông lâm sản và thủy sản"),
        ("KenhThucHien", str(1 + i % 3)),
        ("ChuHoSo", OWNERS[i % len(OWNERS)]),
        ("SoGiayToChuHoSo", f"0010{i:02d}012345"),
        ("LoaiDoiTuong", "1" if i % 2 else "2"),
        ("MaDoiTuong", f"DT{i:05d}"),
        ("Email", f"hoso{i}@example.vn"),
        ("SoDienThoai", f"09{i:02d}123456"),
        ("TrichYeuHoSo", f"Đề nghị {name.lower()} cho cơ sở tại xã Tân Phú, tỉnh Đồng Nai; hồ sơ gồm đơn đề nghị, "
                         "bản thuyết minh điều kiện cơ sở vật chất và danh sách nhân viên đã được xác nhận kiến thức."),
        ("NgayNopHoSo", "20260609083015"),
        ("NgayTiepNhan", "20260609091500"),
        ("NgayHenTra", "20260623170000"),
        ("TrangThaiHoSo", str(2 + i % 8)),
        ("NgayTra", ""),
        ("ThongTinTra", "Trả kết quả qua Cổng Dịch vụ công quốc gia và dịch vụ bưu chính công ích"),
        ("HinhThuc", "1"),
        ("DonViXuLy", "Cục Chất lượng, Chế biến và Phát triển thị trường"),
        ("GhiChu", "Hồ sơ đầy đủ, hợp lệ; chuyển phòng chuyên môn thẩm định."),
        ("NoiNopHoSo", "2"),
        ("HoSoCoThanhPhanSoHoa", "1"),
        ("TaiKhoanDuocXacThucVoiVNeID", "1"),
        ("DuocThanhToanTrucTuyen", "1"),
    ]
    for tag, value in fields:
        etree.SubElement(hs, d(tag)).text = value


def build_message(dossiers: int = 10, *, legacy: bool = False) -> etree._Element:
    """The message the hub sends (the edXML document), or with ``legacy`` the earlier bare-envelope
    shape, the baseline the richer header is compared with in the same run."""
    payload = etree.Element(f"{{{DVC_NS}}}DongBoHoSoMC", nsmap={"dvc": DVC_NS})
    for i in range(dossiers):
        _dossier(payload, i)
    try:
        from lienthong.hub.envelope import Party, build_envelope, build_legacy_envelope
    except ImportError:  # the envelope module is optional for this benchmark
        return _fallback_envelope(payload)
    build = build_legacy_envelope if legacy else build_envelope
    return build(sender=Party(*HUB), recipients=[Party(*NATIONAL)], subject="DongBoHoSoMC",
                 payload=payload, document_id="0f8c2a9e6b7d4c1aa3e5f7b9d1c3e5a7")


def _fallback_envelope(payload: etree._Element) -> etree._Element:
    E = lambda tag: f"{{{EDXML_NS}}}{tag}"  # noqa: E731
    root = etree.Element(E("edXMLEnvelope"), nsmap={"edXML": EDXML_NS})
    mh = etree.SubElement(etree.SubElement(root, E("edXMLHeader")), E("MessageHeader"))
    for tag, (code, name) in (("From", HUB), ("To", NATIONAL)):
        org = etree.SubElement(mh, E(tag))
        etree.SubElement(org, E("OrganId")).text = code
        etree.SubElement(org, E("OrganName")).text = name
    etree.SubElement(mh, E("DocumentId")).text = "0f8c2a9e6b7d4c1aa3e5f7b9d1c3e5a7"
    etree.SubElement(etree.SubElement(mh, E("PromulgationInfo")), E("PromulgationDate")).text = "2026/06/09"
    etree.SubElement(mh, E("Subject")).text = "DongBoHoSoMC"
    trace = etree.SubElement(etree.SubElement(root[0], E("TraceHeaderList")), E("TraceHeader"))
    etree.SubElement(trace, E("OrganId")).text = HUB[0]
    etree.SubElement(trace, E("Timestamp")).text = "2026/06/09 10:15:00"
    etree.SubElement(etree.SubElement(root, E("edXMLBody")), E("Payload")).append(payload)
    return root


def timed(fn, iterations: int, warmup: int) -> tuple[float, float]:
    """(operations per second, median milliseconds per operation)."""
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return iterations / total, statistics.median(samples) * 1000


def paired(fn_a, fn_b, iterations: int, warmup: int, block: int = 25) -> tuple[tuple[float, float], tuple[float, float]]:
    """``timed`` for two variants measured in alternating blocks, so that a shared machine's drift
    (another process, frequency scaling) lands on both alike: the ratio is what to read."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    samples: tuple[list[float], list[float]] = ([], [])
    totals = [0.0, 0.0]
    done = 0
    while done < iterations:
        n = min(block, iterations - done)
        for index, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                samples[index].append(time.perf_counter() - t0)
            totals[index] += time.perf_counter() - start
        done += n
    return tuple((iterations / totals[i], statistics.median(samples[i]) * 1000) for i in (0, 1))  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", "-n", type=int, default=300, help="operations per measurement (default 300)")
    parser.add_argument("--dossiers", type=int, default=10, help="dossiers in the message (default 10)")
    parser.add_argument("--key-type", choices=("rsa", "ec"), default="rsa",
                        help="rsa = RSA-2048/rsa-sha256 (default), ec = P-256/ecdsa-sha256")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    warmup = max(3, args.iterations // 20)

    print("== machine (this benchmark is single-threaded)")
    for k, v in machine_info().items():
        print(f"  {k:22} {v}")

    with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp:
        password = os.urandom(24).hex()
        files = init_dev_pki(Path(tmp) / "pki", HUB[0], NATIONAL[0], password, key_type=args.key_type)
        t0 = time.perf_counter()
        identity = load_identity(files.hub_p12, password)
        first_load_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        load_identity(files.hub_p12, password)
        cached_load_ms = (time.perf_counter() - t0) * 1000

        algorithm = identity.default_algorithm
        signer = Signer(identity, algorithm)
        verifier = Verifier(TrustStore.from_paths([files.ca_cert], [files.crl]))

        root = build_message(args.dossiers)
        signed = signer.sign(root)
        doc = verifier.verify(signed)  # sanity: what we time is a successful verification
        assert doc.signer_agency == HUB[0]
        canonical = etree.tostring(root, method="c14n", exclusive=True)

        key = identity.private_key
        public = identity.certificate.public_key()
        if args.key_type == "rsa":
            raw_sign = lambda: key.sign(canonical, padding.PKCS1v15(), hashes.SHA256())  # noqa: E731
            raw_sig = raw_sign()
            raw_verify = lambda: public.verify(raw_sig, canonical, padding.PKCS1v15(), hashes.SHA256())  # noqa: E731
            raw_label = "raw RSA-2048 PKCS#1 v1.5 SHA-256"
        else:
            raw_sign = lambda: key.sign(canonical, ec.ECDSA(hashes.SHA256()))  # noqa: E731
            raw_sig = raw_sign()
            raw_verify = lambda: public.verify(raw_sig, canonical, ec.ECDSA(hashes.SHA256()))  # noqa: E731
            raw_label = "raw ECDSA P-256 SHA-256"

        print("== message")
        print(f"  {args.dossiers} dossiers x {len(root.find('.//{%s}HoSo' % DVC_NS))} fields; unsigned "
              f"{len(etree.tostring(root, encoding='UTF-8')):,} B, exc-c14n {len(canonical):,} B, signed {len(signed):,} B")
        print(f"  algorithm {algorithm}; key load {first_load_ms:.1f} ms first, {cached_load_ms:.3f} ms cached")

        legacy_root = build_message(args.dossiers, legacy=True)
        legacy_signed = signer.sign(legacy_root)
        assert verifier.verify(legacy_signed).signer_agency == HUB[0]
        results = {}
        for name, new, old in (
            ("build", lambda: build_message(args.dossiers), lambda: build_message(args.dossiers, legacy=True)),
            ("xmldsig sign", lambda: signer.sign(root), lambda: signer.sign(legacy_root)),
            ("xmldsig verify", lambda: verifier.verify(signed), lambda: verifier.verify(legacy_signed)),
        ):
            label = "build (edXML document)" if name == "build" else name
            results[label], results[f"{name} (earlier shape, baseline)"] = paired(new, old, args.iterations, warmup)
        results |= {
            f"{raw_label} sign": timed(raw_sign, args.iterations, warmup),
            f"{raw_label} verify": timed(raw_verify, args.iterations, warmup),
        }

    print(f"== results ({args.iterations} iterations each, {warmup} warm-up)")
    width = max(map(len, results))
    for name, (rate, median_ms) in results.items():
        print(f"  {name:{width}}  {rate:10.1f} /s   median {median_ms:8.3f} ms")
    sign_rate = results["xmldsig sign"][0]
    verify_rate = results["xmldsig verify"][0]
    raw_sign_rate = results[f"{raw_label} sign"][0]
    raw_verify_rate = results[f"{raw_label} verify"][0]
    print("== ratios")
    print(f"  xmldsig sign   is {raw_sign_rate / sign_rate:5.2f}x slower than raw signing of the same bytes")
    print(f"  xmldsig verify is {raw_verify_rate / verify_rate:5.2f}x slower than raw verification")
    print(f"  verify/sign throughput {verify_rate / sign_rate:5.2f}")
    new = 1000 / results["build (edXML document)"][0] + 1000 / sign_rate + 1000 / verify_rate
    old = sum(1000 / results[name][0] for name in ("build (earlier shape, baseline)",
                                                   "xmldsig sign (earlier shape, baseline)",
                                                   "xmldsig verify (earlier shape, baseline)"))
    print("  (each pair measured in alternating blocks of 25 in this run: compare within the pair)")
    print(f"  build + sign + verify: edXML document {new:.3f} ms, earlier shape {old:.3f} ms "
          f"({new / old:.2f}x, {len(signed) - len(legacy_signed):+,} B per message)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
