"""Seals: signed checkpoints of the chain head, and `audit verify` over chain + seals."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from audit_ledger_helpers import HUB, NATIONAL, clock, exchange, foreign_signer, ledger, rehash_from, resign
from lienthong.hub.audit.seal import create_seal, verify_ledger
from lienthong.hub.errors import AuditChainBroken
from lienthong.hub.store.models import AuditEntry, AuditSeal
from sqlalchemy import delete, select, update

SEALS = AuditSeal.__table__
LOG = AuditEntry.__table__


@pytest.fixture
def led(conn_home, tmp_path):
    return ledger(conn_home, f"sqlite:///{tmp_path / 'hub.db'}")


def _verify(led):
    return verify_ledger(led.engine, led.trust, HUB)


def test_seals_chain_and_verify_on_both_backends(conn_home, db_url):
    led = ledger(conn_home, db_url)
    now = clock(led)
    exchange(led, 5)
    first = create_seal(led.engine, led.signer, now=now)
    exchange(led, 3, start=led.t0 + timedelta(hours=1))
    second = create_seal(led.engine, led.signer, now=now)
    assert (first.number, first.head_seq, second.number, second.head_seq) == (1, 10, 2, 16)
    with led.engine.connect() as conn:
        rows = conn.execute(select(SEALS.c.id, SEALS.c.prev_seal_hash, SEALS.c.seal_hash).order_by(SEALS.c.id)).all()
    assert rows[1].prev_seal_hash == rows[0].seal_hash  # seals chain to each other
    exchange(led, 1, start=led.t0 + timedelta(hours=2))
    report = _verify(led)
    assert report.ok, report.problem
    assert (report.seals, report.last_sealed_seq, report.unsealed, report.chain.checked) == (2, 16, 2, 18)


def test_seal_is_skipped_when_nothing_new_unless_forced(led):
    now = clock(led)
    exchange(led, 2)
    assert create_seal(led.engine, led.signer, now=now).created
    again = create_seal(led.engine, led.signer, now=now)
    assert not again.created and again.reason == "nothing new since seal 1 (entry 4)"
    assert create_seal(led.engine, led.signer, now=now, force=True).number == 2
    assert _verify(led).seals == 2


def test_an_empty_ledger_can_be_sealed_and_verifies(led):
    result = create_seal(led.engine, led.signer, now=clock(led))
    assert result.created and result.head_seq == 0
    report = _verify(led)
    assert report.ok and report.unsealed == 0


def test_a_consistent_rewrite_of_the_chain_is_caught_by_the_seal(led):
    now = clock(led)
    exchange(led, 5)
    create_seal(led.engine, led.signer, now=now)  # seals entry 10
    exchange(led, 5, start=led.t0 + timedelta(hours=1))
    create_seal(led.engine, led.signer, now=now)  # seals entry 20
    rehash_from(led.engine, 14, outcome="fault")
    assert led.trail.verify().ok  # the chain alone cannot tell
    report = _verify(led)
    assert not report.ok and report.where == "seal 2"
    assert "seal 2 does not match the ledger: entry 20 now hashes to" in report.problem
    assert "entries 11..20 were rewritten after they were sealed" in report.problem


def test_a_seal_never_vouches_for_entries_edited_since_the_last_one(led):
    now = clock(led)
    exchange(led, 5)
    create_seal(led.engine, led.signer, now=now)  # seals entry 10
    exchange(led, 5, start=led.t0 + timedelta(hours=1))
    with led.engine.begin() as conn:  # entry 14 edited in place
        conn.execute(update(LOG).where(LOG.c.seq == 14).values(outcome="fault"))
    with pytest.raises(AuditChainBroken, match=r"not sealing: the ledger does not verify since entry 10, the last one sealed or pruned: .*entry 14"):
        create_seal(led.engine, led.signer, now=now)
    with led.engine.connect() as conn:
        assert conn.execute(select(SEALS.c.id)).scalars().all() == [1]


def test_a_consistent_rewrite_reaching_back_before_the_last_seal_is_not_sealed(led):
    now = clock(led)
    exchange(led, 5)
    create_seal(led.engine, led.signer, now=now)  # seals entry 10
    exchange(led, 5, start=led.t0 + timedelta(hours=1))
    rehash_from(led.engine, 6, outcome="fault")  # entries 6..20 rewritten, every hash recomputed
    assert led.trail.verify().ok  # the chain alone cannot tell
    with pytest.raises(AuditChainBroken, match="not sealing: the ledger does not verify since entry 10"):
        create_seal(led.engine, led.signer, now=now)


def test_a_seal_re_signed_with_a_foreign_key_is_named(led):
    now = clock(led)
    exchange(led, 2)
    create_seal(led.engine, led.signer, now=now)
    exchange(led, 2, start=led.t0 + timedelta(hours=1))
    create_seal(led.engine, led.signer, now=now)
    with led.engine.begin() as conn:
        doc = conn.execute(select(SEALS.c.document).where(SEALS.c.id == 2)).scalar_one()
        conn.execute(update(SEALS).where(SEALS.c.id == 2).values(document=resign(doc, foreign_signer())))
    report = _verify(led)
    assert report.where == "seal 2" and report.seals == 1
    assert report.problem.startswith("seal 2 signature does not verify [CERTIFICATE_UNTRUSTED]")


def test_a_seal_signed_by_another_certified_agency_is_refused(led):
    exchange(led, 2)
    create_seal(led.engine, led.national, now=clock(led))  # the national key chains to the same CA
    report = _verify(led)
    assert report.where == "seal 1"
    assert f"is signed by agency {NATIONAL}" in report.problem and f"not by the hub ({HUB})" in report.problem


def test_a_removed_seal_and_an_edited_seal_row_are_named(led):
    now = clock(led)
    for hour in range(3):
        exchange(led, 1, start=led.t0 + timedelta(hours=hour))
        create_seal(led.engine, led.signer, now=now)
    with led.engine.begin() as conn:
        conn.execute(update(SEALS).where(SEALS.c.id == 3).values(head_seq=5))
    assert _verify(led).problem == "seal 3 row was edited: head_seq/head_hash differ from the signed document"
    with led.engine.begin() as conn:
        conn.execute(delete(SEALS).where(SEALS.c.id == 2))
    assert _verify(led).problem == "seal 2 removed: the seals jump from 1 to 3"


def test_entries_removed_after_a_seal_are_caught(led):
    exchange(led, 4)
    create_seal(led.engine, led.signer, now=clock(led))
    from lienthong.hub.store.models import AuditEntry, AuditHead

    log = AuditEntry.__table__
    with led.engine.begin() as conn:  # drop the last two entries and move the head back: the chain is fine
        keep = conn.execute(select(log.c.entry_hash).where(log.c.seq == 6)).scalar_one()
        conn.execute(delete(log).where(log.c.seq > 6))
        conn.execute(update(AuditHead.__table__).values(last_seq=6, last_hash=keep))
    assert led.trail.verify().ok
    report = _verify(led)
    assert report.problem == ("seal 1 sealed entry 8 but the ledger's head is at 6: entries 7..8 were removed "
                              "from the end")


def test_chain_breaks_are_reported_before_seal_problems(led):
    exchange(led, 3)
    create_seal(led.engine, led.signer, now=clock(led))
    from lienthong.hub.store.models import AuditEntry

    with led.engine.begin() as conn:
        conn.execute(update(AuditEntry.__table__).where(AuditEntry.__table__.c.seq == 2).values(outcome="fault"))
    report = _verify(led)
    assert report.where == "entry 2"
    assert report.problem == "entry 2 edited: its metadata (recorded fields) no longer match its entry_hash"


def test_a_concurrent_seal_is_refused_rather_than_forking_the_seal_chain(led, monkeypatch):
    exchange(led, 1)
    now = clock(led)
    calls = []

    def slow_sign(root):  # another sealer commits while this one is signing
        if not calls:
            calls.append(1)
            create_seal(led.engine, led.signer, now=now)
        return led.signer.sign(root)

    class Racing:
        agency_code = HUB
        sign = staticmethod(slow_sign)

    with pytest.raises(AuditChainBroken, match="another seal was written while this one was being signed"):
        create_seal(led.engine, Racing(), now=now, force=True)
    assert _verify(led).seals == 1


def test_cli_seal_and_verify(led, monkeypatch, capsys):
    from lienthong.hub.cli import main

    monkeypatch.setenv("LIENTHONG_HOME", str(led.settings.home))
    monkeypatch.setenv("LIENTHONG_DB_URL", led.settings.db_url)
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", led.settings.key_password)
    exchange(led, 3)
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "6 entries verified" in out and "6 entries after no seal yet" in out
    assert main(["audit", "seal", "--json"]) == 0
    sealed = json.loads(capsys.readouterr().out)
    assert sealed["created"] and sealed["seal"] == 1 and sealed["head_seq"] == 6
    assert main(["audit", "verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["seals_verified"] == 1 and report["unsealed_entries"] == 0
    rehash_from(led.engine, 2, outcome="fault")
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert "audit ledger does not verify at seal 1" in err and "entries 1..6 were rewritten" in " ".join(err.split())


def test_verify_without_a_pki_checks_the_chain_and_says_seals_cannot_be_checked(led, tmp_home, monkeypatch, capsys):
    from lienthong.hub.cli import main

    monkeypatch.setenv("LIENTHONG_DB_URL", led.settings.db_url)  # a home without pki/ca.crt
    exchange(led, 2)
    assert main(["audit", "verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["checked"] == 4 and report["reason"] is None  # the pre-seal names still work
    create_seal(led.engine, led.signer, now=clock(led))
    assert main(["audit", "verify"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "seal 1 cannot be checked: no trusted CA certificate is configured" in err


@pytest.mark.parametrize("all_signatures", [False, True], ids=["newest-signature", "every-signature"])
def test_a_replaced_middle_seal_is_named_whether_or_not_every_signature_is_checked(led, all_signatures):
    """Only the newest seal's signature is checked by default (the SHA-256 chain vouches for the
    rest); a seal replaced in the middle, its row made consistent, is still named precisely."""
    now = clock(led)
    for hour in range(3):
        exchange(led, 1, start=led.t0 + timedelta(hours=hour))
        create_seal(led.engine, led.signer, now=now)
    from lienthong.hub.audit.seal import sha256_hex

    with led.engine.begin() as conn:
        doc = conn.execute(select(SEALS.c.document).where(SEALS.c.id == 2)).scalar_one()
        forged = resign(doc, foreign_signer())
        conn.execute(update(SEALS).where(SEALS.c.id == 2).values(document=forged, seal_hash=sha256_hex(forged)))
    report = verify_ledger(led.engine, led.trust, HUB, all_signatures=all_signatures)
    assert report.where == "seal 2" and report.seals == 1
    assert report.problem.startswith("seal 2 signature does not verify [CERTIFICATE_UNTRUSTED]")


def test_an_edited_newest_seal_fails_its_signature(led):
    exchange(led, 2)
    create_seal(led.engine, led.signer, now=clock(led))
    from lienthong.hub.audit.seal import sha256_hex

    with led.engine.begin() as conn:
        doc = conn.execute(select(SEALS.c.document).where(SEALS.c.id == 1)).scalar_one()
        edited = doc.replace(b"<HeadSeq>4</HeadSeq>", b"<HeadSeq>3</HeadSeq>")
        assert edited != doc
        conn.execute(update(SEALS).values(document=edited, seal_hash=sha256_hex(edited), head_seq=3))
    report = _verify(led)
    assert report.where == "seal 1" and report.seals == 0
    assert report.problem.startswith("seal 1 signature does not verify [SIGNATURE_DIGEST_MISMATCH]")


def test_deleted_seals_show_as_an_old_unsealed_tail_when_an_age_is_required(led):
    """Deleting every seal leaves a chain that verifies; --max-unsealed-age is what catches it."""
    exchange(led, 3)  # recorded at led.t0 and the minutes after
    create_seal(led.engine, led.signer, now=clock(led))
    late = lambda: led.t0 + timedelta(hours=5)  # noqa: E731
    report = verify_ledger(led.engine, led.trust, HUB, max_unsealed_age=timedelta(hours=2), now=late)
    assert report.ok and report.oldest_unsealed_at is None
    exchange(led, 1, start=led.t0 + timedelta(hours=4))
    report = verify_ledger(led.engine, led.trust, HUB, max_unsealed_age=timedelta(hours=2), now=late)
    assert report.ok and report.unsealed == 2 and report.oldest_unsealed_at == led.t0 + timedelta(hours=4)
    with led.engine.begin() as conn:
        conn.execute(delete(SEALS))
    assert verify_ledger(led.engine, led.trust, HUB).ok  # without an age, only "8 entries unsealed"
    report = verify_ledger(led.engine, led.trust, HUB, max_unsealed_age=timedelta(hours=2), now=late)
    assert report.where == "unsealed tail"
    t0 = led.t0.isoformat(timespec="microseconds")
    assert report.problem.startswith(f"entries 1..8 are not sealed and the oldest was recorded {t0}")
    assert "more than 2:00:00 ago: seals were deleted, or sealing (the lienthong_audit_seal DAG) has stopped" in \
        report.problem


def test_cli_max_unsealed_age(led, monkeypatch, capsys):
    from lienthong.hub.cli import main

    monkeypatch.setenv("LIENTHONG_HOME", str(led.settings.home))
    monkeypatch.setenv("LIENTHONG_DB_URL", led.settings.db_url)
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", led.settings.key_password)
    from datetime import UTC, datetime

    recorded = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0)
    exchange(led, 1, start=recorded)
    assert main(["audit", "verify", "--max-unsealed-age", "1d"]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--max-unsealed-age", "1m", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["where"] == "unsealed tail"
    assert report["oldest_unsealed_at"] == recorded.isoformat(timespec="microseconds")
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--max-unsealed-age", "soon"])
    assert "'soon' is not a duration such as 90m, 2h or 1d" in capsys.readouterr().err
