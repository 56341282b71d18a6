"""Proofs for jaxcnn.lecture.toeplitz: conv is a (doubly-block) Toeplitz matrix, convolve a polynomial product."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxcnn import conv, conv_backward
from jaxcnn.lecture.toeplitz import conv_matrix, convolve
from oracles import assert_close, conv_cases, run_fast


def _ungrouped(case):
    """The same case without groups (conv_matrix is groups = 1 only)."""
    x_shape, w_shape, options, seed = case
    options = {key: value for key, value in options.items() if key != "groups"}
    return x_shape, (*w_shape[:-2], x_shape[-1], w_shape[-1]), options, seed


def _matrix_views(x, w, dy, options):
    """conv and its hand-rule dx next to T @ x and T.T @ dy (one example)."""
    matrix = conv_matrix(w, x.shape[1:], **options)
    y = conv(x, w, **options)
    dx, _, _ = conv_backward(dy, x, w, **options)
    return y.reshape(-1), matrix @ x.reshape(-1), dx.reshape(-1), matrix.T @ dy.reshape(-1)


@given(conv_cases().map(_ungrouped))
@pytest.mark.slow
def test_conv_is_matrix_product_and_backward_is_adjoint(x64, case):
    x_shape, w_shape, options, seed = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(1, *x_shape[1:])))
    w = jnp.asarray(rng.normal(size=w_shape))
    out = jax.eval_shape(lambda x, w: conv(x, w, **options), x, w).shape
    dy = jnp.asarray(rng.normal(size=out))
    y, matrix_y, dx, matrix_dx = run_fast(lambda *a: _matrix_views(*a, options), x, w, dy)
    assert_close(matrix_y, y, rtol=1e-10, err_msg=f"T @ x {case}")
    assert_close(matrix_dx, dx, rtol=1e-10, err_msg=f"T.T @ dy {case}")


# -------------------------------------------------------------- seed 003


ALPHA = np.array([2.0, -1.0, 3.0])  # p(t) = α0 + α1 t + α2 t²
BETA = np.array([1.0, 4.0, -2.0, 5.0])  # s(t) = β0 + β1 t + β2 t² + β3 t³


def _delta_by_hand(a, b):
    """Seed 003's six coefficients of z(t) = p(t)·s(t), written out."""
    return np.array([
        a[0] * b[0],
        a[1] * b[0] + a[0] * b[1],
        a[0] * b[2] + a[1] * b[1] + a[2] * b[0],
        a[1] * b[2] + a[2] * b[1] + a[0] * b[3],
        a[2] * b[2] + a[1] * b[3],
        a[2] * b[3],
    ])


def _full_convolution_matrix(q, n):
    """Seed 003's matrix of "q ∗": correlation with q reversed, full padding."""
    return np.asarray(conv_matrix(q[::-1].reshape(-1, 1, 1), (n, 1), padding="FULL"))


@pytest.mark.parametrize("q,other", [(ALPHA, BETA), (BETA, ALPHA)], ids=["S_alpha", "A_beta"])
def test_seed_003_toeplitz_structure(q, other):
    """Both matrices of the notes: ``q_{i,j} = q_{i−j}``, and ``S·β = A·α = δ``."""
    matrix = _full_convolution_matrix(q, len(other))
    assert matrix.shape == (len(q) + len(other) - 1, len(other))
    for i, j in itertools.product(*map(range, matrix.shape)):
        expected = q[i - j] if 0 <= i - j < len(q) else 0.0
        assert matrix[i, j] == expected, (i, j)
    np.testing.assert_allclose(matrix @ other, _delta_by_hand(ALPHA, BETA))


def test_seed_003_first_matrix_written_out():
    a0, a1, a2 = ALPHA
    np.testing.assert_array_equal(_full_convolution_matrix(ALPHA, 4), [
        [a0, 0, 0, 0],
        [a1, a0, 0, 0],
        [a2, a1, a0, 0],
        [0, a2, a1, a0],
        [0, 0, a2, a1],
        [0, 0, 0, a2],
    ])


def test_2d_matrix_is_doubly_block_toeplitz():
    """Blocks (output row, input row) depend on their row difference only; each block is Toeplitz."""
    w = np.random.default_rng(0).normal(size=(2, 3, 1, 1))
    n_rows, n_cols = 4, 5
    matrix = np.asarray(conv_matrix(w, (n_rows, n_cols, 1)))
    out_rows, out_cols = n_rows - 1, n_cols - 2
    blocks = matrix.reshape(out_rows, out_cols, n_rows, n_cols).transpose(0, 2, 1, 3)
    for (i, j), (k, m) in itertools.product(itertools.product(range(out_rows), range(n_rows)), repeat=2):
        if i - j == k - m:
            np.testing.assert_array_equal(blocks[i, j], blocks[k, m])
    for i, j in itertools.product(range(out_rows), range(n_rows)):
        block = blocks[i, j]
        for r, c in itertools.product(range(1, out_cols), range(1, n_cols)):
            assert block[r, c] == block[r - 1, c - 1]
    assert np.count_nonzero(blocks[0, 0]) == out_cols * 3  # w's first row on each block diagonal


def test_stride_padding_dilation_index_arithmetic_by_hand():
    """1-D, stride 2, pad (1, 0), dilation 2: T[p, m] = w[t] where m = 2p + 2t − 1."""
    w = np.array([10.0, 20.0, 30.0]).reshape(3, 1, 1)
    matrix = np.asarray(conv_matrix(w, (7, 1), stride=2, padding=[(1, 0)], dilation=2))
    expected = np.zeros((2, 7))
    for p, t in itertools.product(range(2), range(3)):
        m = 2 * p + 2 * t - 1
        if 0 <= m < 7:
            expected[p, m] = w[t, 0, 0]
    np.testing.assert_array_equal(matrix, expected)


