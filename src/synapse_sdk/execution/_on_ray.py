"""Run whole actions on Ray, and ``context.map(..., backend='ray')``.

Needs the ``ray`` extra (``pip install 'synapse-sdk[ray]'``). The run itself
happens in a Ray actor; the driver shows its progress and events live and
keeps the journal's view; the worker writes the run journal directly, so the
journal must be reachable from the workers: a PostgreSQL journal
(``SYNAPSE_DATABASE_URL``) from anywhere, an SQLite file from the local Ray
instance and clusters on a shared filesystem.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import pickle
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

try:
    import ray
    from ray._private import services as ray_services
    from ray._private import worker as ray_worker
    from ray.exceptions import RayActorError, RayTaskError
except ImportError as error:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "running on Ray needs the 'ray' extra: pip install 'synapse-sdk[ray]'"
    ) from error

from synapse_sdk._paths import DATABASE_URL_VARIABLE
from synapse_sdk.journal import LEASE_MARGIN_S, Journal, JournalError, UnknownRunError
from synapse_sdk.otel import joined_trace
from synapse_sdk.plugins.actions import ActionError, ActionOrigin, BaseAction
from synapse_sdk.plugins.steps import (
    LIFECYCLE_EVENTS,
    RunCancelledError,
    RunEvent,
    RunSummary,
    StepExecutionError,
    StepOverdue,
    StepResult,
    register_backend,
)
from synapse_sdk.plugins.steps.support import RELAYED, describe_exception, windowed
from synapse_sdk.runtime import Logger, RuntimeContext
from synapse_sdk.runtime.loggers import LoggedEvent

from ._errors import RayUnavailableError
from ._local import default_runtime, open_traces, run_action
from ._placement import SECRETS_VARIABLE, Resources, check_reachable, secrets_from_environment
from ._recovery import _secret_fields, resume_run, rollback_run

# --- starting Ray --------------------------------------------------------------
CONNECT_TIMEOUT = 5.0
"""Seconds to reach a cluster's address (TCP connect, then its gRPC greeting)."""

GCS_ATTEMPTS = 3
"""Connection attempts Ray makes once the address answers (about a second each)."""

JOB_CONFIG_VARIABLE = 'RAY_JOB_CONFIG_JSON_ENV_VAR'
"""Set by Ray in the environment of a submitted job's entrypoint (a detached run)."""

_HTTP2_GREETING = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + bytes(3) + b'\x04' + bytes(5)
_NOT_AUTHENTICATED = ('InvalidAuthToken', 'AuthenticationError', 'Unauthenticated')


def ensure_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    working_dir: str | Path | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Connect to ``address`` (else ``$RAY_ADDRESS``), or start a private local Ray instance.

    Without an address the instance is this process's own (``address='local'``):
    a cluster ``ray start`` left on this machine, running or dead, is not
    joined. An address is checked within ``connect_timeout`` before Ray is
    asked to connect, and Ray's retries are bounded, so a dead address or a
    refused token fails in seconds with :class:`RayUnavailableError`.

    ``working_dir`` (the plugin folder) goes to a cluster as the job's
    ``runtime_env``; a local instance's workers, on this machine, get it on
    their import path instead (packing it for them costs each run a second).

    ``ray.init`` takes over SIGTERM (an exit with a stack dump); a handler the
    caller installed (the graceful cancel of ``synapse plugin run``) is put back.
    Where there was none, Ray's stays: it stops the local instance's processes.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get('RAY_ADDRESS') or 'local'
    if JOB_CONFIG_VARIABLE in os.environ:  # a Ray job's driver: its runtime_env is the job's
        working_dir = None
    options: dict[str, Any] = {
        'include_dashboard': False,
        'configure_logging': False,
        'log_to_driver': False,
    }
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        if address == 'local':
            _start_local(num_cpus, working_dir, options)
        else:
            if working_dir is not None:
                options['runtime_env'] = {'working_dir': str(working_dir)}
            _connect(address, connect_timeout, options)
    finally:
        for signum, handler in previous.items():
            if handler not in (signal.SIG_DFL, None):
                signal.signal(signum, handler)
    atexit.register(_shut_down)  # runs before Ray's handler, registered when Ray was imported
    _notices_to_stderr()


