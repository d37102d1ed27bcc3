"""Plugin authoring API."""
