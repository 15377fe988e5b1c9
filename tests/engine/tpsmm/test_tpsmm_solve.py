"""The exportable linear solve of the thin-plate-spline systems (fomm_lab/engine/nets/tpsmm/solve.py): equal to
torch.linalg.solve on random and TPS systems (the zero-diagonal one included), batched, exact on permutations, and
in ONNX Runtime as in torch.

Tolerances. In float64 both solves are exact up to ~1e-13 on these well-conditioned systems (FLOAT64_TOL). In
float32 both carry rounding of the order of cond(A) * 6e-8; each is compared with the float64 solution and held
to FLOAT32_REL of the solution's size, and to 4x what torch.linalg.solve itself misses by (measured: 1.7e-5 vs
3.4e-5 absolute on the random systems, the elimination being no worse than LAPACK's LU).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from tpsmm_support import golden, max_diff

from fomm_lab.engine.nets.blocks import coordinate_grid
from fomm_lab.engine.nets.tpsmm.solve import gauss_jordan_solve
from fomm_lab.engine.nets.tpsmm.tps import ThinPlateSpline, exporting

FLOAT64_TOL = 1e-10
FLOAT32_REL = 1e-4
TRANSFORMATIONS_TOL = 1e-4
"""As test_tpsmm_golden's: the TPS grids against the authors' (their inverse-then-product)."""


def _tps_system(points: torch.Tensor, regularisation: float) -> torch.Tensor:
    """L = [[U(|p_i - p_j|), P], [P^T, 0]] + regularisation I for control points (B, 5, 2) -> (B, 8, 8), built
    independently of tps.py: U(r) = r^2 log r^2 with U(0) = 0, so the diagonal is zero without regularisation."""
    squared = ((points[:, :, None] - points[:, None, :]) ** 2).sum(-1)
    radial = torch.where(squared > 0, squared * torch.log(squared.clamp_min(1e-30)), torch.zeros_like(squared))
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], -1)
    top = torch.cat([radial, homogeneous], -1)
    bottom = torch.cat([homogeneous.transpose(1, 2), torch.zeros(len(points), 3, 3, dtype=points.dtype)], -1)
    return torch.cat([top, bottom], 1) + regularisation * torch.eye(8, dtype=points.dtype)


def _random(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("batch,n,m", [((), 8, 2), ((7,), 8, 2), ((2, 3), 8, 2), ((4,), 1, 3), ((5,), 3, 1),
                                       ((3,), 12, 5)])
def test_random_systems_equal_linalg_solve(batch, n, m):
    a, b = _random((*batch, n, n), 0), _random((*batch, n, m), 1)
    x = gauss_jordan_solve(a, b)
    assert x.shape == (*batch, n, m) and x.dtype == torch.float64
    expected = torch.linalg.solve(a, b)
    assert float((x - expected).abs().max()) < FLOAT64_TOL * max(1.0, float(expected.abs().max()))
    ours32 = (gauss_jordan_solve(a.float(), b.float()).double() - expected).abs().max()
    theirs32 = (torch.linalg.solve(a.float(), b.float()).double() - expected).abs().max()
    assert float(ours32) <= max(FLOAT32_REL * float(expected.abs().max()), 4 * float(theirs32))


@pytest.mark.parametrize("regularisation", [0.01, 0.0])
def test_tps_systems_equal_linalg_solve(regularisation):
    """The systems of Eq. 2 with the authors' 0.01 I and without it (a zero diagonal: U(0) = 0 and the 3x3 zero
    block), for control points spread over the frame and for a tight cluster (large radial terms near zero)."""
    spread = _random((16, 5, 2), 2).clamp(-1, 1)
    cluster = 0.05 * _random((16, 5, 2), 3) + 0.3
    points = torch.cat([spread, cluster])
    system = _tps_system(points, regularisation)
    if regularisation == 0:
        assert float(torch.diagonal(system, dim1=1, dim2=2).abs().max()) == 0.0  # elimination must pivot
    target = torch.cat([_random((32, 5, 2), 4), torch.zeros(32, 3, 2, dtype=torch.float64)], 1)
    expected = torch.linalg.solve(system, target)
    x = gauss_jordan_solve(system, target)
    scale = expected.abs().amax(dim=(1, 2))
    assert bool(((x - expected).abs().amax(dim=(1, 2)) < FLOAT64_TOL * scale.clamp_min(1)).all())
    assert torch.allclose(system @ x, target, atol=1e-9)
    ours32 = (gauss_jordan_solve(system.float(), target.float()).double() - expected).abs().amax(dim=(1, 2))
    theirs32 = (torch.linalg.solve(system.float(), target.float()).double() - expected).abs().amax(dim=(1, 2))
    assert bool((ours32 <= torch.maximum(FLOAT32_REL * scale, 4 * theirs32)).all())


def test_zero_diagonal_needs_the_row_swaps():
    """[[0, 1], [1, 0]] has no usable pivot on its diagonal; with partial pivoting the solve is exact."""
    a = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    b = torch.tensor([[[2.0, -1.0], [3.0, 5.0]]])
    assert torch.equal(gauss_jordan_solve(a, b), torch.tensor([[[3.0, 5.0], [2.0, -1.0]]]))


def test_permutation_matrices_are_solved_exactly():
    """Every row swap is an exact gather: A = a permutation matrix gives X = A^T B bit for bit."""
    generator = torch.Generator().manual_seed(5)
    perms = torch.stack([torch.randperm(8, generator=generator) for _ in range(20)])
    a = torch.eye(8)[perms]  # (20, 8, 8), row i = e_perm[i]
    b = torch.randn(20, 8, 3, generator=generator)
    assert torch.equal(gauss_jordan_solve(a, b), a.transpose(1, 2) @ b)


def test_singular_systems_give_non_finite_values():
    a = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    assert not bool(torch.isfinite(gauss_jordan_solve(a, torch.ones(2, 1))).all())


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"A must be \(\.\.\., n, n\), got shape \(3, 4\)"):
        gauss_jordan_solve(torch.zeros(3, 4), torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"B must be \(\.\.\., n, m\) with A's leading dimensions \(2, 3\)"):
        gauss_jordan_solve(torch.zeros(2, 3, 3), torch.zeros(3, 3, 1))
    with pytest.raises(ValueError, match="A is torch.float32 and B is torch.float64"):
        gauss_jordan_solve(torch.eye(3), torch.zeros(3, 1, dtype=torch.float64))


def test_tps_fit_with_the_solve_stays_at_the_authors_grids():
    """The splines fitted by Gauss-Jordan (the exported graphs' solve) against the authors' inverse: the same
    grids up to float32 rounding, within the golden fixture's tolerance of the reference's TPS grids."""
    data = golden()
    kp_source = torch.from_numpy(data["kp_source"]).reshape(1, -1, 5, 2)
    kp_driving = torch.from_numpy(data["kp_norm_relative"]).reshape(4, -1, 5, 2)
    assert not exporting()
    grid = coordinate_grid(64, 64)
    authors = ThinPlateSpline.fit(kp_driving, kp_source.expand(4, -1, -1, -1)).grids(grid)
    ours = ThinPlateSpline.fit(kp_driving, kp_source.expand(4, -1, -1, -1), gauss_jordan=True).grids(grid)
    assert max_diff(ours, authors.numpy()) < 1e-5
    assert max_diff(ours, data["transformations_relative"][:, 1:]) < TRANSFORMATIONS_TOL


class _Solve(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return gauss_jordan_solve(a, b)


def test_exports_to_standard_onnx_operators_and_runs_in_onnx_runtime(tmp_path):
    import onnx
    import onnxruntime as ort

    path = tmp_path / "solve.onnx"
    points = torch.rand(6, 5, 2, generator=torch.Generator().manual_seed(6)) * 2 - 1
    system = _tps_system(points.double(), 0.01).float()
    target = torch.cat([torch.rand(6, 5, 2, generator=torch.Generator().manual_seed(7)), torch.zeros(6, 3, 2)], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes: n and the shape checks are constants of the graph
        torch.onnx.export(_Solve(), (system[:2], target[:2]), str(path), input_names=["a", "b"], output_names=["x"],
                          dynamic_axes={"a": {0: "n"}, "b": {0: "n"}, "x": {0: "n"}}, opset_version=17, dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Inverse" not in ops and ops <= {"Slice", "Abs", "ArgMax", "Add", "Equal", "Where", "Unsqueeze", "Expand",
                                            "GatherElements", "Div", "Mul", "Sub", "Concat", "Constant", "Shape",
                                            "Gather", "Reshape", "ConstantOfShape", "Cast", "Range"}, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (x,) = session.run(None, {"a": system.numpy(), "b": target.numpy()})  # batch 6, traced with 2
    expected = torch.linalg.solve(system.double(), target.double()).numpy()
    assert x.shape == (6, 8, 2)
    assert float(np.abs(x - expected).max()) < FLOAT32_REL * float(np.abs(expected).max())
    assert float(np.abs(x - gauss_jordan_solve(system, target).numpy()).max()) < 1e-5
