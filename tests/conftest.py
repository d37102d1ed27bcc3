"""Fixtures for every test folder: real services on 127.0.0.1 (tests/services)."""

pytest_plugins = ['tests.services.plugin']
