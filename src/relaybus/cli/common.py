"""What every part of the command shares."""

from __future__ import annotations

from .._errors import RelaybusError

__all__ = ["ENV_APP", "ENV_DSN", "CLIError"]

ENV_APP = "RELAYBUS_APP"
ENV_DSN = "RELAYBUS_DSN"


class CLIError(RelaybusError):
    """A usage or environment error: printed as one short line, exit code 2."""