def _notices_to_stderr() -> None:
    """Ray prints its notices to a driver (a worker died, ...) on stdout, where ``synapse
    plugin run`` prints its JSON result: they go to stderr, with Ray's other lines."""
    original = ray_worker.print_to_stdstream
    if getattr(original, 'synapse_stderr', False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get('pid') == 'raylet':
            data = {**data, 'is_err': True}
        original(data, ignore_prefix)

    to_stderr.synapse_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


def _start_local(
    num_cpus: int | None, working_dir: str | Path | None, options: dict[str, Any]
) -> None:
    """The instance's processes inherit this environment: with ``working_dir`` first on
    PYTHONPATH, every worker imports the plugin's modules where they are."""
    saved = os.environ.get('PYTHONPATH')
    if working_dir is not None:
        os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [str(working_dir), saved]))
    try:
        ray.init(address='local', num_cpus=num_cpus, **options)
    except Exception as error:
        raise RayUnavailableError(
            f'cannot start a local Ray instance: {_first_line(error)}'
        ) from error
    finally:
        if saved is None:
            os.environ.pop('PYTHONPATH', None)
        else:
            os.environ['PYTHONPATH'] = saved


def _shut_down() -> None:
    """At exit, what Ray's own handler does (stop a local instance, leave a cluster)
    without its half-second pause for workers' log lines: this driver takes none."""
    if ray.is_initialized():
        ray.shutdown()


def _connect(address: str, timeout: float, options: dict[str, Any]) -> None:
    """Probe the address, then let Ray connect with a bounded number of attempts."""
    where = _host_port(address)
    label = address if address == f'{where[0]}:{where[1]}' else f'{address} ({where[0]}:{where[1]})'
    _probe(label, where, timeout)
    wait = 'RAY_gcs_server_port_wait_time_s'  # Ray's own knob for its connect attempts
    bounded = wait not in os.environ
    if bounded:
        os.environ[wait] = str(GCS_ATTEMPTS)
    try:
        with _stderr_held():  # Ray's warning per failed attempt: the error says it once
            ray.init(address=address, **options)
    except Exception as error:
        raise RayUnavailableError(_explain(address, error)) from error
    finally:
        if bounded:
            os.environ.pop(wait, None)


def check_ray_address(address: str | None) -> None:
    """``ValueError`` unless ``address`` is ``host:port``, ``ray://host:port``, ``auto``
    or ``local`` (checked before anything runs: bad input, not a failed run)."""
    if address is None or address in ('auto', 'local'):
        return
    host, _, port = address.removeprefix('ray://').rpartition(':')
    # ASCII digits: isdigit() takes superscripts too, which int() refuses
    if not host or not re.fullmatch(r'[0-9]{1,5}', port) or not 0 < int(port) < 65536:
        raise ValueError(
            f'Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, the address '
            "`ray start --head` prints), 'auto' or 'local'"
        )


def _host_port(address: str) -> tuple[str, int]:
    """Where Ray will connect: ``auto`` is the cluster ``ray start`` last started here."""
    try:
        check_ray_address(address)
        if not address.startswith('ray://'):
            address = ray_services.canonicalize_bootstrap_address(address)
    except (ValueError, ConnectionError) as error:
        raise RayUnavailableError(f'cannot use the Ray address {address}: {error}') from error
    host, _, port = address.removeprefix('ray://').rpartition(':')
    return host.strip('[]'), int(port)


def _probe(address: str, where: tuple[str, int], timeout: float) -> None:
    """A bounded TCP connect, then an HTTP/2 greeting (Ray speaks gRPC): Ray itself
    would retry a dead address for minutes, and wait 36 s per try on a wrong port."""
    try:
        conn = socket.create_connection(where, timeout=timeout)
    except OSError as error:
        timed_out = isinstance(error, TimeoutError)
        cause = f'no answer within {timeout:g}s' if timed_out else error.strerror or error
        raise RayUnavailableError(
            f'cannot reach Ray at {address}: {cause}; start it with `ray start --head` '
            'or check the address'
        ) from error
    if os.environ.get('RAY_USE_TLS', '').lower() in ('1', 'true'):
        conn.close()  # a TLS server waits for a TLS hello, not for this greeting
        return
    with conn:
        try:
            conn.sendall(_HTTP2_GREETING)
            reply = conn.recv(9)
        except OSError:
            reply = b''
    if len(reply) < 4 or reply[3] != 0x04:  # a gRPC server answers with its SETTINGS
        raise RayUnavailableError(
            f'{address} answers but is not a Ray cluster (no gRPC there): check the port '
            '(the one `ray start --head` prints, 6379 by default)'
        )


