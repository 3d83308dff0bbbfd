"""``python -m relaybus`` runs the ``relaybus`` command."""

from .cli import main

raise SystemExit(main())
