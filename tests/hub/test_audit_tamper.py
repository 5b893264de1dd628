"""Tampered ledgers and archives (tests/fixtures/audit_tamper/): each is detected with a specific message."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import audit_ledger_helpers
import pytest
from lienthong.hub.audit.archive import ArchiveInvalid, verify_archive
from lienthong.hub.audit.seal import verify_ledger

_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "audit_tamper" / "recipes.py"
_SPEC = importlib.util.spec_from_file_location("audit_tamper_recipes", _PATH)
recipes = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = recipes  # dataclasses look their module up while the class is built
_SPEC.loader.exec_module(recipes)


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_tampering_is_detected_with_a_specific_message(name, conn_home, tmp_path):
    case = recipes.RECIPES[name](audit_ledger_helpers, conn_home, tmp_path)
    led = case.led
    if case.kind == "ledger":
        report = verify_ledger(led.engine, led.trust, audit_ledger_helpers.HUB)
        assert not report.ok
        assert report.where == case.where, report.problem
        assert case.message in report.problem
    else:
        with pytest.raises(ArchiveInvalid) as failure:
            verify_archive(case.archive, led.ca, previous=case.previous)
        assert case.message in str(failure.value)


def test_the_untampered_originals_verify(conn_home, tmp_path):
    """The recipes' genuine artefacts pass, so each failure above is due to its tampering alone."""
    case = recipes.archive_payload_edited(audit_ledger_helpers, conn_home, tmp_path)
    assert verify_ledger(case.led.engine, case.led.trust, audit_ledger_helpers.HUB).ok
    assert verify_archive(tmp_path / "archive_payload_edited.genuine.zip", case.led.ca).entries == 12
    linked = recipes.linking_edited(audit_ledger_helpers, conn_home, tmp_path)
    assert verify_archive(tmp_path / "linking_edited.2.zip", linked.led.ca, previous=linked.previous).previous_checked


def test_every_recipe_is_described_in_the_readme():
    readme = (_PATH.parent / "README.md").read_text()
    missing = [name for name in recipes.RECIPES if f"`{name}`" not in readme]
    assert not missing, f"README.md does not describe {missing}"
