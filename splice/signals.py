"""SIGTERM and SIGHUP handled like Ctrl-C, for the duration of a block.

A job scheduler, `timeout` or a closed terminal stops a run with SIGTERM or SIGHUP; Python's
default is to die on the spot, leaving the temporary output behind and saying nothing. Inside
`terminate_as_interrupt()` either signal raises `Terminated` (a KeyboardInterrupt) in the main
thread instead, so the same clean-up as for Ctrl-C runs; the CLI exits with `exit_status`
(128 + the signal number: 143 for SIGTERM, 129 for SIGHUP). The previous handlers come back
when the block ends.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by `signum`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_status = 128 + signum
        self.name = signal.Signals(signum).name


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM/SIGHUP raise Terminated in the main thread (once: a second signal
    while clean-up runs is ignored). Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum, frame):
        nonlocal raised
        if raised:
            return
        raised = True
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
