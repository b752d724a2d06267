r"""Generalized chi-square distribution (weighted sum of independent central chi-squares).

The law

.. math::

    Q = c + \sum_{l=1}^{L} w_l \, \chi^2_{k_l},

with independent central chi-squares, is the asymptotic law of a scaled excess risk
(the weights are eigenvalues of a "sandwich" matrix). :class:`GeneralizedChiSquare` gives
its moments, exact sampling, and a CDF accurate to about ``1e-10`` absolute, computed by

* **Ruben (1962)**: for positive weights (negative ones by reflection), the mixture
  representation

  .. math::

      F(x) = \sum_{j \ge 0} a_j \, P\big(\chi^2_{p + 2j} \le (x - c) / \beta\big),
      \qquad p = \sum_l k_l,

  with :math:`\beta = \min_l w_l`. With this choice every :math:`a_j \ge 0` and
  :math:`\sum_j a_j = 1` (the :math:`a_j` are the probabilities of a sum of independent
  negative binomial counts), so truncating after :math:`J` terms makes an error of at most
  :math:`1 - \sum_{j<J} a_j`, which the series drives below ``1e-12``.

* **Imhof (1961)**: numerical inversion of the characteristic function, valid for weights
  of any sign,

  .. math::

      P(Q > x) = \frac12 + \frac1\pi \int_0^\infty
      \frac{\sin\theta(u)}{u\,\rho(u)}\,du, \qquad
      \theta(u) = \tfrac12 \sum_l k_l \arctan(w_l u) - \tfrac12 (x - c) u, \qquad
      \rho(u) = \prod_l (1 + w_l^2 u^2)^{k_l / 4}.

  On the real axis the integrand oscillates and decays only like :math:`u^{-1-p/2}`
  (slowly for small :math:`p`), which is where naive implementations (a truncated range,
  or a generic oscillatory rule) lose accuracy near :math:`x = c` and in the tails. Here
  :math:`e^{i\theta(u)}/\rho(u) = e^{-i(x-c)u/2}\prod_l (1 - i w_l u)^{-k_l/2}` is
  continued analytically onto a ray :math:`u = r e^{\mp i\alpha}` in the half-plane
  where :math:`e^{-i(x-c)u/2}` decays exponentially (the branch points
  :math:`-i/w_l` lie on the imaginary axis), which leaves a smooth, exponentially
  decaying integrand plus the exact constant :math:`\mp\alpha` from the pole at 0; see
  :func:`_imhof_integral`. Checked against Ruben's series to about ``1e-13``.

``method="auto"`` uses Ruben whenever the weights have one sign and the series converges
within ``RUBEN_MAX_TERMS`` terms, and Imhof otherwise (mixed signs, or weights spread over so
many orders of magnitude that Ruben's series would be too long).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from .progress import Progress

# scipy.integrate (Imhof's integral) and scipy.optimize (ppf) are imported where used: a
# pipeline job that only evaluates Ruben's series does not pay for them at start-up.

__all__ = ["GeneralizedChiSquare"]

_LOG = logging.getLogger(__name__)

Method = Literal["auto", "ruben", "imhof"]

#: Ruben's series stops once the neglected mixture mass ``1 - sum(a_j)`` is below this.
RUBEN_TOL = 1e-12
#: Ruben's series gives up (and ``auto`` falls back to Imhof) after this many terms.
RUBEN_MAX_TERMS = 100_000
#: Absolute error requested from each quadrature of Imhof's integral.
IMHOF_EPSABS = 1e-13
#: Imhof's integration error estimate above which a RuntimeWarning is issued.
IMHOF_WARN = 1e-9
#: Imhof's path is turned by at most this angle off the real axis.
_RAY_MAX_ANGLE = math.pi / 3
#: ... and by no more than keeps ``|psi|`` on it below this bound.
_RAY_PSI_BOUND = 8.0
#: Doublings of the step in the ladder that brackets ppf's quantiles.
_BRACKET_STEPS = 200
#: Relative tolerance of the root finder in ppf (4 eps, as brentq allows at least).
_ROOT_RTOL = 4.0 * float(np.finfo(float).eps)
#: Largest number of chi-square variates held in memory at once by :meth:`rvs`.
_RVS_CHUNK = 1 << 22
#: Ruben's terms whose chi-square CDF is within exp(-_WINDOW_LOG) of 0 or 1 are not
#: evaluated (counted as exactly 0 or 1).
_WINDOW_LOG = 40.0
#: Largest (points x terms) block of chi-square CDFs evaluated at once by Ruben's series.
_RUBEN_BLOCK = 1 << 22


class GeneralizedChiSquare:
    """Law of ``offset + sum_l weights[l] * chi2(dof[l])`` (independent, central).

    Parameters
    ----------
    weights : array_like, shape (L,)
        Finite real weights, any sign (Ruben's fast exact series needs one sign; mixed
        signs use Imhof's method). ``L >= 1``.
    dof : array_like of int, shape (L,), optional
        Positive integer degrees of freedom of each term; default all ones.
    offset : float, default 0.0
        Finite constant added to the sum.
    rtol : float, keyword-only, default 1e-12
        Weights with ``|w| <= rtol * max|w|`` are dropped (numerical zeros from an
        eigendecomposition); their number is kept in :attr:`n_dropped`. If every weight is
        zero the law is a point mass at ``offset``.

    Attributes
    ----------
    weights : ndarray of float, shape (L',)
        The weights kept, in the given order (read-only).
    dof : ndarray of int, shape (L',)
        Their degrees of freedom (read-only).
    offset : float
        The constant.
    n_dropped : int
        Number of weights dropped as numerical zeros, ``L - L'``.

    Raises
    ------
    ValueError
        If ``weights`` is not a non-empty 1-D array of finite reals, if ``dof`` does not
        have the same shape or is not made of positive integers, if ``offset`` is not
        finite, or if ``rtol`` is not in ``[0, 1)``.

    Examples
    --------
    >>> g = GeneralizedChiSquare([2.0, 0.5], dof=[1, 3], offset=1.0)
    >>> g.mean(), g.var()
    (4.5, 9.5)
    >>> float(g.cdf(4.5))  # doctest: +ELLIPSIS
    0.63...
    """

    def __init__(
        self,
        weights: ArrayLike,
        dof: ArrayLike | None = None,
        offset: float = 0.0,
        *,
        rtol: float = 1e-12,
    ) -> None:
        w = _as_real_array(weights, "weights")
        if w.ndim != 1:
            raise ValueError(f"weights must be a 1-D array; got {w.ndim}-D with shape {w.shape}")
        if w.size == 0:
            raise ValueError("weights must contain at least one weight; got an empty array")
        _check_finite(w, "weights")

        if dof is None:
            k = np.ones(w.shape, dtype=np.int64)
        else:
            kf = _as_real_array(dof, "dof")
            if kf.shape != w.shape:
                raise ValueError(
                    f"dof must have the same shape as weights {w.shape}; got {kf.shape}"
                )
            _check_finite(kf, "dof")
            bad = np.flatnonzero(kf <= 0)
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"dof must be positive integers; got {kf[i]:g} at index {i}")
            bad = np.flatnonzero(kf != np.round(kf))
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"dof must be positive integers; got {kf[i]:g} at index {i}")
            k = kf.astype(np.int64)

        try:
            c = float(offset)
        except (TypeError, ValueError):
            raise ValueError(f"offset must be a finite real number; got {offset!r}") from None
        if not math.isfinite(c):
            raise ValueError(f"offset must be finite; got {c}")

        try:
            rt = float(rtol)
        except (TypeError, ValueError):
            raise ValueError(f"rtol must be a real number in [0, 1); got {rtol!r}") from None
        if not (0.0 <= rt < 1.0):
            raise ValueError(f"rtol must be in [0, 1); got {rt}")

        keep = np.abs(w) > rt * np.max(np.abs(w))
        self.weights: NDArray[np.float64] = w[keep].copy()
        self.dof: NDArray[np.int64] = k[keep].copy()
        self.weights.setflags(write=False)
        self.dof.setflags(write=False)
        self.offset: float = c
        self.n_dropped: int = int(w.size - np.count_nonzero(keep))
        self.rtol: float = rt

        # Equal weights merge into one term with the summed degrees of freedom.
        lam, inv = np.unique(self.weights, return_inverse=True)
        self._lam: NDArray[np.float64] = lam
        self._k: NDArray[np.float64] = np.bincount(
            inv.ravel(), weights=self.dof, minlength=lam.size
        ).astype(np.float64)
        # Ruben's coefficients: computed lazily; None = not attempted yet.
        self._ruben_cache: tuple[NDArray[np.float64], int, float] | Literal[False] | None = None

    # ------------------------------------------------------------------ moments

    def mean(self) -> float:
        """Mean, ``offset + sum_l w_l k_l``."""
        return self.offset + float(np.sum(self.weights * self.dof))

    def var(self) -> float:
        """Variance, ``2 * sum_l w_l**2 k_l``."""
        return 2.0 * float(np.sum(self.weights**2 * self.dof))

    def std(self) -> float:
        """Standard deviation, ``sqrt(var())``."""
        return math.sqrt(self.var())

    def cumulant(self, r: int) -> float:
        """The ``r``-th cumulant, ``2**(r-1) (r-1)! sum_l w_l**r k_l`` (+ offset if r=1).

        Parameters
        ----------
        r : int
            Order, ``r >= 1``.
        """
        if int(r) != r or r < 1:
            raise ValueError(f"cumulant order must be an integer >= 1; got {r!r}")
        r = int(r)
        kappa = 2.0 ** (r - 1) * math.factorial(r - 1) * float(np.sum(self.weights**r * self.dof))
        return kappa + (self.offset if r == 1 else 0.0)

    @property
    def support(self) -> tuple[float, float]:
        """``(lower, upper)`` end points of the support (possibly infinite)."""
        lo = self.offset if not np.any(self.weights < 0) else -math.inf
        hi = self.offset if not np.any(self.weights > 0) else math.inf
        return lo, hi

    @property
    def default_method(self) -> str:
        """Method ``cdf(method="auto")`` uses: ``"point_mass"``, ``"ruben"`` or ``"imhof"``."""
        if self.weights.size == 0:
            return "point_mass"
        return "ruben" if self._ruben() is not None else "imhof"

    # ------------------------------------------------------------------ sampling

    def rvs(self, size: int, rng: np.random.Generator) -> NDArray[np.float64]:
        """Exact draws of ``offset + sum_l w_l * chi2(k_l)``.

        Parameters
        ----------
        size : int
            Number of draws, ``>= 0``.
        rng : numpy.random.Generator
            Source of randomness (the only one used).

        Returns
        -------
        ndarray of float, shape (size,)
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
            raise ValueError(f"size must be an integer >= 0; got {size!r}")
        n = int(size)
        out = np.full(n, self.offset, dtype=np.float64)
        for k in np.unique(self.dof):
            wk = self.weights[self.dof == k]
            rows = max(1, _RVS_CHUNK // wk.size)
            for start in range(0, n, rows):
                m = min(rows, n - start)
                if k == 1:
                    x = rng.standard_normal((m, wk.size))
                    x *= x
                else:
                    x = rng.chisquare(float(k), (m, wk.size))
                out[start : start + m] += x @ wk
        return out

    # ------------------------------------------------------------------ CDF

    def cdf(self, x: ArrayLike, method: Method = "auto") -> NDArray[np.float64]:
        """Cumulative distribution function ``P(Q <= x)``.

        Parameters
        ----------
        x : array_like of float, any shape
            Points; NaN gives NaN.
        method : {"auto", "ruben", "imhof"}
            ``"ruben"`` needs weights of one sign (ValueError otherwise) and raises
            RuntimeError if the series does not converge within ``RUBEN_MAX_TERMS``
            terms; ``"imhof"`` works for any weights; ``"auto"`` prefers Ruben (see
            :attr:`default_method`).

        Returns
        -------
        ndarray of float, same shape as ``x``
            Values in ``[0, 1]``, accurate to about ``1e-10`` absolute (Ruben: the neglected
            mixture mass, ``<= 1e-12``; Imhof: QUADPACK error estimate, a RuntimeWarning is
            issued if it exceeds ``1e-9``).
        """
        return self._dist(x, method, upper=False)

    def sf(self, x: ArrayLike, method: Method = "auto") -> NDArray[np.float64]:
        """Survival function ``P(Q > x)``, computed directly (not as ``1 - cdf``).

        Parameters and returns as in :meth:`cdf`.
        """
        return self._dist(x, method, upper=True)

    def ppf(self, q: ArrayLike) -> NDArray[np.float64]:
        """Quantile function, ``inf{x : cdf(x) >= q}``.

        Computed for all ``q`` at once: the CDF on a ladder ``mean +- scale * 2**i``
        (``scale = max(std, max|w|)``, clipped to the support) brackets every quantile, and
        Chandrupatla's method (:func:`scipy.optimize.elementwise.find_root`, vectorised
        over ``q``) refines the brackets to ``xatol = 1e-14 * scale``, ``xrtol = 4 eps``.
        The result is as accurate as the CDF allows: an error ``d`` in the CDF moves the
        quantile by about ``d / density``.

        Parameters
        ----------
        q : array_like of float, any shape
            Probabilities in ``[0, 1]``; ``ppf(0)`` and ``ppf(1)`` are the ends of the
            support, NaN gives NaN.

        Returns
        -------
        ndarray of float, same shape as ``q``
        """
        qa = _as_real_array(q, "q")
        nonnan = qa[~np.isnan(qa)]
        if np.any((nonnan < 0) | (nonnan > 1)):
            bad = int(np.flatnonzero((qa < 0) | (qa > 1))[0])
            raise ValueError(f"q must be in [0, 1]; got {qa.flat[bad]} at flat index {bad}")
        lo_sup, hi_sup = self.support
        if self.weights.size == 0:
            out = np.full(qa.shape, self.offset)
            out[np.isnan(qa)] = np.nan
            return out
        out = np.where(qa == 0.0, lo_sup, np.where(qa == 1.0, hi_sup, np.nan))
        inner = np.flatnonzero((qa > 0) & (qa < 1))
        if inner.size == 0:
            return out
        p = qa.ravel()[inner]
        mode = self.default_method
        scale = max(self.std(), float(np.max(np.abs(self.weights))))
        steps = scale * 2.0 ** np.arange(-4, _BRACKET_STEPS)
        ladder = np.unique(
            np.clip(
                np.concatenate([self.mean() - steps[::-1], [self.mean()], self.mean() + steps]),
                lo_sup,
                hi_sup,
            )
        )
        ladder = ladder[np.isfinite(ladder)]
        cdf_ladder = self._dist(ladder, mode, upper=False)
        # first rung with cdf >= p (the upper end of the bracket) and the one below it
        j = np.searchsorted(cdf_ladder, p, side="left")
        if np.any(j == ladder.size) or np.any((j == 0) & (ladder[0] > lo_sup)):
            i = int(np.flatnonzero((j == ladder.size) | (j == 0))[0])
            raise RuntimeError(
                f"ppf({p[i]!r}): no bracket found within mean +- {steps[-1]:g}; the cdf is "
                "only accurate to about 1e-12, so such extreme quantiles are not resolved"
            )
        res = out.ravel()
        exact = (j == 0) | (cdf_ladder[j] == p)  # at the lower end of the support, or a rung
        res[inner[exact]] = ladder[j[exact]]
        todo = ~exact
        if np.any(todo):
            from scipy.optimize import elementwise

            detail = f"{{left}} of {int(todo.sum())} quantiles unresolved"
            progress = Progress("ppf", None, "root-finder steps", detail, _LOG)

            def f(x: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
                progress.update(progress.count + 1, left=x.size)
                return self._dist(x, mode, upper=False) - target

            jt = j[todo]
            sol = elementwise.find_root(
                f,
                (ladder[jt - 1], ladder[jt]),
                args=(p[todo],),
                tolerances={"xatol": 1e-14 * scale, "xrtol": _ROOT_RTOL},
            )
            res[inner[todo]] = sol.x
            progress.done(left=0)
        return res.reshape(qa.shape)

    def __repr__(self) -> str:
        opts = {"precision": 6, "threshold": 12, "edgeitems": 3, "separator": ", "}
        w = np.array2string(self.weights, **opts)
        k = np.array2string(self.dof, **opts)
        return (
            f"GeneralizedChiSquare(weights={w}, dof={k}, offset={self.offset!r}, "
            f"n_dropped={self.n_dropped})"
        )

    # ------------------------------------------------------------------ internals

    def _dist(self, x: ArrayLike, method: Method, upper: bool) -> NDArray[np.float64]:
        xa = _as_real_array(x, "x")
        if method not in ("auto", "ruben", "imhof"):
            raise ValueError(f"method must be 'auto', 'ruben' or 'imhof'; got {method!r}")
        if self.weights.size == 0:
            out = (xa < self.offset) if upper else (xa >= self.offset)
            res = out.astype(np.float64)
            res[np.isnan(xa)] = np.nan
            return res
        if method == "auto":
            method = "ruben" if self._ruben() is not None else "imhof"
        if method == "ruben":
            return self._ruben_dist(xa, upper)
        out = np.empty(xa.shape, dtype=np.float64)
        progress = Progress("Imhof's integral", xa.size, "points", logger=_LOG)
        for n, (idx, xi) in enumerate(np.ndenumerate(xa)):
            progress.update(n)
            out[idx] = self._imhof_scalar(float(xi), upper)
        progress.done(xa.size)
        return out

    # Ruben ----------------------------------------------------------------

    def _ruben(self) -> tuple[NDArray[np.float64], int, float] | None:
        """Ruben's mixture coefficients ``(a, j0, beta)`` for ``|weights|``, or None.

        ``a[i]`` multiplies ``P(chi2_{p + 2 (j0 + i)} <= y)``; its last entry is the
        neglected mass.

        None if the weights have mixed signs or if the series needs more than
        ``RUBEN_MAX_TERMS`` terms to reach a neglected mass below ``RUBEN_TOL``.
        """
        if self._ruben_cache is None:
            lam = self._lam
            if lam.size == 0 or (lam[0] < 0 < lam[-1]):
                self._ruben_cache = False
            else:
                res = _ruben_coefficients(np.abs(lam), self._k, RUBEN_TOL, RUBEN_MAX_TERMS)
                if res is None:
                    self._ruben_cache = False
                else:
                    a, j0, beta = res
                    # The neglected mass eps = 1 - sum(a) sits on degrees of freedom
                    # >= p + 2J; as P(chi2_nu <= y) decreases in nu, giving all of it to
                    # nu = p + 2J errs by at most eps and is exact in both tails.
                    eps = max(0.0, 1.0 - math.fsum(a))
                    self._ruben_cache = (np.append(a, eps), j0, beta)
        return None if self._ruben_cache is False else self._ruben_cache

    def _ruben_dist(self, xa: NDArray[np.float64], upper: bool) -> NDArray[np.float64]:
        res = self._ruben()
        if res is None:
            lam = self._lam
            if lam[0] < 0 < lam[-1]:
                raise ValueError(
                    "method='ruben' needs weights of one sign; these have both signs "
                    f"(min {lam[0]:g}, max {lam[-1]:g}): use method='imhof'"
                )
            raise RuntimeError(
                f"Ruben's series did not reach a neglected mass below {RUBEN_TOL:g} within "
                f"{RUBEN_MAX_TERMS} terms (weights span {np.abs(lam).min():g} to "
                f"{np.abs(lam).max():g}): use method='imhof'"
            )
        a, j0, beta = res
        negative = self._lam[0] < 0
        p = float(np.sum(self._k))
        # For negative weights, Q = c - R with R >= 0 Ruben-representable:
        # P(Q <= x) = P(R >= c - x) and P(Q > x) = P(R < c - x).
        if negative:
            y = (self.offset - xa) / beta
            upper_r = not upper
        else:
            y = (xa - self.offset) / beta
            upper_r = upper
        out = _ruben_sum(y.ravel(), a, j0, p, upper_r)
        return out.reshape(y.shape)

    # Imhof ----------------------------------------------------------------

    def _imhof_scalar(self, x: float, upper: bool) -> float:
        """``P(Q > x)`` (upper) or ``P(Q <= x)`` by Imhof's inversion formula."""
        if math.isnan(x):
            return math.nan
        if math.isinf(x):
            return float((x > 0) != upper)
        lam, k = self._lam, self._k
        xp = x - self.offset
        # Outside the support the answer is exact.
        if lam[0] > 0 and xp <= 0:
            return 1.0 if upper else 0.0
        if lam[-1] < 0 and xp >= 0:
            return 0.0 if upper else 1.0
        integral, err = _imhof_integral(lam, k, xp)
        if err > IMHOF_WARN:
            warnings.warn(
                f"Imhof integration error estimate {err:.2g} at x={x!r} exceeds {IMHOF_WARN:g}",
                RuntimeWarning,
                stacklevel=4,
            )
        val = 0.5 + integral / math.pi if upper else 0.5 - integral / math.pi
        return min(1.0, max(0.0, val))


# ---------------------------------------------------------------------- helpers


def _as_real_array(values: ArrayLike, name: str) -> NDArray[np.float64]:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged input
        raise ValueError(f"{name} must be an array of real numbers; {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers; got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_finite(arr: NDArray[np.float64], name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must be finite; got {arr[i]} at index {i}")


def _ruben_coefficients(
    lam: NDArray[np.float64], k: NDArray[np.float64], tol: float, max_terms: int
) -> tuple[NDArray[np.float64], int, float] | None:
    """Ruben's mixture weights for positive ``lam`` with ``beta = min(lam)``.

    The standard recursion is ``a_0 = prod (beta/lam_l)^(k_l/2)``,
    ``g_j = sum_l k_l q_l^j`` with ``q_l = 1 - beta/lam_l`` and
    ``a_j = (1/(2j)) sum_{r<j} g_{j-r} a_r``. Its O(j) convolution is evaluated in O(L)
    per term through ``S_l(j) = sum_{r<j} q_l^(j-r) a_r``, ``S_l(j+1) = q_l (S_l(j) + a_j)``,
    so that ``a_j = (1/(2j)) sum_l k_l S_l(j)``. All quantities are nonnegative, so the
    recursion is numerically stable; as it is linear, it runs on rescaled values (with the
    log of the scale kept aside) so that a tiny ``a_0`` (many terms) does not underflow.

    The ``a_j`` are the probabilities of ``N = sum_l NB(k_l/2, beta/lam_l)`` (independent
    negative binomial counts), hence nonnegative with sum 1.

    Parameters
    ----------
    lam : ndarray, shape (L,)
        Distinct positive weights.
    k : ndarray, shape (L,)
        Their (summed) degrees of freedom.
    tol : float
        Stop once ``1 - sum(a) < tol`` (the truncation error bound).
    max_terms : int
        Give up after this many terms.

    Returns
    -------
    (a, j0, beta) or None
        ``a`` has shape (J,), the coefficients of ``j = j0, ..., j0 + J - 1``; the leading
        ones, of total mass below ``tol / 1000``, are dropped and their mass added to
        ``a[0]`` (which moves it to more degrees of freedom: an error of at most that mass).
        None if the series would need more than ``max_terms`` terms.
    """
    beta = float(lam.min())
    ratio = beta / lam
    q = 1.0 - ratio
    # A cheap forecast of the length: E N = sum_l (k_l/2) (lam_l/beta - 1), plus the
    # geometric tail q_max^j that must fall below tol.
    expected = float(np.sum(0.5 * k * (lam / beta - 1.0)))
    q_max = float(q.max())
    # q_max^j < tol needs j > log(tol) / log(q_max); tiny q (nearly equal weights) needs
    # almost no terms.
    tail = math.log(tol) / math.log(q_max) if 0.0 < q_max < 1.0 else 0.0
    if expected + tail > max_terms:
        return None
    log_a0 = float(np.sum(0.5 * k * np.log(ratio)))
    active = q > 0
    qa, ka = q[active], k[active]
    s_l = np.zeros(qa.size)
    # Scaled recursion: true a_j = a_j * exp(log_scale).
    log_scale = log_a0
    a_j = 1.0
    true_a = math.exp(log_scale)
    coeffs = [true_a]
    total, comp = true_a, 0.0  # Kahan-compensated running sum of the true a_j
    for j in range(1, max_terms + 1):
        if 1.0 - total < tol:
            break
        s_l = qa * (s_l + a_j)
        a_j = float(ka @ s_l) * (0.5 / j)
        if a_j > 1e200:  # rescale (the recursion is linear in (a, S))
            s_l /= a_j
            log_scale += math.log(a_j)
            a_j = 1.0
        true_a = a_j * math.exp(log_scale) if log_scale > -745.0 else 0.0
        coeffs.append(true_a)
        yk = true_a - comp
        t = total + yk
        comp = (t - total) - yk
        total = t
    else:
        if 1.0 - total >= tol:
            return None
    a = np.asarray(coeffs)
    lead = np.cumsum(a)
    j0 = int(np.searchsorted(lead, 1e-3 * tol, side="right"))
    j0 = min(j0, a.size - 1)
    if j0 > 0:
        a = a[j0:].copy()
        a[0] += lead[j0 - 1]
    return a, j0, beta


def _ruben_sum(
    y: NDArray[np.float64], a: NDArray[np.float64], j0: int, p: float, upper: bool
) -> NDArray[np.float64]:
    """``sum_i a[i] P(chi2_{p + 2 (j0 + i)} <= y)`` (or ``> y`` if upper), per entry of y.

    Only the terms whose chi-square CDF at ``y`` is neither 1 nor 0 to within
    ``exp(-_WINDOW_LOG)`` are evaluated, the others are summed exactly from the cumulative
    sums of ``a``. With shape ``s = p/2 + j`` and ``lam = y/2``, Chernoff's bound
    ``P(Gamma(s) >= lam) <= exp(-f)`` (for ``s < lam``; ``<=`` for ``s > lam``), with
    ``f = lam - s + s log(s/lam) >= (lam - s)^2 / (lam + max(s, lam))``, gives the window
    ``lam - sqrt(2 c lam) <= s <= lam + c/2 + sqrt(c^2/4 + 2 c lam)``, ``c = _WINDOW_LOG``,
    of width ``O(sqrt(y))``, whatever the number of terms.

    Parameters
    ----------
    y : ndarray, shape (n,)
        Scaled points ``(x - offset) / beta``.
    a : ndarray, shape (J,)
        Mixture weights of ``j = j0, ..., j0 + J - 1``.
    j0 : int
        Index of ``a[0]``.
    p : float
        Total degrees of freedom.
    upper : bool
        Survival function instead of CDF.

    Returns
    -------
    ndarray, shape (n,)
        Clipped to ``[0, 1]``.
    """
    n_terms = a.size
    cum = np.concatenate(([0.0], np.cumsum(a)))  # cum[m] = sum(a[:m])
    out = np.empty(y.shape, dtype=np.float64)
    finite = np.isfinite(y)
    out[np.isnan(y)] = np.nan
    out[y == np.inf] = 0.0 if upper else 1.0
    out[y == -np.inf] = 1.0 if upper else 0.0
    idx = np.flatnonzero(finite)
    if idx.size:
        yf = y[idx]
        lam = np.maximum(yf, 0.0) / 2.0
        c = _WINDOW_LOG
        s_lo = lam - np.sqrt(2.0 * c * lam)
        s_hi = lam + c / 2.0 + np.sqrt(c * c / 4.0 + 2.0 * c * lam)
        i_lo = np.clip(np.ceil(s_lo - p / 2.0) - j0, 0, n_terms).astype(np.int64)
        i_hi = np.clip(np.floor(s_hi - p / 2.0) - j0 + 1, 0, n_terms).astype(np.int64)
        i_hi = np.maximum(i_hi, i_lo)
        width = max(1, int(np.max(i_hi - i_lo)))
        # Terms below the window count fully in the CDF, those above fully in the sf.
        base = cum[-1] - cum[i_hi] if upper else cum[i_lo]
        # Inside the window only the first CDF comes from scipy.special.chdtr; the others
        # follow from P(chi2_{nu+2} <= y) = P(chi2_nu <= y) - t_s(lam), s = nu/2, with the
        # Poisson-like term t_s(lam) = lam^s exp(-lam) / Gamma(s+1): its first value is
        # computed accurately (Loader's saddle-point form), the next ones by the ratio
        # t_{s+1} / t_s = lam / (s+1). All of it is positive, so the relative error stays
        # within (window width) ulps, and this is far cheaper than incomplete gammas.
        shapes = p / 2.0 + j0 + np.arange(n_terms)
        offsets = np.arange(width)
        rows = max(1, _RUBEN_BLOCK // width)
        progress = Progress("Ruben's series", idx.size, "points", logger=_LOG)
        for start in range(0, idx.size, rows):
            progress.update(start)
            sl = slice(start, start + rows)
            lo = i_lo[sl]
            grid = np.minimum(lo[:, None] + offsets, n_terms - 1)
            coef = np.where(lo[:, None] + offsets < i_hi[sl, None], a[grid], 0.0)
            yy, ll = yf[sl], lam[sl]
            s0 = shapes[grid[:, 0]]
            y0 = np.maximum(yy, 0.0)  # chdtr is NaN below 0, where the CDF is 0
            first = special.chdtrc(2.0 * s0, y0) if upper else special.chdtr(2.0 * s0, y0)
            t = np.empty(grid.shape)
            t[:, 0] = np.exp(_log_poisson_term(s0, ll))
            if width > 1:
                t[:, 1:] = ll[:, None] / (shapes[grid[:, :-1]] + 1.0)
            t = np.cumprod(t, axis=1)
            steps = np.cumsum(t, axis=1) - t  # sum of the terms before each column
            vals = first[:, None] + steps if upper else first[:, None] - steps
            np.clip(vals, 0.0, 1.0, out=vals)
            out[idx[sl]] = base[sl] + np.sum(coef * vals, axis=1)
        progress.done(idx.size)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _log_poisson_term(s: NDArray[np.float64], lam: NDArray[np.float64]) -> NDArray[np.float64]:
    """``log(lam^s exp(-lam) / Gamma(s + 1))`` without cancellation (Loader, 2000).

    Written as ``-bd0(s, lam) - log(2 pi s) / 2 - stirlerr(s)`` with
    ``bd0 = s log(s/lam) + lam - s`` (a series in ``d = s/lam - 1`` when ``|d| < 0.1``) and
    ``stirlerr(s) = lgamma(s+1) - (s+1/2) log(s) + s - log(2 pi)/2`` (its asymptotic series
    for ``s >= 10``), so the error does not grow with ``s`` and ``lam``.

    Parameters
    ----------
    s : ndarray, shape (n,)
        Positive shapes.
    lam : ndarray, shape (n,)
        Nonnegative rates (``lam = 0`` gives ``-inf``).

    Returns
    -------
    ndarray, shape (n,)
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = (s - lam) / lam
        direct = s * np.log(s / lam) + lam - s
        series = np.zeros_like(d)
        for m in range(15, -1, -1):  # sum_{m>=0} (-d)^m / ((m+1)(m+2))
            series = series * -d + 1.0 / ((m + 1) * (m + 2))
        bd0 = np.where(np.abs(d) < 0.1, lam * d * d * series, direct)
        bd0 = np.where(lam > 0, bd0, np.inf)
    s2 = 1.0 / (s * s)
    asym = (1 / 12 - s2 * (1 / 360 - s2 * (1 / 1260 - s2 * (1 / 1680 - s2 / 1188)))) / s
    small = special.gammaln(s + 1.0) - (s + 0.5) * np.log(s) + s - 0.5 * math.log(2 * math.pi)
    stirlerr = np.where(s >= 10.0, asym, small)
    return -bd0 - 0.5 * np.log(2 * math.pi * s) - stirlerr


def _imhof_integral(
    lam: NDArray[np.float64], k: NDArray[np.float64], xp: float
) -> tuple[float, float]:
    """Imhof's integral ``I = int_0^inf sin(theta(u)) / (u rho(u)) du`` and its error estimate.

    With ``omega = xp / 2`` and ``psi(u) = prod_l (1 - i lam_l u)^(-k_l/2)`` (principal
    branch), ``exp(i theta(u)) / rho(u) = exp(-i omega u) psi(u)``, so
    ``I = Im int_0^inf exp(-i omega u) psi(u) du / u``. On the real axis this integrand
    oscillates and decays only like ``u^(-1-p/2)``. Its branch points ``-i / lam_l`` lie on
    the imaginary axis, so the path can be turned onto the ray ``u = r exp(-i s alpha)``
    (``s = sign(omega)``, ``0 < alpha < pi/2``), where ``exp(-i omega u)`` decays like
    ``exp(-|omega| r sin(alpha))``. Closing the contour at infinity (``psi(u)/u -> 0``)
    and handling the ``1/u`` pole at 0 through ``Im(1/u) = 0`` on the real axis gives

    ``I = -s alpha + int_0^inf Im[exp(-i omega u(r)) psi(u(r))] dr / r``.

    On the ray ``|1 - i lam u| >= cos(alpha)`` for the weights of sign ``s`` and ``>= 1`` for
    the others, so ``|psi| <= cos(alpha)^(-p_s/2)``; ``alpha`` is the largest angle (at most
    ``pi/3``) keeping this bound at 8, which limits cancellation to one digit. The ray
    integral is done on ``[0, r1]`` directly and on ``[r1, inf)`` in ``t = log(r)`` (the
    decay is a power law when ``omega`` is small), ``r1 = 1 / max(|lam|, |omega|)``.
    For ``omega = 0`` the path stays on the real axis (``alpha = 0``).

    Parameters
    ----------
    lam : ndarray, shape (L,)
        Distinct nonzero weights.
    k : ndarray, shape (L,)
        Their degrees of freedom.
    xp : float
        ``x - offset``.

    Returns
    -------
    (I, err) : tuple of float
        The integral and QUADPACK's absolute error estimate.
    """
    omega = 0.5 * xp
    half_k = 0.5 * k
    if omega == 0.0:
        sgn, alpha = 0.0, 0.0
    else:
        sgn = math.copysign(1.0, omega)
        p_s = float(np.sum(k[np.sign(lam) == sgn]))
        alpha = _RAY_MAX_ANGLE
        if p_s > 0:
            alpha = min(alpha, math.acos(_RAY_PSI_BOUND ** (-2.0 / p_s)))
    direction = complex(math.cos(alpha), -sgn * math.sin(alpha))
    # d/dr Im[exp(-i omega u) psi(u)] at r = 0: the integrand's limit at 0.
    limit0 = (float(half_k @ lam) - omega) * math.cos(alpha)

    def integrand(r: float) -> float:
        if r == 0.0:
            return limit0
        u = r * direction
        log_val = -1j * omega * u - complex(np.sum(half_k * np.log(1.0 - 1j * lam * u)))
        return math.exp(log_val.real) * math.sin(log_val.imag) / r

    def integrand_log(t: float) -> float:  # integrand(r) dr with r = exp(t)
        if t > 700.0:  # r > 1e304: |integrand| * r < r^(-p/2) * 8, far below any tolerance
            return 0.0
        r = math.exp(t)
        return integrand(r) * r

    r1 = 1.0 / max(float(np.max(np.abs(lam))), abs(omega))
    opts = {"epsabs": IMHOF_EPSABS, "epsrel": 1e-12, "limit": 500}
    from scipy import integrate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        v1, e1 = integrate.quad(integrand, 0.0, r1, **opts)
        v2, e2 = integrate.quad(integrand_log, math.log(r1), math.inf, **opts)
    return -sgn * alpha + v1 + v2, e1 + e2
