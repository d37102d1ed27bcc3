"""Errors of the execution layer that callers catch without importing Ray (an optional extra)."""

from __future__ import annotations

from synapse_sdk.plugins.steps import ErrorKind, SynapseError


class RayUnavailableError(SynapseError, ConnectionError):
    """Ray could not be started or reached, or refused this driver.

    Nothing of the run started. The message is one line that names the
    address and says what to do (start the cluster, check the address, set
    the cluster's token).
    """


class SharedStateRequiredError(SynapseError, ValueError):
    """A run that leaves this machine (a detached run, a Ray cluster of several nodes)
    would keep its journal or its storage where only this machine sees them.

    Bad input, refused before the run starts: the message names
    ``SYNAPSE_DATABASE_URL`` (``--database``) or ``--storage``, and
    ``--shared-fs`` for a path that every node mounts.
    """

    kind = ErrorKind.BAD_INPUT
