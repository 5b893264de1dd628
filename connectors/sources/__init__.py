"""Sources of dossier changes in the ministry's one-stop system (SQL view, export files)."""
