"""Locating result files: inside the result folder only, or fetched by URL, bounded and timed out."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lienthong.connectors.sources.result_files import ResultFiles
from lienthong.hub.errors import (
    ConfigurationError,
    ResultFetchFailed,
    ResultFileMissing,
    ResultFileOutsideRoot,
    ResultFileTooLarge,
    ResultFileUnreadable,
)

BODY = b"%PDF-1.7\n" + bytes(range(256)) * 64


def payload(where: str) -> dict:
    return {"MaHoSo": "G10-20261201-0000001", "TenTep": "kq.pdf", "TepKetQua": where}


@pytest.fixture
def files(tmp_path) -> ResultFiles:
    root = tmp_path / "ket-qua"
    (root / "2026").mkdir(parents=True)
    (root / "2026" / "kq.pdf").write_bytes(BODY)
    (root / "a-folder.pdf").mkdir()
    (tmp_path / "secret.p12").write_bytes(b"the hub's key")
    (root / "link.pdf").symlink_to(tmp_path / "secret.p12")
    return ResultFiles(root, spool=tmp_path / "spool", max_bytes=1 << 20, read_timeout=0.5)


def test_a_file_under_the_folder_is_found_with_its_size(files):
    found = files.locate(payload("2026/kq.pdf"), key="e1")
    assert found.path.read_bytes() == BODY and found.size == len(BODY) and not found.spooled


@pytest.mark.parametrize(("where", "error"), [
    ("../secret.p12", ResultFileOutsideRoot),
    ("/etc/passwd", ResultFileOutsideRoot),
    ("link.pdf", ResultFileOutsideRoot),  # a symbolic link that leads out of the folder
    ("2026/missing.pdf", ResultFileMissing),
    ("a-folder.pdf", ResultFileUnreadable),
    ("", ResultFileMissing),
])
def test_a_path_that_leaves_the_folder_or_names_no_readable_file_is_refused_by_name(files, where, error):
    with pytest.raises(error) as caught:
        files.locate(payload(where), key="e1")
    assert caught.value.code.startswith("RESULT_FILE_")


def test_paths_need_a_configured_folder(tmp_path):
    with pytest.raises(ConfigurationError, match="LIENTHONG_RESULTS_ROOT"):
        ResultFiles(None, spool=tmp_path).locate(payload("kq.pdf"), key="e1")


class _Files(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/kq.pdf":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/big.pdf":
            self.send_response(200)
            self.end_headers()  # no length: the bound is checked while reading
            for _ in range(40):
                self.wfile.write(b"x" * 65536)
        elif self.path == "/slow.pdf":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            time.sleep(2)
        elif self.path == "/cut.pdf":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:100])
            self.close_connection = True
        elif self.path == "/busy.pdf":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_url_is_fetched_into_the_spool_and_removed_after(files, server):
    found = files.locate(payload(f"{server}/kq.pdf"), key="e1")
    assert found.spooled and found.path.read_bytes() == BODY and found.size == len(BODY)
    found.discard()
    assert not found.path.exists()


@pytest.mark.parametrize(("name", "error"), [
    ("gone.pdf", ResultFileMissing),
    ("busy.pdf", ResultFetchFailed),  # retried later
    ("slow.pdf", ResultFetchFailed),  # read timeout
    ("cut.pdf", ResultFetchFailed),  # fewer bytes than announced
    ("big.pdf", ResultFileTooLarge),
])
def test_a_url_that_does_not_give_the_file_is_a_specific_outcome_and_leaves_no_spool(files, server, name, error):
    with pytest.raises(error):
        files.locate(payload(f"{server}/{name}"), key="e1")
    assert not list(files.spool.glob("*"))
