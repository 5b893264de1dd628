"""A 200 MB result file uploads with the uploading process's peak RSS under 150 MB (issue 14).

The upload reads the file twice (fingerprint, then stream) one chunk at a time; no copy of the file,
whole or base64-encoded, may sit in memory. Measured as the benchmark measures it: the upload runs
in a child process that does nothing else (``benchmarks/bench_results.py --no-resume --json``), the
sandbox portal in another, and the child reports its own ``ru_maxrss``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_results.py"
LIMIT_MB = 150


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_200_mb_file_uploads_in_under_150_mb_of_memory():
    done = subprocess.run([sys.executable, str(BENCH), "--mb", "200", "--no-resume", "--json"],
                          capture_output=True, text=True, timeout=880)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["uploads"] == 1 and not figures["dead"], figures
    assert figures["peak_rss_mb"] < LIMIT_MB, figures
    print(f"\n200 MB upload: peak RSS {figures['peak_rss_mb']:.1f} MB, {figures['upload_mb_s']:.1f} MB/s")
