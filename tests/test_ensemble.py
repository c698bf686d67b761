"""The streaming sampler: counter-based randomness, mergeable sums, NumPyro equivalence."""

import jax
import numpy as np
import pytest
from numpyro.infer import Predictive
from scipy import stats

import nnqft_ppl as nq
from nnqft_ppl import Ensemble
from nnqft_ppl.core.multisets import pair_table
from nnqft_ppl.ensembles.sampler import accumulate_moments, iter_output_chunks, sample_outputs
from tests.conftest import P_MIN


def assert_sums_equal(actual, expected, rtol=0.0):
    """Per-batch sums of every block and degree agree (bit for bit when ``rtol`` is 0)."""
    np.testing.assert_array_equal(actual.counts, expected.counts)
    assert actual.layouts == expected.layouts
    for block, sums in expected.sums.items():
        for degree, value in sums.items():
            np.testing.assert_allclose(actual.sums[block][degree], value, rtol=rtol, atol=0)


@pytest.mark.parametrize("arch", [nq.GaussNet(), nq.ReLUNet(d_in=2), nq.MLP(2, "tanh")])
def test_chunk_size_does_not_change_a_single_output(arch):
    X = np.random.default_rng(0).normal(size=(4, arch.d_in))
    a = sample_outputs(arch, X, 7, 1000, seed=3, chunk_size=64)
    b = sample_outputs(arch, X, 7, 1000, seed=3, chunk_size=999)
    ens = Ensemble(arch, X, 7, 1000, 3)
    c = np.concatenate([f for _, f in iter_output_chunks(ens, chunk_size=1000)])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_network_a_is_the_same_alone_and_in_a_chunk(paper_inputs):
    arch = nq.ErfNet()
    chunk = sample_outputs(arch, paper_inputs, 5, 50, seed=11)
    with jax.enable_x64(True):  # a building block: runs in the caller's precision
        alone = arch.draw_outputs(jax.random.fold_in(jax.random.PRNGKey(11), 37), paper_inputs, 5)
    np.testing.assert_array_equal(chunk[37], np.asarray(alone))


def test_sums_are_mergeable_and_resumable(paper_inputs):
    ens = Ensemble(nq.ErfNet(), paper_inputs, 5, 5000, seed=1, max_order=6, n_batches=10)
    n = ens.n_networks
    whole = accumulate_moments(ens)
    left = accumulate_moments(ens, stop=1234)
    right = accumulate_moments(ens, start=1234)
    merged = left.merge(right)
    resumed = accumulate_moments(ens, resume=left, chunk_size=333)
    for s in (merged, resumed):
        np.testing.assert_array_equal(s.counts, whole.counts)
        assert_sums_equal(s, whole, rtol=1e-12)
    assert whole.n_accumulated == n and whole.counts.tolist() == [500] * 10


def test_sums_equal_monomials_of_the_stored_outputs(paper_inputs):
    arch = nq.GaussNet(sb0=0.5)
    f = sample_outputs(arch, paper_inputs, 10, 3000, seed=2)
    ens = Ensemble(arch, paper_inputs, 10, 3000, 2, max_order=8, n_batches=3, estimator="both")
    sums = accumulate_moments(ens)
    T = nq.index_multisets(6, 8)
    expected = np.prod(f[:1000, None, :][..., T].squeeze(1), axis=-1).sum(0)
    np.testing.assert_allclose(sums.sums["outputs"][8][0], expected, rtol=1e-10)
    # the kernel block: monomials of G - K, G = sb1^2 + sw1^2 h h^T / N of the same networks
    with jax.enable_x64(True):
        keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(2), np.arange(1000))
        h = jax.vmap(lambda k: arch.draw_layers(k, paper_inputs, 10, readout=False)[0])(keys)
        G = jax.vmap(arch.readout_kernel)(h)
    g = np.asarray(G)[:, *nq.index_multisets(6, 2).T] - pair_table(nq.kernel(arch, paper_inputs))
    T = nq.index_multisets(21, 4)
    expected = np.prod(g[:, T], axis=-1).sum(0)
    np.testing.assert_allclose(sums.sums["kernel"][4][0], expected, rtol=1e-10)


@pytest.mark.parametrize("arch", [nq.ErfNet(), nq.ReLUNet(d_in=2, sb0=0.5)])
def test_fast_sampler_has_the_numpyro_model_distribution(arch):
    """Same distribution: per-input Kolmogorov-Smirnov two-sample tests and the 4-pt moments."""
    X = np.random.default_rng(4).uniform(0.1, 1.0, size=(3, arch.d_in))
    n, width = 20_000, 4
    fast = sample_outputs(arch, X, width, n, seed=0)
    model = Predictive(arch.numpyro_model, num_samples=1)(jax.random.PRNGKey(1), X, width, n)
    slow = np.asarray(model["f"][0])
    assert slow.shape == fast.shape
    p_ks = [stats.ks_2samp(fast[:, k], slow[:, k]).pvalue for k in range(3)]
    assert min(p_ks) * 3 > P_MIN
    diag4 = fast**4, slow**4
    z = (diag4[0].mean(0) - diag4[1].mean(0)) / np.sqrt((diag4[0].var(0) + diag4[1].var(0)) / n)
    assert np.abs(z).max() < 5


