"""Which transport reaches a national service: chosen by configuration, one place for all flows.

``LIENTHONG_CSDL_TRANSPORT`` / ``LIENTHONG_DVC_TRANSPORT`` / ``LIENTHONG_BAOCAO_TRANSPORT`` (default
``soap``) name it; every flow, DAG and command builds its partner clients through
:func:`transport_for`, so a new transport is one more branch here and a module of its own beside
:mod:`.soap`, implementing :class:`~.port.PartnerTransport`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hub.errors import ConfigurationError
from .port import PartnerTransport
from .services import TRANSPORTS

if TYPE_CHECKING:
    from ..hub.audit import AuditTrail
    from ..hub.settings import Settings

__all__ = ["TRANSPORTS", "transport_for"]


def transport_for(settings: Settings, service_name: str, *, audit: AuditTrail) -> PartnerTransport:
    """The transport the configuration names for ``service_name`` (``soap`` by default)."""
    kind = settings.partner(service_name).transport
    if kind == "soap":
        from .soap import SoapConnector

        return SoapConnector(settings, service_name, audit=audit)
    if kind == "json":
        from .json_adapter import JsonTransport

        return JsonTransport(settings, service_name, audit=audit)
    raise ConfigurationError(f"{service_name}: unknown transport {kind!r}; known: {', '.join(TRANSPORTS)}")
