"""``synapse ui``: the run journal as a small local web application.

The runs list (filters and pages in the URL), a run's page (timeline, params,
charts, rollback, log; live while it runs) and buttons that run ``synapse runs
cancel|rollback|resume``. Needs the ``ui`` extra (Starlette, uvicorn).
"""

from ._app import create_app
from ._security import TOKEN_VARIABLE, access_token, is_loopback
from ._server import bind, serve, server

__all__ = [
    'TOKEN_VARIABLE',
    'access_token',
    'bind',
    'create_app',
    'is_loopback',
    'serve',
    'server',
]