def test_bad_ensemble_options_name_the_problem(paper_inputs):
    arch = nq.ErfNet()
    with pytest.raises(ValueError, match="width"):
        Ensemble(arch, paper_inputs, 0, 10)
    with pytest.raises(ValueError, match="n_networks"):
        Ensemble(arch, paper_inputs, 5, -3)
    with pytest.raises(ValueError, match="max_order"):
        Ensemble(arch, paper_inputs, 5, 10, max_order=5)
    with pytest.raises(ValueError, match="dtype"):
        Ensemble(arch, paper_inputs, 5, 10, dtype="float16")
    with pytest.raises(ValueError, match="seed"):
        Ensemble(arch, paper_inputs, 5, 10, seed=-1)
    with pytest.raises(ValueError, match="nq.Ensemble"):
        accumulate_moments(arch)


def test_ensemble_identity_is_its_key(paper_inputs):
    a = Ensemble(nq.ErfNet(), paper_inputs, 5, 1000, seed=2, max_order=4, n_batches=10)
    assert a == Ensemble.from_dict(a.to_dict()) and a.key == Ensemble.from_dict(a.to_dict()).key
    assert a != a.replace(seed=3) and a != a.replace(X=paper_inputs * 2)
    bigger = a.extended(3000)
    assert bigger.batch_size == a.batch_size == 100 and bigger.n_batches == 30
    assert a.same_networks(bigger) and not a.same_networks(a.replace(width=6))


@pytest.mark.parametrize("chunk_size", [7, 270, 271, 541, 3000, 20000])
def test_sums_do_not_depend_on_chunk_size_or_interruption(paper_inputs, chunk_size):
    """Chunks smaller than, equal to and spanning many batches (271 networks each), with an
    interruption at a network inside a batch, all give the same per-batch sums."""
    ens = Ensemble(nq.ErfNet(), paper_inputs, 5, 10_007, 1, max_order=6, n_batches=37)
    ref = accumulate_moments(ens, chunk_size=50)
    part = accumulate_moments(ens, chunk_size=chunk_size, stop=5555)
    for sums in (
        accumulate_moments(ens, chunk_size=chunk_size),
        accumulate_moments(ens, chunk_size=chunk_size, resume=part),
    ):
        np.testing.assert_array_equal(sums.counts, ref.counts)
        assert_sums_equal(sums, ref, rtol=1e-11)


@pytest.mark.parametrize("chunk_size", [64, 1024])
def test_resuming_at_a_chunk_boundary_is_bit_identical(paper_inputs, chunk_size):
    """Chunks lie on a fixed grid of network numbers: a run stopped after any chunk and resumed
    sums the same numbers in the same order, on the slow (64 < 2 batches) and fast paths."""
    ens = Ensemble(nq.ErfNet(), paper_inputs, 5, 6000, 1, max_order=6, n_batches=12)
    whole = accumulate_moments(ens, chunk_size=chunk_size)
    snapshots = []
    accumulate_moments(ens, chunk_size=chunk_size, on_chunk=lambda snap: snapshots.append(snap()))
    for part in (snapshots[0], snapshots[len(snapshots) // 2]):
        resumed = accumulate_moments(ens, chunk_size=chunk_size, resume=part)
        assert_sums_equal(resumed, whole)


def test_extending_an_ensemble_equals_one_run_bit_for_bit(paper_inputs):
    small = Ensemble(nq.GaussNet(sb0=0.5), paper_inputs, 4, 3000, seed=5, max_order=4, n_batches=30)
    big = small.extended(6000)
    fresh = accumulate_moments(big)
    extended = accumulate_moments(big, resume=accumulate_moments(small).extended(6000))
    np.testing.assert_array_equal(extended.counts, fresh.counts)
    assert_sums_equal(extended, fresh)


def test_dask_cluster_gives_the_single_process_sums(paper_inputs):
    from dask.distributed import Client

    from nnqft_ppl.ensembles.distributed import distributed_moments

    ens = Ensemble(nq.GaussNet(sb0=0.5), paper_inputs, 4, 6000, seed=9, max_order=4, n_batches=12)
    single = accumulate_moments(ens)
    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        merged = distributed_moments(c, ens, n_tasks=5)
        via_correlators = nq.correlators(ens, client=c, check_errors=False)
    np.testing.assert_array_equal(merged.counts, single.counts)
    assert_sums_equal(merged, single, rtol=1e-12)
    assert_sums_equal(via_correlators.sums, single, rtol=1e-12)
