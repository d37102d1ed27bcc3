"""The spec's import path: ``synapse_sdk.plugins.pipelines.steps``."""
