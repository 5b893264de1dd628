"""What the benchmarks share: the machine they ran on, the sandbox as a separate process, the
development agencies and a fresh hub store.

A plain module beside the benchmark scripts (``python benchmarks/bench_x.py`` puts this folder on
``sys.path``), so every benchmark prints the same machine facts and starts the national sandbox
the same way: as its own process, as the national service would be.
"""

from __future__ import annotations

import contextlib
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path

from lxml import etree

SANDBOX_START_TIMEOUT_S = 120.0
#: the agencies of the development PKI the benchmarks make for each run
HUB_AGENCY = "000.00.00.G10"
NATIONAL_AGENCY = "000.00.00.G22"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    import ssl

    versions = []
    for dist in ("lxml", "signxml", "cryptography", "SQLAlchemy", "requests"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} ?")
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical, {usable} usable",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": ", ".join(versions) + f"; libxml2 {'.'.join(map(str, etree.LIBXML_VERSION))}; {ssl.OPENSSL_VERSION}",
        "load average at start": load_average(),
    }


def print_machine(say=print) -> None:
    """The "== machine" block every benchmark starts with."""
    say("== machine")
    for key, value in machine_info().items():
        say(f"  {key:10} {value}")


def dev_home(tmp: Path) -> tuple[Path, str]:
    """A hub home under ``tmp`` with a development PKI made for this run; returns it and the key password."""
    from lienthong.signing.pki import init_dev_pki

    home = tmp / "home"
    password = os.urandom(16).hex()
    init_dev_pki(home / "pki", HUB_AGENCY, NATIONAL_AGENCY, password)
    return home, password


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of another process (Linux ``/proc/<pid>/stat``), 0 if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


class SandboxProcess:
    """``python -m lienthong.sandbox --port 0 --store :memory:`` with this run's PKI.

    ``port`` pins the port (a sandbox restarted at another catalogue ``revision`` keeps its URL).
    """

    def __init__(self, home: Path, password: str, procedures: int, *, port: int = 0, revision: int = 0):
        env = dict(os.environ, LIENTHONG_HOME=str(home), LIENTHONG_KEY_PASSWORD=password)
        cmd = [sys.executable, "-m", "lienthong.sandbox", "--port", str(port), "--store", ":memory:",
               "--procedures", str(procedures), "--revision", str(revision), "--pki-dir", str(home / "pki")]
        self.log = home / "sandbox.log"  # a file, not a pipe nobody reads: a chatty sandbox must not block
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=SANDBOX_START_TIMEOUT_S).strip()
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"the sandbox did not print its URL within {SANDBOX_START_TIMEOUT_S:.0f} s") from None
        if not first.startswith("http"):
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {first!r} {self.log.read_text(errors='replace').strip()}")
        self.base_url = first

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fresh_store(db_url: str):
    """A migrated hub store at ``db_url``, empty: a PostgreSQL URL names a scratch database whose
    hub tables are dropped and recreated (a SQLite file is expected to be new)."""
    from lienthong.hub.store import make_engine, upgrade
    from lienthong.hub.store.models import Base
    from sqlalchemy import text

    engine = make_engine(db_url)
    if engine.dialect.name == "postgresql":
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine)
    return engine
