"""A batched linear solve in standard ONNX operators, for the thin-plate-spline systems of TPSMM (Sec. 3.1, Eq. 2).

ONNX has no matrix inverse or solve operator, so ``torch.inverse`` / ``torch.linalg.solve`` cannot be exported.
:func:`gauss_jordan_solve` solves A X = B for a fixed size n (known when the graph is traced) by Gauss-Jordan
elimination unrolled into n steps of element-wise operations, each with partial pivoting:

1. pivot: p = k + argmax_{i >= k} |A_ik| (the first largest, as ``torch.argmax`` and ONNX ``ArgMax``);
2. row swap k <-> p: a gather of the rows by the index vector that equals i except at k (-> p) and p (-> k), made
   from comparisons with the constant row numbers (exact: rows are moved, not mixed);
3. elimination: the pivot row r = row_k / A_kk, then row_i - A_ik r for every i != k, and row k := r.

After n steps [A | B] is [I | X]. Partial pivoting matters for the TPS system L = [[K, P], [P^T, 0]]: the
radial block K = U(|p_i - p_j|) with U(r) = r^2 log r^2 has a zero diagonal (U(0) = 0), and so has the 3x3 block,
so without row swaps the elimination would divide by (nearly) zero. The operators used are Slice, Abs, ArgMax,
Equal, Where, GatherElements, Div, Mul, Sub and Concat (opset 11 and later).

The result equals ``torch.linalg.solve`` up to float rounding (tests/engine/tpsmm/test_tpsmm_solve.py). A singular
A gives non-finite values instead of an error (a traced graph cannot raise).
"""

from __future__ import annotations

import torch


def gauss_jordan_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """X with A X = B, batched: ``a`` (..., n, n), ``b`` (..., n, m) -> (..., n, m), by Gauss-Jordan elimination
    with partial pivoting unrolled over the n columns (see the module's description). ``a`` and ``b`` must have
    the same leading (batch) dimensions and dtype; n is read from ``a`` (a constant of a traced graph)."""
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"gauss_jordan_solve: A must be (..., n, n), got shape {tuple(a.shape)}")
    if b.dim() != a.dim() or b.shape[:-1] != a.shape[:-1]:
        raise ValueError(f"gauss_jordan_solve: B must be (..., n, m) with A's leading dimensions "
                         f"{tuple(a.shape[:-1])}, got shape {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"gauss_jordan_solve: A is {a.dtype} and B is {b.dtype}; give both in one dtype")
    n = int(a.shape[-1])
    augmented = torch.cat([a, b], dim=-1)  # (..., n, n + m)
    rows = torch.arange(n, device=a.device)  # constant row numbers 0..n-1
    for k in range(n):
        # 1. pivot row p >= k: the first largest |A_ik| among the rows not yet eliminated, (..., 1)
        pivot = torch.argmax(augmented[..., k:, k].abs(), dim=-1, keepdim=True) + k
        # 2. swap rows k and p: row i comes from index[i] (i, except k <- p and p <- k)
        index = torch.where(rows == k, pivot, torch.where(rows == pivot, k, rows))  # (..., n)
        augmented = torch.gather(augmented, -2, index.unsqueeze(-1).expand_as(augmented))
        # 3. eliminate column k from every other row; row k becomes the normalised pivot row
        pivot_row = augmented[..., k:k + 1, :] / augmented[..., k:k + 1, k:k + 1]  # (..., 1, n + m)
        eliminated = augmented - augmented[..., :, k:k + 1] * pivot_row
        augmented = torch.where((rows == k).unsqueeze(-1), pivot_row, eliminated)
    return augmented[..., n:]
