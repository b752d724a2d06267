"""Progress lines of the long computations, at most one every ``INTERVAL`` seconds.

A long loop creates a :class:`Progress` and calls :meth:`Progress.update` once per
iteration (or chunk); a line is logged (level INFO) only when at least ``INTERVAL``
seconds of wall time have passed since the previous one (or since the start), so a run
shorter than ``INTERVAL`` stays silent, and :meth:`Progress.done` writes a closing line
only if a progress line was written. A line reads::

    12:04:31 twostage.cases.gmm.em: EM: 48/200 replicates finished, group of 4 at
    iteration 40/1000 (3 still running), 21 s
    12:05:02 twostage.cases.gmm.em: EM: done, 200/200 replicates finished, 52 s

(one line each). Lines come from the mixture's EM (``twostage.cases.gmm.em``), the
batched Newton method of the spectral and multi-task estimators (``twostage.optim``), the
mixture's Fisher and G_L sums (``twostage.cases.gmm.theory``), and the generalised
chi-square's CDF and quantiles (``twostage.gchisq``).

The check is one ``time.monotonic()`` call and a comparison (well under a microsecond),
the message is only formatted when a line is written, and nothing but counters is read:
progress never changes a number computed.

Logging configuration. The library configures no logging on import: without a handler,
Python drops INFO records, so the lines appear only once an application asks for them,
e.g. by :func:`configure` (a handler on the ``twostage`` logger writing
``HH:MM:SS name: message`` to stderr, called for the stage scripts), by
``logging.basicConfig(level=logging.INFO)``, or by a handler of its own on the
``twostage`` logger (each module logs to ``twostage.<module>``). Tests set ``INTERVAL``
(read when a :class:`Progress` is created) or pass ``interval=``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["INTERVAL", "Progress", "configure"]

#: Smallest wall time (seconds) between two progress lines of one :class:`Progress`.
INTERVAL = 10.0
#: Format of the lines written by the handler of :func:`configure`.
FORMAT = "%(asctime)s %(name)s: %(message)s"
#: ... and of their time stamps.
DATE_FORMAT = "%H:%M:%S"

_LOG = logging.getLogger(__name__)


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send the ``twostage`` log records of ``level`` and above to ``stream`` (default:
    ``sys.stderr`` at the time of the call), one line each as ``HH:MM:SS name: message``.

    Does nothing if the ``twostage`` logger already has a handler (calling it twice adds
    one handler only). Records still propagate to the root logger, so an application
    that also configured the root logger gets them twice. Returns the ``twostage`` logger.
    """
    logger = logging.getLogger("twostage")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr if stream is None else stream)
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        handler.setLevel(level)
        logger.addHandler(handler)
        logger.setLevel(level)
    return logger


def _duration(seconds: float) -> str:
    """``"21 s"``, ``"3 min 05 s"`` or ``"2 h 07 min"``."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s // 60 % 60:02d} min"


class Progress:
    """Rate-limited progress lines of one loop (see the module docstring).

    Parameters
    ----------
    desc : str
        What runs, the start of every line (``"EM"``).
    total : int, optional
        The count at completion, shown as ``done/total``.
    unit : str
        What is counted (``"iterations"``, ``"rows"``, ...).
    detail : str, optional
        A template formatted with the keywords of :meth:`update` (only when a line is
        written), e.g. ``"{running} still running"``; without it they are shown as
        ``key value``. The closing line of :meth:`done` has it only if given keywords.
    logger : logging.Logger, optional
        Where to log (default ``twostage.progress``).
    interval : float, optional
        Seconds between lines (default: the module's ``INTERVAL`` at creation).
    """

    __slots__ = ("desc", "total", "unit", "detail", "logger", "interval", "lines", "count",
                 "start", "_last")  # fmt: skip

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "iterations",
        detail: str | None = None,
        logger: logging.Logger | None = None,
        interval: float | None = None,
    ) -> None:
        self.desc, self.total, self.unit, self.detail = desc, total, unit, detail
        self.logger = _LOG if logger is None else logger
        self.interval = INTERVAL if interval is None else float(interval)
        #: progress lines written so far
        self.lines = 0
        #: ``time.monotonic()`` at creation
        self.start = self._last = time.monotonic()
        #: the last count recorded by :meth:`update`
        self.count: Any = 0

    def update(self, done: Any, **info: Any) -> None:
        """Record the count ``done`` (and the keywords of ``detail``); log a line if
        ``interval`` seconds have passed since the last one."""
        self.count = done
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self.lines += 1
        self.logger.info("%s", self._message(done, info, now))

    def done(self, count: Any = None, **info: Any) -> None:
        """Log a closing line (the count, default the last one recorded, the keywords of
        ``detail`` if given, the total time) if a progress line was written."""
        if self.lines:
            count = self.count if count is None else count
            self.logger.info("%s", self._message(count, info, time.monotonic(), "done, "))

    def _message(self, done: Any, info: dict[str, Any], now: float, prefix: str = "") -> str:
        count = f"{done}/{self.total}" if self.total is not None else f"{done}"
        parts = [f"{self.desc}: {prefix}{count} {self.unit}"]
        if info:
            try:
                text = self.detail.format(**info) if self.detail else ""
            except (KeyError, IndexError, ValueError, TypeError):  # a bad template: no error
                text = ""
            parts.append(text or ", ".join(f"{k} {v}" for k, v in info.items()))
        parts.append(_duration(now - self.start))
        return ", ".join(parts)
