"""Realistic national procedure records for the mapping tests.

Records come from the sandbox's synthetic national catalogue (seeded from real procedures of the
agriculture ministry) and go through the same path as in production: the sandbox builds the
``LayThuTucResult`` element, and :func:`thutuc_record` turns it into the dict ``from_national``
receives. No HTTP and no signing: those are tested elsewhere, and these tests must stay fast.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from lienthong.connectors.csdl_tthc import thutuc_record
from lienthong.connectors.payload import element
from lienthong.connectors.services import CSDL_TTHC
from lienthong.connectors.soap import answer_fields
from lienthong.sandbox.catalogue import Catalogue


def national_of(catalogue: Catalogue, code: str) -> dict[str, Any]:
    payload = element(CSDL_TTHC.namespace, "LayThuTucResult", {"ThuTuc": catalogue.record(code)}, prefix="tthc")
    return thutuc_record(answer_fields(CSDL_TTHC, "LayThuTuc", payload))


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue(size=400, seed=1)


@pytest.fixture(scope="session")
def picked(catalogue: Catalogue) -> dict[str, str]:
    """One procedure code per feature worth covering, found by looking at the catalogue."""
    wanted: dict[str, Callable[[dict[str, Any]], bool]] = {
        "three_channels_with_fees": lambda r: len(r["CACHTHUCTHUCHIEN"]) == 3 and bool(r["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"]),
        "no_fee": lambda r: not r["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"],
        "provincial_with_commune": lambda r: r["CAPTHUCHIEN"] == ["TINH", "XA"],
        "abolished": lambda r: r["TRANGTHAI"] == 2,
        "no_requirement": lambda r: r["YEUCAU"] is None,
        **{f"mucdo_{m}": (lambda r, m=m: r["MUCDO"] == m)
           for m in ("TOAN_TRINH", "MOT_PHAN", "THONG_TIN", "MUC_DO_3", "MUC_DO_4")},
    }
    found: dict[str, str] = {}
    for code in catalogue.codes():
        record = catalogue.record(code)
        for name, test in wanted.items():
            if name not in found and test(record):
                found[name] = code
        if len(found) == len(wanted):
            break
    missing = set(wanted) - set(found)
    assert not missing, f"the sandbox catalogue no longer has records for {missing}"
    return found


@pytest.fixture
def national(catalogue: Catalogue) -> Callable[[str], dict[str, Any]]:
    """national(code) -> a fresh LayThuTuc dict (texts, as the connector produces it)."""
    cache: dict[str, dict[str, Any]] = {}

    def get(code: str) -> dict[str, Any]:
        if code not in cache:
            cache[code] = national_of(catalogue, code)
        return copy.deepcopy(cache[code])

    return get


@pytest.fixture
def record(national, picked) -> dict[str, Any]:
    """A record with three channels, each with a processing time and a fee (safe to mutate)."""
    return national(picked["three_channels_with_fees"])
