"""One BLAS/OpenMP thread per job: the same numbers whatever the machine's core count.

:func:`threadpool_limits` (threadpoolctl) only limits the libraries already loaded when it
is entered, and the stage scripts import numpy and scipy lazily, after it; OpenBLAS, MKL
and OpenMP read their thread counts from the environment when they load. So both are set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: the variables the BLAS and OpenMP runtimes read when they load
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the body with one thread in every BLAS/OpenMP library, loaded before or inside.

    Libraries first loaded inside keep one thread after the body (they read the
    environment once); the environment itself is restored.
    """
    from threadpoolctl import threadpool_limits

    saved = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
