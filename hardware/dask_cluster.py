"""A Dask distributed cluster as a place to run independent tasks (``maestro validate --scheduler``).

The connection, the check that every worker runs the same code, the submission and the
collection of results are network I/O, so they live here; what runs on the cluster (one
validation case per task) is the application's. Nothing here knows about validation.

Robustness comes from the scheduler: a task whose worker is lost (killed, out of memory,
the node gone) is re-run on another worker, up to ``distributed.scheduler.allowed-failures``
times (default 3); after that its future raises :class:`distributed.KilledWorker`, which
:func:`map_unordered` hands to the caller as that item's outcome, so the other items still
complete. If the scheduler itself is lost, the items not yet done are handed over as
failed, with the reason, and the ones done are kept.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hardware.errors import InputError

T = TypeVar("T")

#: How long to wait for the scheduler to answer, s.
CONNECT_TIMEOUT_S = 10.0
#: How long to wait for the first worker to join an empty scheduler, s.
WORKERS_TIMEOUT_S = 60.0

_INSTALL_HINT = "needs dask.distributed: install the cluster extra (pip install 'maestro-gating[cluster]')"


def _distributed() -> Any:
    """The ``distributed`` module, or one clear refusal when it is not installed."""
    try:
        import distributed
    except ImportError:
        raise InputError("--scheduler", "dask.distributed", _INSTALL_HINT) from None
    return distributed


@contextmanager
def connect(
    scheduler: str,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    workers_timeout_s: float = WORKERS_TIMEOUT_S,
) -> Iterator[Any]:
    """A client of the Dask scheduler at ``scheduler``, closed on exit.

    Parameters
    ----------
    scheduler : str
        The scheduler's address (``tcp://host:8786``, or ``host:8786``) or the path of
        the JSON file ``dask scheduler --scheduler-file`` wrote.
    connect_timeout_s : float
        Seconds to wait for the scheduler to answer.
    workers_timeout_s : float
        Seconds to wait for at least one worker to be connected to it.

    Yields
    ------
    distributed.Client

    Raises
    ------
    InputError
        ``distributed`` is not installed, the scheduler file cannot be read, no scheduler
        answers, or no worker joins in time. One line naming the address and the fix.
    """
    distributed = _distributed()
    # The client logs each failed reconnection with a traceback; what it means reaches the
    # user as the affected cases' one-line failures instead.
    quiet = [logging.getLogger(name) for name in ("distributed.client", "distributed.comm")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        with _client(distributed, scheduler, connect_timeout_s, workers_timeout_s) as client:
            yield client
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


@contextmanager
def _client(distributed: Any, scheduler: str, connect_timeout_s: float, workers_timeout_s: float) -> Iterator[Any]:
    as_file = Path(scheduler)
    try:
        if scheduler.endswith(".json") or as_file.is_file():
            if not as_file.is_file():
                raise InputError(scheduler, "--scheduler", "no such scheduler file (dask scheduler "
                                 "--scheduler-file writes it)")
            client = distributed.Client(scheduler_file=str(as_file), timeout=connect_timeout_s,
                                        set_as_default=False)
        else:
            client = distributed.Client(scheduler, timeout=connect_timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(scheduler, "--scheduler", f"no Dask scheduler answered within {connect_timeout_s:g} s "
                         f"({type(exc).__name__}: {exc}); start one with 'dask scheduler' and give its "
                         "address, e.g. tcp://10.0.0.5:8786") from None
    try:
        try:
            client.wait_for_workers(1, timeout=workers_timeout_s)
        except (TimeoutError, OSError):
            raise InputError(scheduler, "--scheduler", f"no worker joined the scheduler within "
                             f"{workers_timeout_s:g} s; start workers with 'dask worker {scheduler}'") from None
        yield client
    finally:
        client.close()


def check_same_code(client: Any, fingerprint: Callable[[], str], scheduler: str) -> int:
    """Refuse a cluster whose workers run other code than this process.

    Parameters
    ----------
    client : distributed.Client
    fingerprint : callable
        Returns a digest of the code that computes the results; importable on the workers
        (it is sent by reference).
    scheduler : str
        The address, for the message.

    Returns
    -------
    int
        The number of workers checked.

    Raises
    ------
    InputError
        A worker cannot import the code, or its fingerprint differs (results would not be
        the ones this installation computes).
    """
    ours = fingerprint()
    try:
        theirs: dict[str, str] = client.run(fingerprint)
    except Exception as exc:  # noqa: BLE001 - whatever a worker raised, it cannot run our code
        raise InputError(scheduler, "--scheduler", f"a worker cannot run this installation's code "
                         f"({type(exc).__name__}: {exc}); install the same maestro-gating on every worker") from None
    differ = sorted(addr for addr, fp in theirs.items() if fp != ours)
    if differ:
        raise InputError(scheduler, "--scheduler", f"worker(s) {', '.join(differ)} run different maestro-gating "
                         "code from this client; install the same version on every worker")
    return len(theirs)


def map_unordered(
    client: Any,
    func: Callable[..., T],
    items: Sequence[Any],
    names: Sequence[str],
    on_done: Callable[[int, T | None, BaseException | None], None],
    **kwargs: Any,
) -> None:
    """Run ``func(item, **kwargs)`` for every item on the cluster, one task each.

    ``on_done(index, result, None)`` is called as each task finishes, in completion
    order, or ``on_done(index, None, exception)`` when its task failed for good (a
    :class:`distributed.KilledWorker` after too many lost workers, an exception ``func``
    raised, or the connection to the scheduler lost). Every index is reported once.

    Parameters
    ----------
    client : distributed.Client
    func : callable
        Sent by reference: it must be importable on the workers.
    items : sequence
        One task per item.
    names : sequence of str
        A name per item, for the task's key (shown on the Dask dashboard).
    on_done : callable
    **kwargs
        Passed to every call (small values: they travel with each task).
    """
    distributed = _distributed()
    run = uuid.uuid4().hex[:8]
    keys = [f"maestro-{name}-{run}-{i}" for i, name in enumerate(names)]
    # pure=False: a re-run must compute again, not return a result the scheduler kept.
    futures = client.map(func, list(items), key=keys, pure=False, **kwargs)
    index = {f.key: i for i, f in enumerate(futures)}
    reported: set[int] = set()
    lost: BaseException | None = None
    try:
        for fut in distributed.as_completed(futures, loop=client.loop):
            i = index[fut.key]
            try:
                value = fut.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - a task's failure is that item's outcome
                reported.add(i)
                on_done(i, None, exc)
                continue
            reported.add(i)
            on_done(i, value, None)
    except (OSError, TimeoutError) as exc:
        lost = exc
    finally:
        pending = [f for f in futures if index[f.key] not in reported]
        if pending:
            try:
                client.cancel(pending)
            except Exception:  # noqa: BLE001 - the scheduler may be gone; nothing left to cancel
                pass
    for i in range(len(items)):
        if i not in reported:
            on_done(i, None, lost or ConnectionError("the task was not completed: the scheduler connection was lost"))


def one_line(error: BaseException) -> str:
    """A task's failure as one line: its type and its message's lines joined."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
