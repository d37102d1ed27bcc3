"""The ``synapse`` command line."""
