"""Schema checks for every message the hub sends or accepts.

Each national service's XSD in ``schemas/`` imports the envelope profile, so one validation
checks the edXML header and the business payload together. Validation runs with lxml (libxml2,
fast enough to sit on the hot path of every message); the test suite cross-checks the schemas and
samples with ``xmlschema`` as a second, independent implementation.
"""

from __future__ import annotations

import threading

from lxml import etree

from ..connectors.services import SERVICES
from .errors import ConfigurationError, SchemaViolation

_local = threading.local()  # lxml validators keep per-call error state: one per thread
#: libxml2 is not safe compiling schemas in two threads at once (seen: "xmlSchemaPValAttrNodeValue,
#: the given type is not a built-in type" when two sender threads loaded their first schema together)
_COMPILE_LOCK = threading.Lock()


def _load(service_name: str) -> etree.XMLSchema:
    try:
        spec = SERVICES[service_name]
    except KeyError:
        raise ConfigurationError(f"no schema for unknown service {service_name!r}") from None
    # Schemas are our own files, but are still read with network access and DTDs off.
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    try:
        with _COMPILE_LOCK:
            doc = etree.parse(str(spec.xsd_path), parser)
            return etree.XMLSchema(doc)
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise ConfigurationError(f"cannot load schema {spec.xsd_path}: {exc}") from None


def schema_for(service_name: str) -> etree.XMLSchema:
    cache = getattr(_local, "schemas", None)
    if cache is None:
        cache = _local.schemas = {}
    schema = cache.get(service_name)
    if schema is None:
        schema = cache[service_name] = _load(service_name)
    return schema


def validate(root: etree._Element, service_name: str, *, what: str = "message") -> None:
    """Raise :class:`SchemaViolation` naming the first problem (line and element) if invalid."""
    schema = schema_for(service_name)
    if schema.validate(root):
        return
    errors = list(schema.error_log)
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    path = f" at {first.path}" if first.path else ""
    raise SchemaViolation(
        f"{what} does not match schema {SERVICES[service_name].xsd_file}: line {first.line}{path}: {first.message}{more}",
        detail="\n".join(f"line {e.line}: {e.message}" for e in errors[:20]),
    )
