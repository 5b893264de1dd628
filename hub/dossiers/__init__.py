"""The hub's record of dossiers: what reports and the 766 scorecard are computed from.

Each change the intake takes in updates, in the same transaction as its outbox event, the
dossier's current fields (:class:`~lienthong.hub.store.models.DossierRecord`) and its status
history (:class:`~lienthong.hub.store.models.DossierStatus`): :func:`project`. A dossier already
in the outbox before the record existed is filled from its outbox events by the migration that
created it (:func:`rebuild`). :func:`history` and :func:`supplement_periods` read one dossier back.
"""

from .projection import (
    SUPPLEMENT,
    StatusEntry,
    dossier,
    history,
    portal_moment,
    project,
    rebuild,
    supplement_periods,
)

__all__ = ["SUPPLEMENT", "StatusEntry", "dossier", "history", "portal_moment", "project", "rebuild",
           "supplement_periods"]
