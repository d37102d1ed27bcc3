"""Errors of the execution layer that callers catch without importing Ray (an optional extra)."""

from __future__ import annotations

from synapse_sdk.plugins.steps import SynapseError


class RayUnavailableError(SynapseError, ConnectionError):
    """Ray could not be started or reached, or refused this driver.

    Nothing of the run started. The message is one line that names the
    address and says what to do (start the cluster, check the address, set
    the cluster's token).
    """
