"""Tests for the step framework core (``synapse_sdk.plugins.steps``)."""