def _explain(address: str, error: BaseException) -> str:
    """One line for a failed ``ray.init(address=...)``: a refused token says what to set."""
    chain = []
    cause: BaseException | None = error
    while cause is not None:
        chain.append(f'{type(cause).__name__}: {cause}')
        cause = cause.__cause__ or cause.__context__
    if not any(mark in text for text in chain for mark in _NOT_AUTHENTICATED):
        return f'cannot connect to Ray at {address}: {_first_line(error)}'
    if os.environ.get('RAY_AUTH_MODE', '').lower() != 'token':
        return (
            f'the Ray cluster at {address} requires token authentication: set '
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token (or "
            'RAY_AUTH_TOKEN_PATH to a file holding it; default ~/.ray/auth_token), '
            'as printed by `ray get-auth-token` on the head'
        )
    return (
        f'the Ray cluster at {address} did not accept the token in {_token_source()}: set '
        "RAY_AUTH_TOKEN (or the file RAY_AUTH_TOKEN_PATH) to the cluster's token, as "
        'printed by `ray get-auth-token` on the head'
    )


def _token_source() -> str:
    """Where Ray reads the token from (its order), never the token itself."""
    if os.environ.get('RAY_AUTH_TOKEN'):
        return 'RAY_AUTH_TOKEN'
    path = os.environ.get('RAY_AUTH_TOKEN_PATH') or str(Path.home() / '.ray' / 'auth_token')
    return path if os.path.exists(path) else f'{path} (no such file)'


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """Keeps what is written to file descriptor 2 (Ray's C++ logs too) and shows it
    only on success."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        kept = memoryview(held.read())
        while kept:
            kept = kept[os.write(2, kept) :]


def _ship_by_value(obj: object) -> None:
    """The user's own code (a plugin module, a test file) travels pickled by value:
    the workers may not be able to import it. Installed packages travel by name."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    name = getattr(obj, '__module__', None) or ''
    module = sys.modules.get(name)
    top = name.split('.')[0]
    if module is None or top in sys.stdlib_module_names or top in ('synapse_sdk', '__main__'):
        return
    path = getattr(module, '__file__', None) or ''
    if 'site-packages' in path or 'dist-packages' in path:
        return
    ray.cloudpickle.register_pickle_by_value(module)


# --- the worker side -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Log(LoggedEvent):
    """A ``log`` call of the run, to show on the driver."""

    def show(self, runtime: RuntimeContext) -> None:
        runtime.log(self.event, self.data, self.file, self.level)


@dataclass(frozen=True, slots=True)
class _Progress:
    """A ``set_progress`` call of the run, to show on the driver."""

    current: float
    total: float
    category: str

    def show(self, runtime: RuntimeContext) -> None:
        runtime.set_progress(self.current, self.total, self.category)


@dataclass(frozen=True, slots=True)
class _Metrics:
    """A ``set_metrics`` call of the run, to show on the driver."""

    value: dict[str, Any]
    category: str

    def show(self, runtime: RuntimeContext) -> None:
        runtime.set_metrics(self.value, self.category)


@dataclass(frozen=True, slots=True)
class _Cancelled:
    """The run was cancelled in the worker (a journal cancel its heartbeat read): the
    driver cancels too, so that its ``stop_timeout`` kills a step that never checks."""

    reason: str

    def show(self, runtime: RuntimeContext) -> None:
        runtime.cancel(self.reason)


Relayed = RunEvent | _Log | _Progress | _Metrics | _Cancelled


class RelayLogger(Logger):
    """Collects what the run shows (events, progress, metrics, lifecycle events) for the driver.

    Lifecycle events travel as they are, made portable (:func:`_portable_event`).
    Consecutive progress updates of one category are folded into the latest,
    so a step reporting every item costs the relay nothing.
    """

    # not the in-step events: the overall figure travels as a set_progress call, and
    # the worker journals the rollback data itself
    listens_to = LIFECYCLE_EVENTS

    def __init__(self) -> None:
        self._items: list[Relayed] = []
        self._lock = threading.Lock()

    def drain(self) -> list[Relayed]:
        with self._lock:
            items, self._items = self._items, []
        return items

    def _add(self, item: Relayed) -> None:
        with self._lock:
            items = self._items
            if (
                isinstance(item, _Progress)
                and items
                and isinstance(items[-1], _Progress)
                and items[-1].category == item.category
            ):
                items[-1] = item
            else:
                items.append(item)

    def log(self, event: str, data: dict[str, Any], file: str | None, level: str) -> None:
        self._add(_Log(event, data, file, level))

    def progress(self, current: float, total: float, category: str) -> None:
        self._add(_Progress(current, total, category))

    def metrics(self, value: dict[str, Any], category: str) -> None:
        self._add(_Metrics(value, category))

    def on_event(self, event: RunEvent) -> None:
        self._add(_portable_event(event))

    def cancelled(self, reason: str) -> None:
        """Subscribed to the worker's cancel token: the driver learns of every cancel."""
        self._add(_Cancelled(reason))


def _portable_event(event: RunEvent) -> RunEvent:
    """``event`` as it can cross to the driver: results without their data (user objects,
    maybe large or unpicklable), errors that unpickle, the context's state left behind."""
    changes: dict[str, Any] = {}
    for spec in dataclass_fields(event):
        value = getattr(event, spec.name)
        if spec.metadata.get(RELAYED, True) is False:
            changes[spec.name] = {}
        elif isinstance(value, StepResult):
            changes[spec.name] = _slim(value)
        elif isinstance(value, RunSummary) and value.error is not None:
            changes[spec.name] = replace(value, error=_portable_any(value.error))
        elif isinstance(value, BaseException):
            changes[spec.name] = _portable_any(value)
    return replace(event, **changes) if changes else event


def _slim(result: StepResult) -> StepResult:
    return StepResult(
        success=result.success,
        error=result.error,
        skipped=result.skipped,
        timestamp=result.timestamp,
        step_name=result.step_name,
        duration_seconds=result.duration_seconds,
        attempts=result.attempts,
    )


def _portable_any(error: BaseException) -> BaseException:
    if isinstance(error, Exception):
        return _portable(error)
    return RuntimeError(f'{type(error).__name__}: {error}')


def _first_line(error: BaseException) -> str:
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(error))  # no terminal colours in a message
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