def test_channels_are_flattened_row_major():
    """T[p·C_out + o, m·C_in + i] = w[m − p, i, o] (1-D, stride 1, VALID)."""
    w = np.arange(2 * 3 * 4.0).reshape(2, 3, 4)
    matrix = np.asarray(conv_matrix(w, (5, 3)))
    assert matrix.shape == (4 * 4, 5 * 3)
    assert matrix[2 * 4 + 1, 3 * 3 + 2] == w[1, 2, 1]
    assert matrix[2 * 4 + 1, 1 * 3 + 2] == 0.0


def test_conv_matrix_rejects_groups_and_bad_shapes():
    with pytest.raises(ValueError, match="groups=1 only: w.shape\\[-2\\] must equal the input channels 4"):
        conv_matrix(jnp.zeros((3, 3, 2, 6)), (8, 8, 4))
    with pytest.raises(ValueError, match="input_shape must be \\(\\*spatial, in_channels\\)"):
        conv_matrix(jnp.zeros((3, 3, 2, 6)), (1, 8, 8, 2))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_matrix(jnp.zeros((9, 1, 1)), (4, 1))
    with pytest.raises(ValueError, match="padding must be"):
        conv_matrix(jnp.zeros((3, 1, 1)), (4, 1), padding="HALF")


# ---------------------------------------------------------------- convolve


def test_seed_002_filter_times_vector_is_sum_of_shifted_rows():
    """(2, −1, 1, 3, 1) ∗ (1, 1, 2, 1): each filter entry weights a shifted copy of the vector.

    The notes write the first rows; all five, at the full length 5 + 4 − 1 = 8:
    """
    rows = (
        2 * np.array([1, 1, 2, 1, 0, 0, 0, 0])
        + -1 * np.array([0, 1, 1, 2, 1, 0, 0, 0])
        + 1 * np.array([0, 0, 1, 1, 2, 1, 0, 0])
        + 3 * np.array([0, 0, 0, 1, 1, 2, 1, 0])
        + 1 * np.array([0, 0, 0, 0, 1, 1, 2, 1])
    )
    np.testing.assert_array_equal(rows, [2, 1, 4, 4, 5, 8, 5, 1])
    result = convolve(jnp.array([2.0, -1.0, 1.0, 3.0, 1.0]), jnp.array([1.0, 1.0, 2.0, 1.0]))
    np.testing.assert_array_equal(result, rows)
    np.testing.assert_array_equal(convolve(jnp.array([1, 1, 2, 1]), jnp.array([2, -1, 1, 3, 1])), rows)


def test_seed_003_polynomial_product():
    np.testing.assert_allclose(convolve(ALPHA, BETA), _delta_by_hand(ALPHA, BETA))


def _loop_convolve(a, v):
    """The definition δ_j = Σ_i a_i v_{j−i}, one output at a time (any rank)."""
    full = tuple(m + n - 1 for m, n in zip(a.shape, v.shape))
    out = np.zeros(full)
    for j in itertools.product(*map(range, full)):
        for i in itertools.product(*map(range, a.shape)):
            k = tuple(jj - ii for jj, ii in zip(j, i))
            if all(0 <= kk < n for kk, n in zip(k, v.shape)):
                out[j] += a[i] * v[k]
    return out


def _signal_pairs(max_rank=3):
    def pair(rank):
        sizes = st.lists(st.integers(1, 5 if rank > 1 else 9), min_size=rank, max_size=rank)
        return st.tuples(sizes, sizes, st.integers(0, 2**16))

    return st.integers(1, max_rank).flatmap(pair)


def _signals(case):
    shape_a, shape_b, seed = case
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape_a), rng.normal(size=shape_b), rng.normal(size=shape_b), rng.normal(size=2)


def _properties(a, b, c, lambdas):
    """convolve's laws, each side computed by convolve (one jit program per shape)."""
    mixed = convolve(a, lambdas[0] * b + lambdas[1] * c)
    return {
        "a*b": convolve(a, b),
        "b*a": convolve(b, a),
        "linearity": (mixed, lambdas[0] * convolve(a, b) + lambdas[1] * convolve(a, c)),
    }


@given(_signal_pairs())
@pytest.mark.slow
def test_convolve_laws_and_convolution_theorem(x64, case):
    """Seed 002 linearity, commutativity, seed 000's theorem and the loop definition."""
    a, b, c, lambdas = _signals(case)
    results = run_fast(_properties, a, b, c, lambdas)
    product = np.asarray(results["a*b"])
    np.testing.assert_allclose(product, _loop_convolve(a, b), atol=1e-12)
    if a.ndim == 1:
        np.testing.assert_allclose(product, np.convolve(a, b), atol=1e-12)
    np.testing.assert_allclose(results["b*a"], product, atol=1e-12)
    mixed, combined = results["linearity"]
    np.testing.assert_allclose(mixed, combined, atol=1e-10)
    lengths, axes = product.shape, tuple(range(a.ndim))
    spectrum = np.fft.rfftn(a, lengths, axes) * np.fft.rfftn(b, lengths, axes)
    np.testing.assert_allclose(np.fft.rfftn(product, lengths, axes), spectrum, atol=1e-10)


def test_convolve_rejects_mismatched_ranks():
    with pytest.raises(ValueError, match="same rank 1-3, got shapes \\(3,\\) and \\(2, 2\\)"):
        convolve(jnp.ones(3), jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="non-empty"):
        convolve(jnp.ones(0), jnp.ones(2))
