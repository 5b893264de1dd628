"""The trust store remembers validated paths, but never past what it proved once.

Chain signatures, key usage and CRLs do not depend on the time, so ``TrustStore.validate`` checks
them once per signer; the validity windows depend on the time and are checked on every call.
"""

from __future__ import annotations

import datetime as dt

import pytest
from lienthong.hub.errors import (
    ExpiredCertificate,
    KeyUsageViolation,
    NotYetValidCertificate,
    RevokedCertificate,
    UntrustedCertificate,
)
from lienthong.signing import verifier as verifier_module
from lienthong.signing.keys import SigningIdentity
from lienthong.signing.pki import create_ca, issue_certificate, revoke
from lienthong.signing.signer import Signer
from lienthong.signing.verifier import TrustStore, Verifier
from signing_helpers import HUB_AGENCY, build_envelope, utcnow


@pytest.fixture
def store(pki) -> TrustStore:
    """A fresh store per test: what it remembers must not leak between tests."""
    return TrustStore.from_paths([pki.ca_cert], [pki.crl])


def _count_path_builds(store: TrustStore, monkeypatch) -> list[int]:
    calls = [0]
    original = TrustStore.build_path

    def counting(self, leaf, candidates=()):
        calls[0] += 1
        return original(self, leaf, candidates)

    monkeypatch.setattr(TrustStore, "build_path", counting)
    return calls


def test_a_validated_path_is_built_once_and_its_windows_checked_every_time(store, ca, monkeypatch):
    now = utcnow()
    leaf = issue_certificate(ca, None, HUB_AGENCY, key_type="ec", not_before=now - dt.timedelta(days=1),
                             not_after=now + dt.timedelta(days=1)).certificate
    builds = _count_path_builds(store, monkeypatch)

    first = store.validate(leaf, at=now)
    again = store.validate(leaf, at=now + dt.timedelta(hours=1))
    assert first == again and first[0] == leaf and first[-1] == store.anchors[0]
    assert builds[0] == 1

    with pytest.raises(ExpiredCertificate, match=r"signer .* expired on .*checked at"):
        store.validate(leaf, at=now + dt.timedelta(days=2))
    with pytest.raises(NotYetValidCertificate, match=r"signer .* is not valid before"):
        store.validate(leaf, at=now - dt.timedelta(days=2))
    assert builds[0] == 1  # the remembered path, re-checked against each time
    assert store.validate(leaf, at=now)  # and still good at a valid time


def test_an_expired_ca_is_caught_on_a_remembered_path(store, ca):
    ca_end = ca.certificate.not_valid_after_utc
    leaf = issue_certificate(ca, None, HUB_AGENCY, key_type="ec", not_after=ca_end + dt.timedelta(days=30)).certificate
    store.validate(leaf, at=utcnow())
    with pytest.raises(ExpiredCertificate, match="trusted CA .* expired on"):
        store.validate(leaf, at=ca_end + dt.timedelta(seconds=1))


def test_a_refused_certificate_is_never_remembered(store, ca, monkeypatch):
    no_signing = issue_certificate(ca, None, HUB_AGENCY, key_type="ec", key_usage={"key_encipherment"}).certificate
    foreign = issue_certificate(create_ca(key_type="ec"), None, HUB_AGENCY, key_type="ec").certificate
    builds = _count_path_builds(store, monkeypatch)
    for _ in range(2):
        with pytest.raises(KeyUsageViolation, match="digitalSignature"):
            store.validate(no_signing, at=utcnow())
        with pytest.raises(UntrustedCertificate, match="does not chain"):
            store.validate(foreign, at=utcnow())
    assert builds[0] == 4  # every call went through the full checks


def test_a_certificate_expired_at_first_sight_is_checked_in_full_later(store, ca, monkeypatch):
    now = utcnow()
    leaf = issue_certificate(ca, None, HUB_AGENCY, key_type="ec", not_before=now + dt.timedelta(hours=1)).certificate
    builds = _count_path_builds(store, monkeypatch)
    with pytest.raises(NotYetValidCertificate):
        store.validate(leaf, at=now)
    assert store.validate(leaf, at=now + dt.timedelta(hours=2))
    assert builds[0] == 2


def test_a_crl_refresh_means_a_new_store_that_knows_the_revocation(pki, ca, tmp_path):
    """Revocation is decided by the store's own CRLs, which never change under a remembered path."""
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl.read_bytes())
    leaf = issue_certificate(ca, None, HUB_AGENCY, key_type="ec").certificate
    before = TrustStore.from_paths([pki.ca_cert], [crl])
    assert before.validate(leaf, at=utcnow())
    revoke(crl, ca, leaf)
    refreshed = TrustStore.from_paths([pki.ca_cert], [crl])
    with pytest.raises(RevokedCertificate, match="revoked on"):
        refreshed.validate(leaf, at=utcnow())
    with pytest.raises(RevokedCertificate):
        refreshed.validate(leaf, at=utcnow())  # and is not remembered as good either


def test_intermediates_offered_are_part_of_what_is_remembered(store, ca, monkeypatch):
    leaf = issue_certificate(ca, None, HUB_AGENCY, key_type="ec").certificate
    stranger = issue_certificate(ca, None, "000.00.00.G99", key_type="ec").certificate
    builds = _count_path_builds(store, monkeypatch)
    store.validate(leaf, at=utcnow())
    store.validate(leaf, [stranger], at=utcnow())
    store.validate(leaf, [stranger], at=utcnow())
    assert builds[0] == 2


def test_the_memory_is_bounded(store, ca, monkeypatch):
    monkeypatch.setattr(verifier_module, "PATH_CACHE_SIZE", 2)
    leaves = [issue_certificate(ca, None, HUB_AGENCY, key_type="ec").certificate for _ in range(5)]
    for leaf in leaves:
        store.validate(leaf, at=utcnow())
        assert len(store._validated) <= 2


def test_verifier_checks_expiry_of_a_remembered_signer_at_its_own_clock(pki, ca, store):
    """End to end: a Verifier whose clock moves past the signer's expiry refuses the same message."""
    now = utcnow()
    issued = issue_certificate(ca, None, HUB_AGENCY, key_type="ec", not_after=now + dt.timedelta(days=1))
    signer = Signer(SigningIdentity.from_objects(issued.private_key, issued.certificate, (issued.issuer_certificate,)),
                    "ecdsa-sha256")
    signed = signer.sign(build_envelope())
    clock = [now]
    verifier = Verifier(store, now=lambda: clock[0])
    assert verifier.verify(signed).signer_agency == HUB_AGENCY
    clock[0] = now + dt.timedelta(days=2)
    with pytest.raises(ExpiredCertificate, match="signer .* expired on"):
        verifier.verify(signed)
    clock[0] = now
    assert verifier.verify(signed).signer_agency == HUB_AGENCY