@ray.remote(max_concurrency=4)
class RunHost:
    """Runs one action in a Ray worker; the driver drains its events and may cancel it."""

    def __init__(self) -> None:
        self.relay = RelayLogger()
        self.runtime: RuntimeContext | None = None

    def run(
        self,
        shipped_action: bytes,
        params: dict[str, Any],
        run_id: str,
        client: Any,
        journal_ref: JournalRef | None,
        origin: ActionOrigin | None,
        driver: tuple[str, str],
        trace_context: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The run, journaled as having run in the driver's directory ``driver[1]`` (where
        its relative paths mean files, and where recovery from there acts)."""
        _enter(driver)
        folder = origin.plugin_path if origin is not None else None
        if folder and os.path.isdir(folder) and folder not in sys.path:
            sys.path.insert(0, folder)  # its sibling modules import as they do locally
        # unpickled here, after the path is set: the class may import its siblings
        action: type[BaseAction[Any]] = ray.cloudpickle.loads(shipped_action)
        self.runtime = runtime = RuntimeContext(logger=[self.relay], client=client, run_id=run_id)
        runtime.cancel_token.subscribe(self.relay.cancelled)
        journal = _open_journal(journal_ref) if journal_ref else None
        params = secrets_from_environment(params)  # secret params come in the environment

        def run() -> dict[str, Any]:
            with joined_trace(trace_context):  # the steps' own spans join the driver's trace
                return run_action(
                    action, params, runtime, journal=journal, origin=origin, cwd=driver[1]
                )

        return _outcome_of(run)

    def resume(
        self, run_id: str, client: Any, journal_ref: JournalRef, driver: tuple[str, str]
    ) -> dict[str, Any]:
        """``resume_run`` here: the run's action rebuilt from the journal (its plugin
        folder), the steps it finished reused, the rest run in this worker."""
        _enter(driver)
        self.runtime = runtime = RuntimeContext(logger=[self.relay], client=client, run_id=run_id)
        runtime.cancel_token.subscribe(self.relay.cancelled)
        return _outcome_of(lambda: resume_run(_open_journal(journal_ref), run_id, runtime))

    def drain(self) -> list[Relayed]:
        return self.relay.drain()

    def cancel(self, reason: str) -> None:
        if self.runtime is not None:
            self.runtime.cancel(reason)


JournalRef = tuple[str, float]
"""How a worker opens the run's journal: an SQLite file's path (or ``FROM_ENV``), and the
lease length."""

FROM_ENV = f'${DATABASE_URL_VARIABLE}'
"""The journal is the database the worker's ``SYNAPSE_DATABASE_URL`` names."""


