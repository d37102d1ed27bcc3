"""``context.map``: run a step's many items concurrently, with progress and rollback data.

Backends: ``'threads'`` (here) and ``'serial'``; others (``'ray'``) are
registered by the layers that bring them, by module path and imported on first
use, so the core imports nothing of them and a name alone selects one.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from ._errors import SynapseError

T = TypeVar('T')
R = TypeVar('R')
H = TypeVar('H', bound=Hashable)


class MapItemError(SynapseError, RuntimeError):
    """One item of ``context.map`` failed; the others were stopped."""

    def __init__(self, index: int, item: object, error: BaseException) -> None:
        shown = repr(item)
        if len(shown) > 120:
            shown = shown[:117] + '...'
        super().__init__(f'item {index} ({shown}) failed: {type(error).__name__}: {error}')
        self.index = index
        self.item = item


class MapBackend(Protocol):
    """Runs ``fn`` over ``items`` and yields ``(index, result, error)`` as each finishes.

    Once ``stop`` is set it hands out no more items, but still yields the
    items already running as they finish (their work must be recorded).
    """

    def run(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        max_workers: int | None,
        stop: threading.Event,
    ) -> Iterator[tuple[int, Any, BaseException | None]]: ...


class _SerialBackend:
    def run(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        max_workers: int | None,
        stop: threading.Event,
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        for index, item in enumerate(items):
            if stop.is_set():
                return
            try:
                yield index, fn(item), None
            except Exception as error:
                yield index, None, error


def windowed(
    items: Sequence[Any],
    limit: int,
    stop: threading.Event,
    submit: Callable[[Any], H],
    settle: Callable[[list[H]], Iterable[tuple[H, Any, BaseException | None]]],
    cancel: Callable[[H], object],
) -> Iterator[tuple[int, Any, BaseException | None]]:
    """The loop every concurrent backend shares: keep up to ``limit`` items in flight.

    ``submit(item)`` starts one and returns its handle; ``settle(handles)``
    waits for some to finish and reports ``(handle, value, error)`` for each;
    ``cancel(handle)`` drops one not yet finished when the caller stops
    listening. Once ``stop`` is set no item is started, but those running are
    still settled and reported.
    """
    pending: dict[H, int] = {}
    upcoming = iter(enumerate(items))

    def fill() -> None:
        while not stop.is_set() and len(pending) < limit:
            nxt = next(upcoming, None)
            if nxt is None:
                return
            pending[submit(nxt[1])] = nxt[0]

    fill()
    try:
        while pending:
            for handle, value, error in settle(list(pending)):
                yield pending.pop(handle), value, error
            fill()
    finally:
        for handle in pending:
            cancel(handle)


class _ThreadBackend:
    def run(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        max_workers: int | None,
        stop: threading.Event,
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        workers = max(1, min(max_workers or 8, len(items) or 1))

        def settle(
            futures: list[Future[Any]],
        ) -> Iterator[tuple[Future[Any], Any, BaseException | None]]:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                error = future.exception()
                yield future, None if error is not None else future.result(), error

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='synapse-map') as pool:
            yield from windowed(
                items,
                workers * 2,
                stop,
                lambda item: pool.submit(fn, item),
                settle,
                Future.cancel,
            )


BackendFactory = Callable[[], MapBackend]

BACKENDS: dict[str, BackendFactory | str] = {
    'serial': _SerialBackend,
    'threads': _ThreadBackend,
}


def register_backend(name: str, factory: BackendFactory | str) -> None:
    """Make ``context.map(..., backend=name)`` available.

    ``factory`` makes a :class:`MapBackend`; or it is where to find one,
    ``'package.module:attribute'``, imported the first time the backend is used
    (how ``'ray'`` is registered: the module needs the ``ray`` extra).
    """
    BACKENDS[name] = factory


def backend_named(name: str) -> MapBackend:
    factory = BACKENDS.get(name)
    if factory is None:
        raise ValueError(f'unknown map backend {name!r}; available: {", ".join(sorted(BACKENDS))}')
    if isinstance(factory, str):
        factory = BACKENDS[name] = _load(name, factory)
    return factory()


def _load(name: str, where: str) -> BackendFactory:
    """The factory at ``'module:attribute'``; an ``ImportError`` that names the backend."""
    module_name, _, attribute = where.partition(':')
    try:
        module = importlib.import_module(module_name)
        factory: BackendFactory = getattr(module, attribute)
    except ImportError as error:
        raise ImportError(f'map backend {name!r} cannot be loaded from {where}: {error}') from error
    except AttributeError as error:
        raise ImportError(f'map backend {name!r}: {module_name} has no {attribute!r}') from error
    return factory
