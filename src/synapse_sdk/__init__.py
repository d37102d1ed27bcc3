"""Synapse SDK: plugin actions as ordered, weighted, rollback-able steps."""

__version__ = '0.1.0'