def journal_ref(journal: Journal) -> tuple[JournalRef, dict[str, str]]:
    """How the worker opens ``journal``, and the environment it needs for that: a
    database URL (its password with it) travels in the worker's environment (the
    actor's ``runtime_env`` ``env_vars``), never as an actor argument, which Ray keeps
    in its task records. The storage index on the worker reads the same variable."""
    if journal.path is not None:
        return (str(journal.path), journal.lease_seconds), {}
    return (FROM_ENV, journal.lease_seconds), {DATABASE_URL_VARIABLE: str(journal.location)}


def _open_journal(ref: JournalRef) -> Journal:
    where, lease = ref
    if where != FROM_ENV:
        return Journal(where, lease_seconds=lease)
    if not os.environ.get(DATABASE_URL_VARIABLE):
        raise JournalError(
            f'this Ray worker has no {DATABASE_URL_VARIABLE}: it should come with the run'
            " (the actor's runtime_env); is something on the node clearing it?"
        )
    return Journal(lease_seconds=lease)


def _without_secrets(
    action: type[BaseAction[Any]], model: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """The params as JSON without their secrets (``SecretStr``), and the secrets, revealed:
    they travel in the actor's environment, not as its arguments (which Ray keeps)."""
    values: dict[str, Any] = model.model_dump(mode='json') if model is not None else {}
    secrets: dict[str, str] = {}
    for name in _secret_fields(action):
        value = getattr(model, name, None)
        if value is not None:
            revealed = value.get_secret_value()
            secrets[name] = revealed.decode() if isinstance(revealed, bytes) else revealed
            values.pop(name, None)
    return values, secrets


def _enter(driver: tuple[str, str]) -> None:
    host, cwd = driver
    if host == socket.gethostname() and os.path.isdir(cwd):
        os.chdir(cwd)  # same machine: relative paths mean what they mean to the driver


def _outcome_of(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """How the run ended, as the driver reads it: its result, or its error made portable."""
    try:
        result = run()
    except RunCancelledError as error:
        return _outcome('cancelled', error)
    except StepExecutionError as error:
        return _outcome('failed', error)
    except (KeyboardInterrupt, SystemExit) as error:
        return {'status': 'cancelled', 'message': f'stopped by {type(error).__name__}'}
    except Exception as error:  # bad params, a plain execute() raising: as themselves
        return {'status': 'error', 'error': _portable(error)}
    return {'status': 'succeeded', 'result': result}


def _portable(error: Exception) -> Exception:
    """The exception if it survives pickling, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f'{type(error).__name__}: {error}')
    return error


def _outcome(status: str, error: StepExecutionError) -> dict[str, Any]:
    return {
        'status': status,
        'step': error.step_name,
        'error': error.result.error,
        'rollback_errors': list(error.rollback_errors),
        'rolled_back': error.rolled_back,
        'reason': getattr(error, 'reason', None),
    }


# --- the driver side -----------------------------------------------------------
def replay(items: list[Relayed], runtime: RuntimeContext) -> None:
    """The worker's events and calls, handed to the driver's loggers as they came."""
    for item in items:
        if not isinstance(item, RunEvent):
            item.show(runtime)
        elif not isinstance(item, StepOverdue):  # that one the driver acts on itself
            for logger in runtime.loggers:
                logger.on_event(item)


class RayExecutor:
    """Runs actions on Ray: ``RayExecutor(address=None).run(ActionClass, params)``.

    With no address (and no ``$RAY_ADDRESS``) a private local Ray instance is
    started; an address that does not answer, or refuses the token, raises
    :class:`RayUnavailableError` within seconds (see :func:`ensure_ray`), and
    the run is journaled as failed with that reason. Progress, events and
    metrics reach the driver's loggers (the same display as a local run).
    Cancelling the driver's runtime (Ctrl-C under ``synapse plugin run``)
    cancels the remote run; the driver waits up to ``stop_timeout`` seconds
    for the worker's rollback. If the worker dies mid-run, the driver rolls
    the run back from the journal and reports the step that was running
    (``on_worker_loss='rollback'``), or, with ``'keep'``, leaves it ``crashed``
    once its lease has run out, for ``synapse runs rollback`` or ``resume``.

    ``resources``: what the run's actor asks the cluster for (CPUs, GPUs,
    memory, custom resources). On a cluster of more than one node, a journal
    or storage only this machine sees is refused before the run starts
    (:class:`SharedStateRequiredError`), unless ``shared_fs``. ``cwd``: where
    the run's relative paths mean files, as journaled (default: here).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        journal: Journal | None = None,
        console: bool = True,
        stop_timeout: float = 60.0,
        poll_interval: float = 0.1,
        resources: Resources | None = None,
        shared_fs: bool = False,
        on_worker_loss: str = 'rollback',
        cwd: str | None = None,
    ) -> None:
        check_ray_address(address)  # a malformed address is bad input, before any run
        if on_worker_loss not in ('rollback', 'keep'):
            raise ValueError(f"on_worker_loss must be 'rollback' or 'keep', not {on_worker_loss!r}")
        self.address = address
        self.num_cpus = num_cpus
        self.journal = journal if journal is not None else Journal()
        self.console = console
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.resources = resources if resources is not None else Resources()
        self.shared_fs = shared_fs
        self.on_worker_loss = on_worker_loss
        self.cwd = cwd

    def run(
        self,
        action: type[BaseAction[Any]],
        params: Mapping[str, Any],
        *,
        ctx: RuntimeContext | None = None,
        origin: ActionOrigin | None = None,
    ) -> dict[str, Any]:
        model = action.validate_params(params)  # bad input stays local
        values, secrets = _without_secrets(action, model)
        if ctx is None:
            named = origin.action if origin is not None else action.__name__
            ctx = default_runtime(console=self.console, action=named)
        # Starting Ray here: the plugin folder travels as the job's working_dir
        # (a cluster) or is put on the workers' import path (a local instance).
        # Ray already up: a worker on this machine finds the folder where it is.
        working_dir = origin.plugin_path if origin is not None else None
        try:
            ensure_ray(self.address, num_cpus=self.num_cpus, working_dir=working_dir)
            self._check_cluster(ctx.client)
        except BaseException as error:  # the run id may be out already: journal why it never ran
            self._journal_unstarted(action, values, ctx.run_id, origin, error)
            raise
        _ship_by_value(action)
        where, env = journal_ref(self.journal)
        if secrets:
            env[SECRETS_VARIABLE] = json.dumps(secrets)
        host = self._host(env)
        with ctx:
            driver = (socket.gethostname(), self.cwd or os.getcwd())
            ref = host.run.remote(
                ray.cloudpickle.dumps(action),
                values,
                ctx.run_id,
                ctx.client,
                where,
                origin,
                driver,
                open_traces(ctx),
            )
            outcome = self._follow(host, ref, ctx)
        return self._conclude(outcome, ctx, action)

    def _check_cluster(self, client: Any) -> None:
        """A cluster of several nodes runs the steps where this machine's files are not."""
        nodes = sum(1 for node in ray.nodes() if node.get('Alive'))
        if nodes > 1:
            what = f'a run on a Ray cluster of {nodes} nodes'
            check_reachable(self.journal, client, shared_fs=self.shared_fs, what=what)

    def _host(self, env: dict[str, str]) -> Any:
        """The run's actor, with the resources asked for and the environment it needs."""
        options = self.resources.actor_options()
        if env:
            options['runtime_env'] = {'env_vars': env}
        return RunHost.options(**options).remote()  # type: ignore[attr-defined]

    def _journal_unstarted(
        self,
        action: type[BaseAction[Any]],
        params: dict[str, Any],
        run_id: str,
        origin: ActionOrigin | None,
        error: BaseException,
    ) -> None:
        """Ray never ran the run (not reachable, a refused token, Ctrl-C while it
        started): it is journaled all the same, ``failed`` (``cancelled``) with why."""
        status = 'failed' if isinstance(error, Exception) else 'cancelled'
        try:
            try:
                self.journal.get_run(run_id)
            except UnknownRunError:
                self.journal.start_run(
                    run_id,
                    entrypoint=action.entrypoint(),
                    params=params,
                    action=origin.action if origin else None,
                    plugin_path=origin.plugin_path if origin else None,
                )
            self.journal.set_run_status(run_id, status, describe_exception(error))
        except JournalError:
            pass  # the journal's own trouble must not hide why Ray failed

    def resume(self, run_id: str, *, ctx: RuntimeContext | None = None) -> dict[str, Any]:
        """:func:`~synapse_sdk.execution.resume_run` of a journaled run, on Ray.

        A worker rebuilds the run's action from the journal (its plugin folder, which
        the worker must reach, as the journal), reuses the steps the run finished and
        runs the rest, with the live display here; a worker that dies is rolled back
        from the journal, as in :meth:`run`. An unknown run is refused before Ray starts.
        """
        run = self.journal.get_run(run_id)
        if ctx is None:  # on the run's own storage, as recorded
            ctx = default_runtime(run_id, console=self.console, storage=run.storage)
        ensure_ray(self.address, num_cpus=self.num_cpus, working_dir=run.plugin_path)
        self._check_cluster(ctx.client)
        where, env = journal_ref(self.journal)
        host = self._host(env)
        with ctx:
            driver = (socket.gethostname(), os.getcwd())
            ref = host.resume.remote(run_id, ctx.client, where, driver)
            outcome = self._follow(host, ref, ctx)
        return self._conclude(outcome, ctx, None)

    def _follow(self, host: Any, ref: Any, ctx: RuntimeContext) -> dict[str, Any]:
        cancelled_at: float | None = None
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=self.poll_interval)
                events = ray.get(host.drain.remote())
                replay(events, ctx)
                if ready:
                    return dict(ray.get(ref))
                overdue = [e for e in events if isinstance(e, StepOverdue)]
                if overdue:  # stuck past its timeout where no thread can stop it: end it
                    ray.kill(host)
                    step, limit = overdue[0].step.name, overdue[0].limit
                    return {
                        'status': 'killed',
                        'message': f"step '{step}' exceeded its timeout of {limit:g}s and "
                        'did not stop; its Ray worker was killed',
                    }
                if ctx.cancel_token.cancelled and cancelled_at is None:
                    cancelled_at = time.monotonic()
                    host.cancel.remote(ctx.cancel_token.reason or 'cancelled')
                if cancelled_at is not None and time.monotonic() - cancelled_at > self.stop_timeout:
                    ray.kill(host)
                    return {'status': 'killed', 'message': 'the worker did not stop in time'}
        except RayActorError as error:
            return {'status': 'crashed', 'message': _first_line(error)}
        except RayTaskError as error:  # raised by Ray around the run, not by a step
            return {'status': 'error', 'error': _cause(error)}
        except (KeyboardInterrupt, SystemExit):
            ray.kill(host)
            self._mark_pending(ctx.run_id)
            raise

    def _conclude(
        self, outcome: dict[str, Any], ctx: RuntimeContext, action: type[BaseAction[Any]] | None
    ) -> dict[str, Any]:
        status = outcome['status']
        if status == 'error':
            raise outcome['error']
        if status == 'succeeded':  # a run of steps names its run_id (the driver's) itself
            return dict(outcome['result'])
        if status in ('failed', 'cancelled'):
            failed = StepResult(success=False, error=outcome['error'], step_name=outcome['step'])
            undone = outcome.get('rolled_back')
            if status == 'cancelled' and outcome.get('step'):
                raise RunCancelledError(
                    outcome['step'],
                    failed,
                    outcome['rollback_errors'],
                    outcome['reason'] or '',
                    undone,
                )
            if status == 'failed':
                raise StepExecutionError(
                    outcome['step'], failed, outcome['rollback_errors'], undone
                )
            raise KeyboardInterrupt(outcome.get('message', 'cancelled'))
        # the worker died or was killed: roll back from the journal, here (or leave it)
        step = self._running_step(ctx.run_id) or '?'
        if status == 'crashed' and self.on_worker_loss == 'keep':
            raise StepExecutionError(step, self._left_crashed(ctx.run_id, outcome, step), [])
        report = self._rollback_after_crash(ctx)
        if status == 'killed':
            failed = StepResult(success=False, error=outcome['message'], step_name=step)
            reason = ctx.cancel_token.reason
            if reason is None:  # killed for its timeout: a failure
                raise StepExecutionError(step, failed, report)
            self._mark_cancelled(ctx.run_id, reason, report)
            raise RunCancelledError(step, failed, report, reason)
        failed = StepResult(
            success=False,
            error=f'the Ray worker died while running it ({outcome.get("message")})',
            step_name=step,
        )
        raise StepExecutionError(step, failed, report)

    def _running_step(self, run_id: str) -> str | None:
        try:
            steps = self.journal.steps(run_id)
        except JournalError:
            return None
        started = [s.name for s in steps if s.status in ('started', 'failed')]
        return started[-1] if started else None

    def _await_crashed(self, run_id: str) -> str | None:
        """The run's status once the journal no longer sees it active: the worker process
        may take a moment to go; on another machine, the run is crashed only once its
        lease has run out (journal leases). None: the run was not journaled."""
        deadline = time.monotonic() + max(10.0, self.journal.lease_seconds + LEASE_MARGIN_S + 2)
        status = 'running'
        while time.monotonic() < deadline:
            try:
                record = self.journal.get_run(run_id)
            except JournalError:
                return None
            status = record.status
            if not record.active:
                break
            time.sleep(0.1)
        return status

    def _left_crashed(self, run_id: str, outcome: dict[str, Any], step: str) -> StepResult:
        """The worker died: nothing is undone here; the journal keeps all it needs."""
        status = self._await_crashed(run_id)
        error = (
            f'the Ray worker died while running it ({outcome.get("message")}); run {run_id} is'
            f' {status}, nothing was rolled back: `synapse runs rollback {run_id}` undoes'
            f' it, `synapse runs resume {run_id}` finishes it'
        )
        return StepResult(success=False, error=error, step_name=step)

    def _rollback_after_crash(self, ctx: RuntimeContext) -> list[str]:
        if self._await_crashed(ctx.run_id) is None:
            return ['the run was not journaled: nothing to roll back from']
        try:
            report = rollback_run(self.journal, ctx.run_id, ctx)
        except (JournalError, ActionError) as error:
            return [f'rollback after the crash failed: {error}']
        return list(report['errors'])

    def _mark_cancelled(self, run_id: str, reason: str, errors: list[str]) -> None:
        """A cancelled run whose worker was killed and whose rollback then succeeded ends
        ``cancelled``, as it would have had its step stopped in time (a failed rollback
        stays ``rollback_failed``, for ``synapse runs rollback``)."""
        if errors:
            return
        why = (
            f'the run was cancelled ({reason}); its step did not stop within'
            f' {self.stop_timeout:g}s, so its Ray worker was killed and the run rolled back'
        )
        with contextlib.suppress(JournalError):  # rolled back: keep that, whatever the journal
            self.journal.set_run_status(run_id, 'cancelled', why)

    def _mark_pending(self, run_id: str) -> None:
        try:
            if self.journal.get_run(run_id).active:
                self.journal.set_run_status(
                    run_id,
                    'cancelled',
                    f'stopped on the driver; roll back with: synapse runs rollback {run_id}',
                )
        except JournalError:
            pass


