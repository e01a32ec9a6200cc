"""Extreme eigenpairs of the Hessian: Lanczos with full reorthogonalization, and power iteration.

Lanczos (Golub & Van Loan, *Matrix Computations*, 4th ed., sections 10.1-10.3) builds an
orthonormal basis Q of the Krylov space {q, Hq, H^2 q, ...} and the tridiagonal T = Q^T H Q; the
eigenvalues of T (Ritz values) converge to the extreme eigenvalues of H first. In floating point
the basis loses orthogonality exactly when a Ritz value converges, which produces spurious copies
("ghosts"); full reorthogonalization (two passes of classical Gram-Schmidt against all previous
vectors, "twice is enough", Giraud et al. 2005) keeps Q orthonormal to machine precision at
O(m * dim) extra flops per step, negligible next to one Hessian-vector product.

The basis and T are accumulated in float64 whatever the operator's dtype. Deflated power
iteration (as in PyHessian, Yao et al. 2020) is here for comparison: it needs many more products
for the same accuracy.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import torch

from ..progress import progress_bar
from .operator import LinearOperator

WHICH = ("top", "bottom")


def random_unit_vector(dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A float64 Gaussian unit vector, drawn on the CPU so that the seed means the same on any device."""
    generator = torch.Generator().manual_seed(int(seed))
    vector = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (vector / vector.norm()).to(device)


class LanczosProcess:
    """An incremental Lanczos run: :meth:`step` adds one basis vector and one Hessian-vector product.

    ``alphas[j]`` is T's diagonal; ``betas[j] = ||r_j||`` couples q_j to q_{j+1}, so T's off-diagonal
    is ``betas[:-1]`` and ``betas[-1]`` is the residual norm used in error estimates. On breakdown
    (an invariant subspace found, ``beta ~ 0``) the run continues with a fresh random vector
    orthogonal to the basis and a zero coupling, so T stays the exact projection Q^T H Q.
    """

    def __init__(self, operator: LinearOperator, start: torch.Tensor | None = None, seed: int = 0, reorthogonalize: bool = True):
        self.operator, self.reorthogonalize, self.seed = operator, reorthogonalize, seed
        self.dim = operator.dim
        start = random_unit_vector(self.dim, seed, operator.device) if start is None else start.to(operator.device, torch.float64)
        self._basis = torch.empty(min(self.dim, 16), self.dim, dtype=torch.float64, device=operator.device)
        self._next = start / start.norm()
        self.alphas: list[float] = []
        self.betas: list[float] = []
        self.num_restarts = 0
        self.block_start = 0  # first step of the latest Krylov block (a new block begins after each restart)
        self.broke_down = False  # the last step closed an invariant subspace; the next one starts a new block
        self._scale = 0.0  # running estimate of ||H||, for the breakdown threshold

    @property
    def steps(self) -> int:
        return len(self.alphas)

    @property
    def complete(self) -> bool:
        """The basis spans the whole space: no further step is possible (or needed)."""
        return self.steps >= self.dim

    @property
    def basis(self) -> torch.Tensor:
        """Q, shape (steps, dim), float64, orthonormal rows."""
        return self._basis[: self.steps]

    def step(self) -> None:
        if self.complete:
            raise RuntimeError(f"Lanczos basis already spans all {self.dim} dimensions")
        j, q = self.steps, self._next
        if self.broke_down:
            self.block_start, self.broke_down = j, False
        self._store(j, q)
        w = self.operator.matvec(q).to(torch.float64)
        alpha = float(q @ w)
        w = w - alpha * q
        if j > 0:
            w = w - self.betas[-1] * self._basis[j - 1]
        if self.reorthogonalize:
            w = self._orthogonalize(w, j + 1)
            w = self._orthogonalize(w, j + 1)  # the second pass restores orthogonality lost in the first
        self.alphas.append(alpha)
        self._scale = max(self._scale, abs(alpha), self.betas[-1] if self.betas else 0.0)
        self.betas.append(self._advance(w))

    def extend(self, num_steps: int, progress: bool = False) -> None:
        for _ in progress_bar(range(num_steps), desc="lanczos", disable=not progress, leave=False):
            if self.complete:
                break
            self.step()

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        """T's diagonal (steps,) and off-diagonal (steps - 1,)."""
        return np.asarray(self.alphas), np.asarray(self.betas[:-1])

    def _store(self, j: int, q: torch.Tensor) -> None:
        if j == len(self._basis):  # grow geometrically: amortized O(1) copies per step
            grown = torch.empty(min(self.dim, 2 * len(self._basis)), self.dim, dtype=torch.float64, device=q.device)
            grown[:j] = self._basis[:j]
            self._basis = grown
        self._basis[j] = q

    def _orthogonalize(self, w: torch.Tensor, count: int) -> torch.Tensor:
        basis = self._basis[:count]
        return w - basis.T @ (basis @ w)

    def _advance(self, w: torch.Tensor) -> float:
        """Normalize the residual into the next basis vector; return the coupling beta."""
        if self.steps >= self.dim:
            return 0.0  # the Krylov space is the whole space: T is similar to H
        beta = float(w.norm())
        if beta > self._breakdown_threshold():
            self._next = w / beta
            return beta
        self.num_restarts += 1
        self.broke_down = True
        fresh = random_unit_vector(self.dim, self.seed + 7919 * self.num_restarts, w.device)
        fresh = self._orthogonalize(self._orthogonalize(fresh, self.steps), self.steps)
        self._next = fresh / fresh.norm()
        return 0.0

    def _breakdown_threshold(self) -> float:
        # products carry the operator's rounding error; below that level the residual is noise
        return 100 * torch.finfo(self.operator.dtype).eps * max(self._scale, 1e-300)


