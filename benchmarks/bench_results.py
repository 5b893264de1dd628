"""Result upload: throughput beside reading + hashing the same bytes, peak memory, resume after a kill.

One result file of ``--mb`` MB (pseudo-random bytes, so nothing compresses) goes through the hub's
whole upload path, as the results push runs it: an outbox event of kind ``result``, claimed by
``deliver_once(kinds=RESULT_KINDS)``, fingerprinted (read + SHA-256), announced with
``BatDauTaiTepKetQua``, streamed in signed 512 KiB chunks (``TaiPhanTepKetQua``, each validated,
signed, audited with its bytes, its signed reply verified) while hashed again, ended with
``KetThucTaiTepKetQua`` and recorded. The sandbox portal runs in its own process and writes what it
receives to disk (fsync per chunk), as a portal would.

Figures, all from this one run:

* **read + hash**: SHA-256 over the same file read from disk in 1 MiB blocks: the floor the
  upload cannot go below (it reads the file twice: once to fingerprint, once to send);
* **upload**: MB/s of the whole path, and the ratio upload / read+hash;
* **peak RSS** of the uploading process (``ru_maxrss`` of a child process that does nothing else);
* **resume**: a second upload is SIGKILLed once the portal confirmed half of the file, then
  started again: bytes sent twice, and the resumed run's time beside the time the uninterrupted
  upload took for the same remaining bytes.

Usage: ``python benchmarks/bench_results.py [--mb 200] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import SandboxProcess, dev_home, load_average, print_machine

MB = 1024 * 1024
#: the uploading worker's lease: renewed while it streams; a killed one's is taken over after it
LEASE = 10.0


def write_file(path: Path, size: int, seed: int) -> str:
    """The sandbox one-stop system's kind of result file (a PDF header, then pseudo-random bytes)."""
    import random

    from lienthong.sandbox.onestop_results import write_result_file

    return write_result_file(path, size, random.Random(seed))


def read_and_hash(path: Path) -> float:
    """Seconds to read ``path`` and hash it, as the upload's fingerprint does: the baseline."""
    from lienthong.connectors.dvc_portal import file_fingerprint

    began = time.perf_counter()
    with open(path, "rb") as fh:
        file_fingerprint(fh)
    return time.perf_counter() - began


def dossier(ma: str) -> dict:
    return {"MaHoSo": ma, "MaTTHC": "1.001012", "TenTTHC": "Cấp Giấy chứng nhận kiểm dịch động vật nhập khẩu",
            "KenhThucHien": 2, "ChuHoSo": "Nguyễn Văn An", "LoaiDoiTuong": 1,
            "TrichYeuHoSo": "Kiểm dịch 50 con bò giống nhập khẩu", "NgayNopHoSo": "20261201081530",
            "TrangThaiHoSo": 9}


# --------------------------------------------------------------------------------------------
# the uploading child: one result event, one results-push worker, nothing else in the process
# --------------------------------------------------------------------------------------------
def child(db_url: str, root: str, ma: str, name: str) -> int:
    import resource

    from lienthong.hub.delivery.engine import RESULT_KINDS, deliver_once
    from lienthong.hub.flows.results_push import open_uploader
    from lienthong.hub.flows.status_push import open_portal
    from lienthong.hub.settings import Settings
    from lienthong.hub.store import open_store

    settings = Settings.from_env()
    from dataclasses import replace

    settings = replace(settings, results_root=Path(root))
    store = open_store(settings)
    portal = open_portal(settings, store)
    uploader = open_uploader(settings, store, portal)
    began = time.perf_counter()
    summary = deliver_once(store.engine, portal, worker_id=f"bench:{os.getpid()}", kinds=RESULT_KINDS,
                           uploader=uploader, per_partition=1, lease=LEASE)
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "uploads": summary.uploads, "sent": summary.sent_bytes,
                      "dead": summary.dead_reasons, "retried": summary.retried,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    return 0


def enqueue_result(db_url: str, ma: str, name: str, size: int, sha: str) -> int:
    from lienthong.hub.delivery.outbox import OutboxChange, enqueue
    from lienthong.hub.store import make_engine, write_transaction

    engine = make_engine(db_url)
    with write_transaction(engine) as conn:
        result = enqueue(conn, [OutboxChange("result", f"ketqua:{ma}", {
            "MaHoSo": ma, "TenGiayTo": "Giấy chứng nhận (bản quét)", "TenTep": name, "KieuTep": "application/pdf",
            "TepKetQua": name, "KichThuoc": size, "SHA256": sha})])
    engine.dispose()
    return result.ids[0]


def confirmed(db_url: str, ma: str) -> int:
    from lienthong.hub.store import make_engine
    from lienthong.hub.store.models import ResultUpload
    from sqlalchemy import func, select

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(ResultUpload.confirmed), 0))
                                    .where(ResultUpload.partition_key == ma)).scalar_one())
    finally:
        engine.dispose()


