"""SIGTERM as Ctrl-C: what the command line does while it runs, so that a kill keeps finished work.

SLURM, Kubernetes and ``timeout`` stop a program with SIGTERM, whose default
action ends the process at once: the features being buffered and the workers'
clean-up would be lost. :func:`terminate_as_interrupt` installs, for the
duration of a ``with`` block, a handler that raises :class:`Terminated` -- a
:class:`KeyboardInterrupt` -- in the main thread, so every path that keeps
finished work on Ctrl-C (the extraction's flush, the fold cache, stopping the
worker processes) runs for SIGTERM too. The previous handler comes back
afterwards; the library itself installs no handler (only the command line
uses this).

Example
-------
>>> import os, signal, time
>>> with terminate_as_interrupt():
...     try:
...         os.kill(os.getpid(), signal.SIGTERM)
...         time.sleep(5)  # the handler raises here, at once
...     except Terminated:
...         print("terminated")
terminated
>>> signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
True
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["EXIT_TERMINATED", "Terminated", "terminate_as_interrupt"]

#: Exit status after SIGTERM: 128 + 15, as a shell reports a process ended by it.
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C, so that finished work is kept."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once).

    A second SIGTERM while the first one's clean-up runs is ignored, so that
    it cannot cut the flush short (SIGKILL still ends the process). Outside
    the main thread, where Python cannot install handlers, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def handler(signum, frame):
        if not raised:
            raised.append(signum)
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
