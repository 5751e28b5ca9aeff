"""Signals held while a short critical step runs (a server's clean-up, an inject's moves)."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def deferred_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Signals that arrive inside the block are held and re-delivered after it. Python runs handlers in the
    main thread whichever thread the OS chose, so blocking them with pthread_sigmask in one thread does not
    hold them: the handlers themselves are swapped (possible in the main thread only; elsewhere the block
    runs as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda n, _f: held.append(n)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])
