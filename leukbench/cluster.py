"""The Dask cluster of a run: ``scheduler=`` / ``client=`` turned into a ``distributed.Client``.

Extraction and the classifier battery run on an existing Dask cluster when
given a ``scheduler`` address (``"tcp://HOST:8786"``, started with
``dask scheduler`` / dask-jobqueue / dask-kubernetes), ``"local:N"`` (a
``LocalCluster`` of N worker processes with one thread each, for trying it
out), or a ``client`` the caller made. :func:`connect` is the one place that
opens and closes it: a cluster it starts and a client it connects are closed
at the end; a client passed in is used and left open. ``dask[distributed]`` is
optional (``pip install "leukbench[dask]"``) and imported only here, on use.

Example
-------
>>> with connect() as client:  # neither given: no cluster, the run stays local
...     client is None
True
>>> parse_scheduler("local:4"), parse_scheduler("tcp://10.0.0.5:8786")
(('local', 4), ('address', 'tcp://10.0.0.5:8786'))
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Optional, Tuple

from ._validation import invalid
from .exceptions import ClusterError, MissingDependencyError

__all__ = ["CONNECT_TIMEOUT", "connect", "parse_scheduler", "require_distributed"]

#: Seconds to wait for a scheduler before the run fails with :class:`ClusterError`.
CONNECT_TIMEOUT = 10.0

#: Protocols of dask.distributed's comms that an address may start with.
_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
_ADDRESS = re.compile(rf"^(?:{'|'.join(_PROTOCOLS)})://\S+$")
_LOCAL = re.compile(r"^local:(\d+)$")
_SCHEDULER_FORMS = "'tcp://HOST:PORT' (a running scheduler) or 'local:N' (a local cluster of N worker processes)"


def require_distributed():
    """The ``distributed`` module, or a one-line :class:`MissingDependencyError` naming the extra."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError('running on a Dask cluster needs dask.distributed: '
                                     'pip install "leukbench[dask]"') from None
    return distributed


def parse_scheduler(scheduler: str) -> Tuple[str, Any]:
    """``("local", N)`` for ``"local:N"``, ``("address", scheduler)`` for a scheduler address.

    Raises
    ------
    InvalidParameterError
        Naming ``scheduler`` and the two forms it takes.

    Example
    -------
    >>> parse_scheduler("local:0")
    Traceback (most recent call last):
    ...
    leukbench.exceptions.InvalidParameterError: scheduler must be 'tcp://HOST:PORT' (a running scheduler) \
or 'local:N' (a local cluster of N worker processes), with N at least 1 (got 'local:0')
    """
    text = scheduler.strip() if isinstance(scheduler, str) else scheduler
    local = _LOCAL.match(text) if isinstance(text, str) else None
    if local and int(local.group(1)) >= 1:
        return "local", int(local.group(1))
    if isinstance(text, str) and _ADDRESS.match(text):
        return "address", text
    raise invalid("scheduler", f"must be {_SCHEDULER_FORMS}, with N at least 1 (got {scheduler!r})")


@contextlib.contextmanager
def connect(scheduler: Optional[str] = None, client=None) -> Iterator[Optional[Any]]:
    """The ``distributed.Client`` of a run (``None`` when neither is given: the run stays local).

    Parameters
    ----------
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` of a running scheduler, or ``"local:N"``.
    client : distributed.Client, optional
        A client of the caller's; used as it is and not closed.

    Raises
    ------
    InvalidParameterError
        For a malformed ``scheduler``, both given, or a ``client`` that is no
        ``distributed.Client``.
    MissingDependencyError
        When ``dask[distributed]`` is not installed.
    ClusterError
        When the scheduler cannot be reached within :data:`CONNECT_TIMEOUT`
        seconds (the message names the address).
    """
    if scheduler is None and client is None:
        yield None
        return
    if scheduler is not None and client is not None:
        raise invalid("client", "and scheduler are both given; pass one of them")
    if client is not None:
        distributed = require_distributed()
        if not isinstance(client, distributed.Client):
            raise invalid("client", f"must be a dask.distributed Client (got {type(client).__name__})")
        yield client
        return
    kind, value = parse_scheduler(scheduler)
    distributed = require_distributed()
    with contextlib.ExitStack() as stack:
        if kind == "local":
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=value, threads_per_worker=1, processes=True, dashboard_address=":0"))
            address = cluster
        else:
            address = value
        try:
            own = distributed.Client(address, timeout=CONNECT_TIMEOUT)
        except OSError as exc:  # distributed raises OSError("Timed out trying to connect ...")
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} ({_first_line(exc)}); start it "
                               "(dask scheduler, dask-jobqueue ...) or check --scheduler") from None
        stack.enter_context(own)
        yield own


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
