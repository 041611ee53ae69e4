"""The ``dualsr`` command line (Typer). Rich rendering happens only here."""
