"""Helpers for the connector tests (a plain module: conftest modules are not importable by name)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lienthong.connectors.services import SERVICES
from lienthong.hub.settings import Settings

PASSWORD = "mật-khẩu-kết-nối"


def settings_for(home: Path, base_url: str | None, **overrides) -> Settings:
    settings = Settings.from_env({"LIENTHONG_HOME": str(home), "LIENTHONG_KEY_PASSWORD": PASSWORD})
    settings = replace(settings, **overrides)
    for spec in SERVICES.values():
        settings = settings.with_partner(
            replace(settings.partner(spec.name), url=(base_url + spec.path) if base_url else None))
    return settings


def over_json(settings: Settings, base_url: str, service: str = "dvc_portal", **endpoint) -> Settings:
    """``settings`` with ``service`` reached through the sandbox's emulation of the portal's JSON
    adapter (its default account), ``endpoint`` overriding any of the adapter's settings."""
    fields = {"transport": "json", "url": base_url + "/adapter", "username": "lienthong",
              "password": "sandbox-adapter", "dstcode": "000.00.00.G22", **endpoint}
    return settings.with_partner(replace(settings.partner(service), **fields))
