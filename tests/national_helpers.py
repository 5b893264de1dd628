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