def lanczos(
    operator: LinearOperator,
    k_steps: int,
    seed: int = 0,
    reorthogonalize: bool = True,
    start: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``k_steps`` Lanczos steps (at most ``operator.dim``) -> ``(alphas, betas, Q)``.

    ``alphas`` (m,) and ``betas`` (m,) define T: diagonal ``alphas``, off-diagonal ``betas[:-1]``;
    ``betas[-1]`` is the norm of the last residual (0 once Q spans the space). ``Q`` is
    (m, dim), float64, with orthonormal rows (to machine precision with ``reorthogonalize``).
    """
    process = LanczosProcess(operator, start=start, seed=seed, reorthogonalize=reorthogonalize)
    process.extend(min(int(k_steps), operator.dim), progress=progress)
    return np.asarray(process.alphas), np.asarray(process.betas), process.basis.clone()


def ritz_pairs(alphas: np.ndarray, off_diagonal: np.ndarray, indices: tuple[int, int] | None = None):
    """Eigenvalues (ascending) and eigenvectors of the tridiagonal T; ``indices`` = (lo, hi) inclusive."""
    if len(alphas) == 1:
        return np.asarray(alphas, dtype=float), np.ones((1, 1))
    if indices is None:
        return scipy.linalg.eigh_tridiagonal(alphas, off_diagonal)
    return scipy.linalg.eigh_tridiagonal(alphas, off_diagonal, select="i", select_range=indices)


def hessian_eigenpairs(
    operator: LinearOperator,
    k: int = 1,
    which: str = "top",
    tol: float = 1e-6,
    max_steps: int | None = None,
    seed: int = 0,
    as_dicts: bool = False,
    check_residuals: bool = True,
    progress: bool = False,
):
    """The ``k`` largest (``top``) or smallest algebraic (``bottom``: most negative) eigenpairs.

    Grows one Lanczos basis until each wanted Ritz value has the residual estimate
    ``|beta_m * s_m|`` (last component of its Ritz vector times the last coupling, Golub & Van
    Loan 10.1.4) at most ``tol * |lambda|``, or until ``max_steps`` (default ``min(dim, max(100, 20 k))``).
    A Krylov space holds one vector of each eigenspace, so a multiple eigenvalue shows up once;
    further copies come only from rounding or from the fresh block started after an exact
    breakdown (handled: the search continues while a closed block's extreme eigenvalue still
    beats the k-th wanted one, see :func:`_search_finished`). Without a breakdown, copies of an
    exactly repeated eigenvalue can be missed, as with any single-vector Lanczos.

    Returns ``(eigenvalues, eigenvectors, record)``: eigenvalues float64 (descending for ``top``,
    ascending for ``bottom``); eigenvectors (k, dim) in the operator's dtype, or a list of dicts
    over the operator's names with ``as_dicts``; the record holds ``num_products`` (Lanczos steps),
    ``wall_time``, ``residual_estimates``, the true ``residual_norms`` ||Hv - lambda v|| (k further
    products, counted in ``check_products``, with ``check_residuals``), ``converged`` and ``tol``.
    """
    _check_k(operator, k)
    if which not in WHICH:
        raise ValueError(f"unknown eigenpair selection {which!r}: expected one of {', '.join(WHICH)}")
    max_steps = min(operator.dim, max(100, 20 * k) if max_steps is None else int(max_steps))
    if max_steps < k:
        raise ValueError(f"max_steps={max_steps} cannot give k={k} eigenpairs")
    started, products_before = time.perf_counter(), operator.num_products
    process = LanczosProcess(operator, seed=seed)
    # no total: the step count is set by convergence, not known ahead (max_steps is only a cap); the bar shows
    # how far the worst wanted Ritz pair is from the tolerance instead
    bar = progress_bar(desc=f"lanczos {which}-{k} (at most {max_steps} steps)", unit=" steps", disable=not progress, leave=False)
    while True:
        process.step()
        bar.update()
        if process.steps >= k:
            values, vectors, estimates = _wanted_ritz(process, k, which)
            converged = estimates <= tol * np.abs(values)
            worst = float(np.max(estimates / np.maximum(np.abs(values), np.finfo(float).tiny)))
            bar.set_postfix_str(f"{int(converged.sum())}/{k} converged, worst relative residual {worst:.1e} (tol {tol:g})", refresh=False)
            if _search_finished(process, values, converged, tol, which) or process.steps >= max_steps or process.complete:
                break
    bar.close()
    eigenvectors = torch.from_numpy(vectors.T.copy()).to(process.basis.device) @ process.basis
    record = {
        "method": "lanczos",
        "which": which,
        "k": k,
        "tol": tol,
        "seed": seed,
        "lanczos_steps": process.steps,
        "restarts": process.num_restarts,
        "num_products": operator.num_products - products_before,
        "wall_time": time.perf_counter() - started,
        "residual_estimates": estimates.tolist(),
        "converged": converged.tolist(),
    }
    if check_residuals:
        record.update(_residual_check(operator, values, eigenvectors))
    return (*_packaged(operator, values, eigenvectors, as_dicts), record)


def _search_finished(process: LanczosProcess, values: np.ndarray, converged: np.ndarray, tol: float, which: str) -> bool:
    """Whether the wanted Ritz values are converged and no unexplored part of the space can beat them.

    Without breakdowns this is just ``converged.all()``. After a restart, T is block diagonal and
    the latest block explores the complement of the earlier (invariant) ones: its extreme Ritz
    value must have converged too. When a block has just closed, its eigenvalues are exactly the
    distinct eigenvalues of H on what was unexplored; if its extreme one still beats the k-th
    wanted value, that eigenvalue may have further copies, so the search goes on in a new block.
    """
    if not converged.all():
        return False
    if process.broke_down:
        extreme, _ = _block_extreme(process, which)
        sign = 1.0 if which == "top" else -1.0
        return sign * (extreme - values[-1]) <= tol * abs(values[-1])
    if process.block_start == 0:
        return True  # one Krylov block: its extreme Ritz value is among the wanted ones
    extreme, estimate = _block_extreme(process, which)
    return estimate <= tol * abs(extreme)


def _block_extreme(process: LanczosProcess, which: str) -> tuple[float, float]:
    """The latest block's extreme Ritz value (largest for top, smallest for bottom) and its residual estimate."""
    alphas, off_diagonal = process.tridiagonal()
    start, m = process.block_start, process.steps
    index = (m - start - 1,) * 2 if which == "top" else (0, 0)
    value, vector = ritz_pairs(alphas[start:], off_diagonal[start:], index)
    return float(value[0]), abs(process.betas[-1] * float(vector[-1, 0]))


def _wanted_ritz(process: LanczosProcess, k: int, which: str):
    alphas, off_diagonal = process.tridiagonal()
    m = process.steps
    values, vectors = ritz_pairs(alphas, off_diagonal, (m - k, m - 1) if which == "top" else (0, k - 1))
    if which == "top":
        values, vectors = values[::-1], vectors[:, ::-1]
    estimates = np.abs(process.betas[-1] * vectors[-1, :])
    return values.copy(), vectors, estimates


def power_iteration_eigenpairs(
    operator: LinearOperator,
    k: int = 1,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    as_dicts: bool = False,
    progress: bool = False,
):
    """Deflated power iteration, PyHessian's ``eigenvalues`` (Yao et al. 2020), for comparison.

    Each eigenpair iterates ``v <- H v / ||H v||`` with ``v`` kept orthogonal to the pairs already
    found (deflation by projection), stopping when the Rayleigh quotient changes by less than
    ``tol * (|lambda| + 1e-6)`` (PyHessian's rule). It converges to the eigenvalues of largest
    *magnitude*, so a dominant negative eigenvalue comes out first; it needs ~ log(1/eps) /
    log(|lambda_1| / |lambda_2|) products per pair. Returns ``(eigenvalues, eigenvectors, record)``
    like :func:`hessian_eigenpairs`; residuals come free from each pair's last product.
    """
    _check_k(operator, k)
    started, products_before = time.perf_counter(), operator.num_products
    found: list[torch.Tensor] = []
    pairs = []  # (value, residual, converged, iterations) per eigenpair
    for index in range(k):
        value, vector, *rest = _power_iterate(operator, found, tol, max_iter, seed + index, progress)
        found.append(vector)
        pairs.append((value, *rest))
    values, residuals, converged, iterations = (list(column) for column in zip(*pairs))
    eigenvectors = torch.stack(found)
    record = {
        "method": "power_iteration",
        "k": k,
        "tol": tol,
        "seed": seed,
        "iterations": iterations,
        "num_products": operator.num_products - products_before,
        "wall_time": time.perf_counter() - started,
        "residual_norms": residuals,
        "converged": converged,
    }
    return (*_packaged(operator, np.asarray(values), eigenvectors, as_dicts), record)


def _power_iterate(operator, found, tol, max_iter, seed, progress):
    vector = _deflated(random_unit_vector(operator.dim, seed, operator.device), found)
    value, residual, done, used = float("nan"), float("nan"), False, 0
    for used in progress_bar(range(1, max_iter + 1), desc="power iteration", disable=not progress, leave=False):
        product = operator.matvec(vector).to(torch.float64)
        previous, value = value, float(vector @ product)
        residual = float((product - value * vector).norm())
        done = abs(value - previous) / (abs(previous) + 1e-6) < tol  # NaN on the first pass: False
        if done:
            break  # keep the vector whose product we measured, so its residual is exact
        vector = _deflated(product, found)
    return value, vector, residual, bool(done), used


def _deflated(vector: torch.Tensor, found: list[torch.Tensor]) -> torch.Tensor:
    for _ in range(2):
        for other in found:
            vector = vector - (other @ vector) * other
    return vector / vector.norm()


def _residual_check(operator: LinearOperator, values: np.ndarray, eigenvectors: torch.Tensor) -> dict:
    products = [operator.matvec(v).to(torch.float64) for v in eigenvectors]
    norms = [float((hv - value * v).norm()) for hv, value, v in zip(products, values, eigenvectors)]
    return {"residual_norms": norms, "check_products": len(products)}


def _packaged(operator, values: np.ndarray, eigenvectors: torch.Tensor, as_dicts: bool):
    eigenvalues = torch.as_tensor(np.ascontiguousarray(values), dtype=torch.float64)
    vectors = eigenvectors.to(operator.dtype)
    if as_dicts:
        return eigenvalues, [operator.unflatten(v) for v in vectors]
    return eigenvalues, vectors


def _check_k(operator: LinearOperator, k: int) -> None:
    if not 1 <= int(k) <= operator.dim:
        raise ValueError(f"k={k} eigenpairs requested from an operator of dimension {operator.dim}")
