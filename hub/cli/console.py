"""What every command shares: the consoles, the exit codes, the settings, the time options.

Command modules import from here, never from the entry point (:mod:`lienthong.hub.cli`), so the
entry point can import them all without a circle.
"""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_FAILURE = 1
EXIT_USAGE = 2


def load_settings():
    """The hub's settings from the environment (``LIENTHONG_*``)."""
    from ..settings import Settings

    return Settings.from_env()


def parse_moment(value: str | None, option: str, *, end: bool = False):
    """An ISO date or date-time given on the command line; without an offset it is UTC (the ledger's
    and the watermarks' own time). The one parser for every command's time options.

    A bare date given to an end bound (``--until 2026-11-22``) means the end of that day, so the
    day is included; ``--since 2026-11-22`` starts at its midnight.
    """
    from datetime import UTC, datetime, timedelta

    from ..errors import ConfigurationError

    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{option} {value!r} is not an ISO date or date-time (e.g. 2026-11-22 or 2026-11-22T08:00:00+07:00)"
        ) from None
    if end and len(value.strip()) == 10:
        moment += timedelta(days=1)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url


def vn(moment) -> str:
    """A moment in Vietnam time, as operators read it."""
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m-%d %H:%M:%S")
