"""The flows: one module per mission step, each what a DAG task or a CLI command runs.

- :mod:`.catalogue`: pull the procedure catalogue from the CSDL quốc gia về TTHC (full or incremental);
- :mod:`.intake`: read one-stop sources (SQL databases, export inboxes) into the outbox, one cursor
  per source;
- :mod:`.status_push`: drain the outbox to the national portal (one worker = :func:`status_push.drain`);
- :mod:`.results_push`: upload the one-stop system's result files to the portal, before the snapshots
  that list them (one worker = :func:`results_push.drain`);
- :mod:`.healthcheck`: one signed, read-only round trip per national service;
- :mod:`.demo`: every flow end to end on the bundled sandbox (``lienthong demo``).

A flow calls partner modules (:mod:`lienthong.connectors`), the delivery engine, the audit ledger
and the store; nothing below a flow imports it. DAG files and CLI commands stay thin: they read
their parameters and call a flow. A new flow (reporting, scorecard) is a new module here.
"""