def run_child(env: dict, db_url: str, root: Path, ma: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", db_url, str(root), ma, name], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"upload child failed ({proc.returncode}): {err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the result file in MB (default 200)")
    parser.add_argument("--no-resume", action="store_true", help="skip the kill-and-resume run")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--child", nargs=4, metavar=("DB_URL", "ROOT", "MA_HO_SO", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    print_machine((lambda *a, **k: None) if args.json else print)
    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp_name:
        tmp = Path(tmp_name)
        home, password = dev_home(tmp)
        root = tmp / "ket-qua"
        root.mkdir()
        size = args.mb * MB
        sha = write_file(root / "scan-1.pdf", size, 1)
        hash_seconds = read_and_hash(root / "scan-1.pdf")
        db_url = f"sqlite:///{tmp / 'hub.db'}"
        sandbox = SandboxProcess(home, password, 50)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
        env.update(LIENTHONG_HOME=str(home), LIENTHONG_KEY_PASSWORD=password, LIENTHONG_DB_URL=db_url,
                   LIENTHONG_DVC_URL=sandbox.base_url + "/dvc")
        os.environ.update(env)
        try:
            from lienthong.hub.flows.status_push import open_portal
            from lienthong.hub.settings import Settings
            from lienthong.hub.store import open_store

            store = open_store(Settings.from_env())
            portal = open_portal(Settings.from_env(), store)
            mas = ["G10-20261201-0000001", "G10-20261201-0000002"]
            portal.sync_dossiers([dossier(ma) for ma in mas], is_updating=False)
            enqueue_result(db_url, mas[0], "scan-1.pdf", size, sha)
            sandbox_cpu = sandbox.cpu_seconds()
            upload = finish(run_child(env, db_url, root, mas[0], "scan-1.pdf"))
            sandbox_cpu = sandbox.cpu_seconds() - sandbox_cpu
            figures = {
                "size_mb": args.mb, "read_hash_mb_s": args.mb / hash_seconds,
                "upload_mb_s": args.mb / upload["seconds"], "ratio": hash_seconds / upload["seconds"],
                "upload_seconds": upload["seconds"], "peak_rss_mb": upload["rss_mb"],
                "sandbox_cpu_s": sandbox_cpu, "uploads": upload["uploads"], "dead": upload["dead"],
                "load": load_average(),
            }
            if not args.no_resume:
                sha2 = write_file(root / "scan-2.pdf", size, 2)
                enqueue_result(db_url, mas[1], "scan-2.pdf", size, sha2)
                first = run_child(env, db_url, root, mas[1], "scan-2.pdf")
                while confirmed(db_url, mas[1]) < size // 2:
                    if first.poll() is not None:
                        raise RuntimeError("the upload finished before it could be killed half-way")
                    time.sleep(0.05)
                first.send_signal(signal.SIGKILL)
                first.wait()
                held = confirmed(db_url, mas[1])
                time.sleep(LEASE + 1)  # the killed worker's lease must run out before the event is taken over
                resumed = finish(run_child(env, db_url, root, mas[1], "scan-2.pdf"))
                remaining = size - held
                expected = upload["seconds"] * remaining / size
                figures.update(resume_killed_at_mb=held / MB, resume_sent_mb=resumed["sent"] / MB,
                               resume_sent_twice_mb=max(0, held + resumed["sent"] - size) / MB,
                               resume_seconds=resumed["seconds"], resume_expected_seconds=expected,
                               resume_overhead_s=resumed["seconds"] - expected, resume_uploads=resumed["uploads"])
        finally:
            sandbox.stop()
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"== result upload of one {args.mb} MB file (sandbox portal in its own process, SQLite hub store, audited)")
    print(f"  read + SHA-256 from disk   {figures['read_hash_mb_s']:8.1f} MB/s   (baseline)")
    print(f"  upload, end to end         {figures['upload_mb_s']:8.1f} MB/s   = {figures['ratio']:.3f} × the baseline "
          f"({figures['upload_seconds']:.1f} s; sandbox CPU {figures['sandbox_cpu_s']:.1f} s)")
    print(f"  peak RSS of the uploader   {figures['peak_rss_mb']:8.1f} MB")
    if "resume_seconds" in figures:
        print(f"  kill -9 at {figures['resume_killed_at_mb']:.0f} MB confirmed, restarted: sent "
              f"{figures['resume_sent_mb']:.1f} MB more ({figures['resume_sent_twice_mb']:.1f} MB of it twice); "
              f"{figures['resume_seconds']:.1f} s against {figures['resume_expected_seconds']:.1f} s for the same "
              f"bytes uninterrupted (overhead {figures['resume_overhead_s']:+.1f} s: re-reading and hashing what the "
              "portal holds, a new claim)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