# --- context.map(..., backend='ray') -------------------------------------------
class RayMapBackend:
    """Items as Ray tasks; results collected in batches as they finish."""

    def run(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        max_workers: int | None,
        stop: threading.Event,
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        ensure_ray()
        _ship_by_value(fn)
        shipped = ray.put(fn)  # once, not with every item
        caller = (socket.gethostname(), os.getcwd())
        return windowed(
            items,
            max_workers or len(items) or 1,
            stop,
            lambda item: _apply.remote(shipped, item, caller),
            _settle,
            ray.cancel,
        )


@ray.remote  # type: ignore[untyped-decorator]
def _apply(fn: Callable[[Any], Any], item: Any, caller: tuple[str, str]) -> Any:
    """``fn(item)`` in the caller's cwd when on its host: relative paths then mean
    what they mean to the caller (a task's own cwd is the job's working_dir)."""
    host, cwd = caller
    here = os.getcwd()
    if host != socket.gethostname() or cwd == here or not os.path.isdir(cwd):
        return fn(item)
    os.chdir(cwd)
    try:
        return fn(item)
    finally:
        os.chdir(here)  # the worker runs the job's other tasks next


def _cause(error: RayTaskError) -> BaseException:
    """The item's own exception, not Ray's wrapper with the remote traceback in its text."""
    cause = getattr(error, 'cause', None)
    return cause if isinstance(cause, BaseException) else error.as_instanceof_cause()


def _settle(refs: list[Any]) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Wait for one task, take all that are done by then, fetch their results in one go."""
    ready, rest = ray.wait(refs, num_returns=1)
    if rest:
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        ready += more
    try:
        values = ray.get(ready)
    except RayTaskError:  # one of them failed: find which, one by one
        for ref in ready:
            try:
                yield ref, ray.get(ref), None
            except RayTaskError as error:
                yield ref, None, _cause(error)
        return
    yield from ((ref, value, None) for ref, value in zip(ready, values, strict=True))


register_backend('ray', RayMapBackend)  # the class builds a backend: a factory
