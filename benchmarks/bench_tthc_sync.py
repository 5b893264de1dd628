"""Catalogue sync against the sandbox: full, incremental after one revision, and a no-change re-sync.

The sandbox runs as a separate process (as the national service would), with a catalogue of
``--procedures`` (default 10,000). The hub syncs into a fresh SQLite store (or ``--db-url``):

1. full sync of the whole catalogue: wall time, records/s, peak memory of this process;
2. the sandbox moves forward one revision (~1% changed, plus additions and unpublications);
   incremental sync: wall time and records fetched;
3. an incremental re-sync with no upstream change.

Incremental cost should follow what changed, not the catalogue size: the two are printed side by
side. Targets: full 10,000 in < 60 s with peak memory < 400 MB.

Run: ``python benchmarks/bench_tthc_sync.py [--procedures N] [--concurrency C]``. Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import tempfile
import time
from pathlib import Path

from benchkit import SandboxProcess, machine_info


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procedures", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=4, help="LayThuTuc calls in flight per process")
    ap.add_argument("--processes", type=int, default=2, help="fetching processes (0 = threads in this process)")
    ap.add_argument("--db-url")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-tthc-"))
    os.environ["LIENTHONG_HOME"] = str(home)
    password = os.environ["LIENTHONG_KEY_PASSWORD"] = "benchmark"
    if args.db_url:
        os.environ["LIENTHONG_DB_URL"] = args.db_url
    from functools import partial

    from lienthong.connectors.csdl_tthc import CsdlTthcClient
    from lienthong.connectors.soap import SoapConnector
    from lienthong.hub.audit import ledger
    from lienthong.hub.flows.catalogue import csdl_client, sync_catalogue
    from lienthong.hub.settings import Settings
    from lienthong.hub.store import open_store
    from lienthong.signing.cli import cmd_keys_init

    cmd_keys_init(Settings.from_env())
    port = _free_port()
    os.environ["LIENTHONG_CSDL_URL"] = f"http://127.0.0.1:{port}/csdl-tthc"
    settings = Settings.from_env()
    store = open_store(settings)
    client = CsdlTthcClient(SoapConnector(settings, "csdl_tthc", audit=ledger(store)))
    options = {"concurrency": args.concurrency, "processes": args.processes,
               "client_factory": partial(csdl_client, settings)}
    print("== machine")
    for k, v in machine_info().items():
        print(f"  {k:22} {v}")
    print(f"  store {store.engine.url.render_as_string(hide_password=True).split('@')[-1]}; "
          f"sandbox in its own process; {max(1, args.processes)} fetching process(es) × "
          f"{args.concurrency} concurrent LayThuTuc calls")

    sandbox = SandboxProcess(home, password, args.procedures, port=port, revision=0)
    try:
        cpu_before = _cpu_seconds()
        sandbox_before = sandbox.cpu_seconds()
        began = time.perf_counter()
        full = sync_catalogue(store.engine, client, full=True, **options)
        full_s = time.perf_counter() - began
        hub_cpu = _cpu_seconds() - cpu_before  # this process + its joined worker processes
        sandbox_cpu = sandbox.cpu_seconds() - sandbox_before
        # peak resident memory of this process and of its worker processes (each, not summed)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        sandbox.stop()
    sandbox = SandboxProcess(home, password, args.procedures, port=port, revision=1)
    try:
        began = time.perf_counter()
        inc = sync_catalogue(store.engine, client, **options)
        inc_s = time.perf_counter() - began
        began = time.perf_counter()
        again = sync_catalogue(store.engine, client, **options)
        again_s = time.perf_counter() - began
    finally:
        sandbox.stop()

    print(f"== full sync of {args.procedures:,} procedures")
    print(f"  {full_s:8.1f} s   {full.listed / full_s:8.1f} records/s   peak memory {peak_mb:4.0f} MB (largest child {workers_mb:.0f} MB)   "
          f"new {full.new:,}, quarantined {full.quarantined}, retries {full.retries}")
    cores = os.cpu_count() or 1
    per_record = hub_cpu / full.listed * 1000
    print(f"  CPU: hub {hub_cpu:.0f} s ({per_record:.1f} ms per record), sandbox {sandbox_cpu:.0f} s "
          f"({sandbox_cpu / full.listed * 1000:.1f} ms per record): the sandbox takes "
          f"{sandbox_cpu / (hub_cpu + sandbox_cpu):.0%} of the machine")
    print(f"  hub alone on {cores} cores (national service elsewhere, as in production): "
          f"~{cores * 1000 / per_record:.0f} records/s, 10,000 in ~{10_000 * per_record / 1000 / cores:.0f} s")
    print("== incremental after one revision (side by side with the full sync)")
    print(f"  {inc_s:8.1f} s   fetched {inc.listed:,} of {full.listed + inc.new:,} "
          f"({inc.listed / max(1, full.listed):.1%})   changed {inc.changed}, new {inc.new}, "
          f"unpublished {inc.unpublished}   → {inc_s / full_s:.1%} of the full sync's time")
    print("== incremental with no upstream change")
    print(f"  {again_s:8.1f} s   fetched {again.listed:,} (safety overlap)   new/changed {again.new + again.changed}")
    target = "met" if full_s * 10_000 / args.procedures < 60 and peak_mb < 400 else "NOT met"
    print(f"== target (10,000 in < 60 s, < 400 MB): {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
