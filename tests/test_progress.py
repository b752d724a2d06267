"""Progress lines of the long loops: rate-limited, silent on short runs, never a change of
a number computed."""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pytest

import twostage
from twostage import progress
from twostage.optim import newton
from twostage.progress import Progress


def _progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("twostage") and r.levelno == logging.INFO
    ]


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for stage in a:
        da, db = a[stage], b[stage]
        assert sorted(da.variables) == sorted(db.variables), stage
        for name in da.variables:
            va, vb = da[name].values, db[name].values
            assert va.dtype == vb.dtype and va.shape == vb.shape, (stage, name)
            if va.dtype.kind in "fciub":
                assert va.tobytes() == vb.tobytes(), (stage, name)
            else:
                assert np.array_equal(va, vb), (stage, name)


def test_mixture_run_logs_progress_and_progress_changes_no_number(caplog, monkeypatch):
    args = ("gmm", {"n": 2000, "alpha": 1})
    caplog.set_level(logging.INFO, logger="twostage")
    start = time.monotonic()
    quiet = twostage.run_point(*args, replicates=4, ks_bootstrap=0)
    if time.monotonic() - start < progress.INTERVAL:  # a short run stays silent
        assert _progress_lines(caplog) == []
    caplog.clear()
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    loud = twostage.run_point(*args, replicates=4, ks_bootstrap=0)
    lines = _progress_lines(caplog)
    for start_of_line in ("EM: ", "EM: done, 4/4 replicates", "Fisher sums: ", "G_L sums: "):
        assert any(line.startswith(start_of_line) for line in lines), start_of_line
    assert any("still running" in line for line in lines)
    assert {r.name for r in caplog.records} >= {"twostage.cases.gmm.em"}
    _assert_bitwise_equal(quiet, loud)


def test_newton_logs_its_iterations(caplog, monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="twostage")
    scale = np.array([1.0, 2.0, 3.0])

    def value(x, idx):
        return np.sum(scale * x**4, axis=1)

    def derivatives(x, idx, hessian):
        hess = np.einsum("bi,ij->bij", 12.0 * scale * x**2, np.eye(3)) if hessian else None
        return value(x, idx), 4.0 * scale * x**3, hess

    res = newton(np.ones((2, 3)), value, derivatives, 1e-8, 50, desc="toy Newton")
    lines = _progress_lines(caplog)
    assert lines[0].startswith("toy Newton: 0/50 iterations, 2 of 2 still running, ")
    assert lines[-1].startswith(f"toy Newton: done, {res['n_iter'].max()}/50 iterations")


def test_progress_is_rate_limited_and_silent_when_short(caplog):
    caplog.set_level(logging.INFO, logger="twostage")
    p = Progress("loop", total=10**5, unit="steps")
    for i in range(10**5):  # cheap: no timing asserted (machines are noisy)
        p.update(i, running=3)
    p.done()
    assert p.lines == 0 or time.monotonic() - p.start >= p.interval
    if p.lines == 0:
        assert _progress_lines(caplog) == []

    p = Progress("loop", unit="chunks", detail="{left} left", interval=0.0)
    p.update(1, left=2)
    p.update(2, wrong=1)  # a bad template never raises
    p.done(3, left=0)
    assert _progress_lines(caplog)[-3:] == [
        "loop: 1 chunks, 2 left, 0 s",
        "loop: 2 chunks, wrong 1, 0 s",
        "loop: done, 3 chunks, 0 left, 0 s",
    ]


def test_configure_adds_one_handler_with_a_short_format():
    logger = logging.getLogger("twostage")
    saved = logger.handlers[:], logger.level
    logger.handlers.clear()
    try:
        stream = io.StringIO()
        assert progress.configure(stream) is logger
        progress.configure(io.StringIO())  # a second call adds nothing
        assert len(logger.handlers) == 1
        logging.getLogger("twostage.cases.gmm.em").info("EM: 1/2 replicates finished, 3 s")
        line = stream.getvalue()
        assert line.endswith(" twostage.cases.gmm.em: EM: 1/2 replicates finished, 3 s\n")
        assert len(line.split(" ")[0]) == len("12:04:31")
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
