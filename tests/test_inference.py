"""Inference runners: DataTree layout, NUTS/SVI agreement, calibration, oracle agreement."""

import warnings

import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.inference import likelihoods as lk
from nnqft_ppl.inference.runners import infer, infer_correlators
from nnqft_ppl.theory import couplings as c

PAPER_X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])[:, None]
RELU_X = np.linspace(0.2, 1.2, 6)[:, None]


def _stats(arch, X, width, n, seed=0, max_order=4):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nq.BatchErrorWarning)
        return nq.correlators(arch, X, width, n, seed=seed, max_order=max_order, estimator="both")


@pytest.fixture(scope="module")
def relu():
    return _stats(nq.ReLUNet(), RELU_X, 20, 100_000, seed=1)


@pytest.fixture(scope="module")
def relu_nuts(relu):
    """Both likelihoods on the output estimator (the field likelihood needs the outputs): for
    ReLU without biases (rank 1) they are then the same estimator."""
    return {
        lik: infer(
            relu, form=c.Constant(), likelihood=lik, method="nuts", cutoff=2.0, estimator="outputs"
        )  # fmt: skip
        for lik in ("correlator", "field")
    }


def _mean_sd(idata, name="lambda"):
    x = idata.posterior[name]
    return float(x.mean()), float(x.std())


def test_datatree_layout(relu_nuts):
    idata = relu_nuts["correlator"]
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in idata.children
    assert "posterior_predictive" in idata.children
    post = idata.posterior["lambda"]
    assert post.dims == ("chain", "draw") and post.sizes["chain"] == 4
    assert post.sizes["draw"] == 1000
    assert idata.observed_data["kappa_4"].dims == ("tuple",)
    assert idata.observed_data["kappa_4"].tuple.values[0] == "0,0,0,0"
    assert idata.posterior_predictive["kappa_4"].dims == ("chain", "draw", "tuple")
    assert idata.log_likelihood["kappa_4"].dims == ("chain", "draw", "component")
    assert idata.constant_data["design"].dims == ("tuple", "coupling")
    assert nq.inference.coupling_names(idata) == ["lambda"]
    field = relu_nuts["field"]
    assert field.log_likelihood["field"].dims == ("chain", "draw", "batch")
    assert field.attrs["log_normaliser"].startswith("second-order")


def test_nuts_converges_and_agrees_with_oracle(relu, relu_nuts):
    """Posterior means agree with the oracle's coupling; posterior sds are the closed-form widths
    of each likelihood (the prior is ~1e3 sds wide): the least-squares standard error for the
    correlator likelihood, the sandwich sd ``sqrt(S^-1 V S^-1 / n)`` for the field one, within
    10% (NUTS's own error on an sd from 4000 draws: ~2%)."""
    k4 = nq.exact_cumulant(relu.arch, relu.X, 20, 4).values
    oracle = c.fit_coupling(c.Constant(), relu.arch, relu.X, k4, None, 2.0).theta[0]
    data = lk.correlator_data(relu, c.Constant(), cutoff=2.0, estimator="outputs")
    width = {
        "correlator": data.least_squares().stderr[0],
        "field": float(relu_nuts["field"].constant_data["field_sandwich_sd"].values[0]),
    }
    means = {}
    for lik, idata in relu_nuts.items():
        d = nq.diagnose(idata)
        assert d.divergences == 0
        assert float(d.table.loc["lambda", "r_hat"]) < 1.01
        mean, sd = _mean_sd(idata)
        assert abs(mean - oracle) < 3 * sd, (lik, mean, sd, oracle)
        # power: the posterior excludes no coupling and half of it (oracle ~ -0.0195 ~ 21 sd)
        assert abs(mean) > 5 * sd and abs(mean - 0.5 * oracle) > 5 * sd, (lik, mean, sd)
        assert abs(sd / width[lik] - 1) < 0.1, (lik, sd, width[lik])
        means[lik] = (mean, sd)
    (m1, s1), (m2, s2) = means.values()
    assert abs(m1 - m2) < 3 * np.hypot(s1, s2)


def test_rank_one_likelihoods_are_one_estimator(relu, relu_closed):
    """ReLU, sb0 = 0, d = 1: every kappa_4 entry is x1 x2 x3 x4 kappa_4(F), one number. Fed the
    same (output) estimator, the correlator and the field likelihood then estimate the same
    number: their exact posteriors coincide to a small fraction of their width. (Agreement by
    construction, which is why the coupling study does not count it as evidence.)"""
    assert relu.independent_numbers(4, method="exact") == 1
    m1, s1 = _mean_sd(relu_closed["correlator"])
    m2, s2 = _mean_sd(relu_closed["field"])
    assert abs(m1 - m2) < 0.1 * s2 and abs(s1 / s2 - 1) < 0.1, (m1, s1, m2, s2)


@pytest.fixture(scope="module")
def relu_closed(relu):
    """The exact Gaussian posteriors of the same likelihoods as ``relu_nuts``."""
    return {
        lik: infer(
            relu,
            form=c.Constant(),
            likelihood=lik,
            method="closed_form",
            cutoff=2.0,
            estimator="outputs",
        )  # fmt: skip
        for lik in ("correlator", "field")
    }


@pytest.mark.parametrize("likelihood", ["correlator", "field"])
def test_nuts_matches_the_closed_form_posterior(relu_nuts, relu_closed, likelihood):
    """Both likelihoods are linear-Gaussian in lambda: NUTS must reproduce the exact Gaussian
    posterior. 4000 draws (ESS > 1000) pin the mean to ~0.03 sd and the sd to ~2%."""
    m0, s0 = _mean_sd(relu_closed[likelihood])
    m, s = _mean_sd(relu_nuts[likelihood])
    assert abs(m - m0) < 0.15 * s0 and abs(s / s0 - 1) < 0.1, (m, s, m0, s0)
    assert relu_closed[likelihood].attrs["method"] == "closed_form"


@pytest.mark.parametrize("guide", ["normal", "multivariate_normal"])
def test_svi_matches_the_closed_form_posterior(relu, relu_closed, guide):
    m0, s0 = _mean_sd(relu_closed["correlator"])
    idata = infer(relu, likelihood="correlator", method=nq.SVISettings(guide=guide), cutoff=2.0,
                  estimator="outputs")  # fmt: skip
    m, s = _mean_sd(idata)
    assert idata.posterior["lambda"].dims == ("chain", "draw")
    assert abs(m - m0) < 0.2 * s0 and abs(s / s0 - 1) < 0.1, (m, s, m0, s0)
    assert "loss" in idata.sample_stats


def test_closed_form_width_is_the_least_squares_width(relu, relu_closed):
    """With a prior much wider than the data's error the posterior sd is the generalised
    least-squares standard error of the whitened fit."""
    data = lk.correlator_data(relu, cutoff=2.0, estimator="outputs")
    ls = data.least_squares()
    assert data.prior_scale[0] > 50 * ls.stderr[0]  # the prior moves the sd by < 2e-4
    _, s = _mean_sd(relu_closed["correlator"])
    assert abs(s / ls.stderr[0] - 1) < 0.05  # 4000 independent draws: sd to ~1.1%


def test_prior_groups_for_prior_posterior_checks(relu_closed):
    idata = relu_closed["correlator"]
    assert idata.prior["lambda"].dims == ("chain", "draw")
    prior_sd = float(idata.prior["lambda"].std())
    scale = float(idata.constant_data["prior_scale"].values[0])
    assert abs(prior_sd / scale - 1) < 0.15  # 1000 draws of Normal(0, scale): sd to ~2.2%
    assert idata.prior_predictive["kappa_4"].dims == ("chain", "draw", "tuple")
    assert prior_sd > 10 * float(idata.posterior["lambda"].std())  # the data dominate


def test_closed_form_needs_default_priors(relu):
    import numpyro.distributions as dist

    with pytest.raises(ValueError, match="default Normal priors"):
        infer(relu, method="closed_form", cutoff=2.0, prior={"lambda": dist.Normal(0, 1.0)})


def test_two_couplings_and_user_prior():
    """Erf-net, radial form: two correlated couplings, dense mass; a user prior is honoured."""
    import numpyro.distributions as dist

    stats = _stats(nq.ErfNet(), PAPER_X, 5, 50_000, seed=2)
    form = c.RadialPolynomial((0, 2))
    idata = infer(
        stats, form=form, cutoff=2.0, method=nq.NUTSSettings(num_samples=500, num_warmup=300)
    )
    assert set(idata.posterior.data_vars) == {"lambda_0", "lambda_2"}
    assert float(nq.diagnose(idata).table["r_hat"].astype(float).max()) < 1.01
    tight = infer(
        stats,
        form=form,
        cutoff=2.0,
        prior={"lambda_2": dist.Normal(0.0, 1e-6)},
        method=nq.NUTSSettings(num_samples=300, num_warmup=200, num_chains=2),
    )
    assert float(abs(tight.posterior["lambda_2"]).max()) < 1e-5


def test_bad_choices(relu):
    with pytest.raises(ValueError, match="unknown likelihood"):
        infer(relu, likelihood="fields", cutoff=2.0)
    with pytest.raises(ValueError, match="unknown method"):
        infer(relu, method="hmc", cutoff=2.0)
    with pytest.raises(ValueError, match="unknown guide"):
        infer(relu, method=nq.SVISettings(guide="delta"), cutoff=2.0)
    with pytest.raises(ValueError, match="diverges"):
        infer(relu)  # ReLU vertex integrals need a cutoff
    with pytest.raises(ValueError, match="not identified"):
        # ReLU sb0 = 0: kappa_4 ~ x1 x2 x3 x4 for any lambda(y): only one number is measurable
        infer(relu, form=c.RadialPolynomial((0, 2)), cutoff=2.0)


def _calibration_data(seed=0):
    stats = _stats(nq.ErfNet(), PAPER_X, 5, 10_000, seed=seed)
    return lk.correlator_data(stats, form=c.RadialPolynomial((0, 2)), cutoff=2.0)


def test_calibration_closed_form():
    """Fast: the exact Gaussian posterior (``lk.gaussian_posterior``, what ``method=
    "closed_form"`` draws from) on 400 replicates simulated from the linear-Gaussian
    correlator likelihood (two couplings): its 90% central intervals cover the truth 90% of the
    time (binomial sd 1.5%: 3 sd is 0.855-0.945); and ``infer_correlators`` draws from it."""
    data = _calibration_data()
    rng = np.random.default_rng(0)
    truth = data.least_squares().theta
    hits = []
    for _ in range(400):
        post = lk.gaussian_posterior(data.simulate(truth, rng))
        hits.append(np.abs(post.mean - truth) < 1.6449 * post.sd)
    coverage = np.mean(hits, axis=0)
    assert np.all((coverage > 0.855) & (coverage < 0.945)), coverage
    idata = infer_correlators(data, "closed_form", seed=1)
    post = lk.gaussian_posterior(data)
    for i, name in enumerate(data.names):  # 4000 independent draws: mean to 0.016 sd
        draws = idata.posterior[name].values
        assert abs(draws.mean() - post.mean[i]) < 0.07 * post.sd[i]
        assert abs(draws.std() / post.sd[i] - 1) < 0.05


def _linear_gaussian_data(n_params):
    """Correlator data with a known design, covariance and measurement (12 entries, full rank,
    two correlated couplings): the posterior under a flat-enough prior is exactly the
    least-squares one, mean ``ls.theta`` and covariance ``ls.covariance``."""
    rng = np.random.default_rng(4)
    M = 12
    D = rng.normal(size=(M, 2))
    D[:, 1] = 0.8 * D[:, 0] + 0.6 * D[:, 1]  # correlated couplings (posterior rho ~ -0.8)
    D = D[:, :n_params] * 50.0
    A = rng.normal(size=(M, M))
    cov = (A @ A.T / M + 0.3 * np.eye(M)) * 1e-6
    theta = np.array([-0.02, 0.01])[:n_params]
    k = D @ theta + np.linalg.cholesky(cov) @ rng.normal(size=M)
    names = ["lambda_0", "lambda_2"][:n_params]
    ls = lk.CorrelatorData.from_arrays(names, k, D, cov).least_squares()
    # prior 1e4 standard errors wide: its effect on the posterior sd is 5e-9 relative
    return lk.CorrelatorData.from_arrays(names, k, D, cov, prior_scale=1e4 * ls.stderr), ls


@pytest.mark.parametrize(
    "method, n_params",
    [
        (nq.NUTSSettings(num_chains=1, num_warmup=300, num_samples=2000), 2),
        (nq.SVISettings(guide="multivariate_normal"), 2),
        (nq.SVISettings(guide="normal"), 1),  # mean-field: exact only without correlation
    ],
    ids=["nuts", "svi-mvn", "svi-normal"],
)
def test_posterior_is_the_least_squares_posterior(method, n_params):
    """The sampler's posterior (running NUTS or SVI) against the closed form: means within 0.15
    sd, sds within 10%, correlation within 0.05 (Monte Carlo errors: ~2% of an sd, ~2% on an sd,
    ~0.01 on rho for NUTS; SVI's fitted scale is good to a few %). A likelihood twice as wide
    (or narrow) fails by 10x the tolerance."""
    data, ls = _linear_gaussian_data(n_params)
    idata = infer_correlators(data, method, seed=3)
    draws = np.stack([idata.posterior[n].values.ravel() for n in data.names], axis=-1)
    sd = draws.std(axis=0)
    assert np.all(np.abs(draws.mean(axis=0) - ls.theta) < 0.15 * ls.stderr), (draws.mean(0), ls)
    assert np.all(np.abs(sd / ls.stderr - 1) < 0.1), sd / ls.stderr
    if n_params == 2:
        rho = np.corrcoef(draws.T)[0, 1]
        rho_ls = ls.covariance[0, 1] / np.prod(ls.stderr)
        assert abs(rho - rho_ls) < 0.05, (rho, rho_ls)


def test_simulated_replicates_have_the_data_covariance():
    """``simulate`` / ``replicate`` (calibration studies, posterior predictive) draw around
    ``D theta`` with the data covariance, here of rank 7 in 12 entries: 4000 replicates,
    whitened, are N(0, 1) in every kept direction (mean chi-square per replicate = 7 within 5
    standard errors, per-direction sds 1 within 5 / sqrt(2 * 4000), means 0), and nothing
    moves in the directions the covariance does not have."""
    rng = np.random.default_rng(5)
    M, r = 12, 7
    B = rng.normal(size=(M, r)) * 1e-3
    D = rng.normal(size=(M, 2))
    truth = np.array([-0.02, 0.01])
    data = lk.CorrelatorData.from_arrays(["a", "b"], D @ truth, D, B @ B.T)
    assert data.rank == r
    reps = data.replicate(np.broadcast_to(truth, (4000, 2)), rng)
    sim = data.simulate(truth, rng)  # one replicate as new data: only the observation changes
    assert sim.rank == data.rank and np.array_equal(sim.covariance, data.covariance)
    noise = reps - data.predict(truth)
    z = noise @ data.whitener.T  # (4000, rank)
    chi2 = np.sum(z**2, axis=1)
    assert abs(chi2.mean() - r) < 5 * np.sqrt(2 * r / len(chi2)), chi2.mean()
    assert np.all(np.abs(z.std(axis=0) - 1) < 5 / np.sqrt(2 * len(z))), z.std(axis=0)
    assert np.all(np.abs(z.mean(axis=0)) < 5 / np.sqrt(len(z)))
    null = np.linalg.svd(B)[0][:, r:]  # directions without noise
    assert np.abs(noise @ null).max() < 1e-9 * np.abs(noise).max()


@pytest.mark.slow
def test_calibration_nuts():
    """90% central intervals of NUTS posteriors on 200 replicates simulated from the correlator
    likelihood (two couplings, Erf-net design and covariance) cover the truth 85-95%."""
    data = _calibration_data()
    rng = np.random.default_rng(1)
    truth = data.least_squares().theta
    hits = []
    for r in range(200):
        idata = infer_correlators(
            data.simulate(truth, rng),
            nq.NUTSSettings(num_chains=1, num_warmup=300, num_samples=600),
            seed=r,
        )  # fmt: skip
        for i, name in enumerate(data.names):
            lo, hi = np.quantile(idata.posterior[name].values, [0.05, 0.95])
            hits.append((i, lo < truth[i] < hi))
    for i in range(data.n_params):
        coverage = np.mean([h for j, h in hits if j == i])
        assert 0.85 < coverage < 0.95, (data.names[i], coverage)


# --------------------------------------------------------------------------- must-show (slow)
CASES = {
    "gauss sb0=0.5 N=10": (nq.GaussNet(sb0=0.5), PAPER_X, 10, None, c.Constant()),
    "gauss sb0=0.5 N=100": (nq.GaussNet(sb0=0.5), PAPER_X, 100, None, c.Constant()),
    "gauss sb0=1 N=10": (nq.GaussNet(sb0=1.0), PAPER_X, 10, None, c.Constant()),
    "erf N=5": (nq.ErfNet(), PAPER_X, 5, 2.0, c.Constant()),
    "erf N=5 radial": (nq.ErfNet(), PAPER_X, 5, 2.0, c.RadialPolynomial((0, 2))),
    "relu N=20": (nq.ReLUNet(), RELU_X, 20, 2.0, c.Constant()),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_posteriors_agree_with_oracle(case):
    """1e6 networks: each likelihood's posterior agrees with the same estimator applied to the
    exact oracle cumulants within 3 sd; r_hat < 1.01, no divergences; the two likelihoods agree
    where the oracle's chi-square accepts the form, and the verdict rejects it where not."""
    arch, X, width, cutoff, form = CASES[case]
    stats = _stats(arch, X, width, 10**6, seed=11)
    k4 = nq.exact_cumulant(arch, X, width, 4).values
    post = {}
    for lik in ("correlator", "field"):
        idata = infer(
            stats,
            form=form,
            likelihood=lik,
            cutoff=cutoff,
            method=nq.NUTSSettings(num_samples=1000),
        )
        d = nq.diagnose(idata)
        assert d.divergences == 0
        assert float(d.table["r_hat"].astype(float).max()) < 1.01
        if lik == "correlator":
            data = lk.correlator_data(stats, form=form, cutoff=cutoff)
            oracle = c.fit_coupling(form, arch, X, k4, data.covariance, cutoff)
            target, accepted = oracle.theta, not oracle.p_value < 1e-3
        else:
            rtol = idata.attrs["field_rtol"]
            fs = lk.field_statistics(stats, form=form, cutoff=cutoff, rtol=rtol)
            target = -np.linalg.solve(fs.gp_covariance, fs.coefficients[4].T @ k4)
        for name, t in zip(form.names, target, strict=True):
            mean, sd = _mean_sd(idata, name)
            assert abs(mean - t) < 3 * sd, (lik, name, mean, sd, t)
        post[lik] = (idata, d)
    (ic, dc), (i_f, _) = post["correlator"], post["field"]
    if accepted:
        for name in form.names:
            (m1, s1), (m2, s2) = _mean_sd(ic, name), _mean_sd(i_f, name)
            assert abs(m1 - m2) < 3 * np.hypot(s1, s2), (name, m1, s1, m2, s2)
    else:
        assert "CANNOT describe" in dc.verdict


@pytest.mark.slow
def test_coupling_falls_as_one_over_width():
    """lambda_N = c (N / N_ref)^-a from four widths (ReLU-net, 2e5 networks each): a = 1."""
    import jax
    from numpyro.infer import MCMC, NUTS

    datasets = {
        N: lk.correlator_data(_stats(nq.ReLUNet(), RELU_X, N, 200_000, seed=N), cutoff=2.0)
        for N in (10, 20, 40, 80)
    }
    mcmc = MCMC(NUTS(lk.width_power_law_model), num_warmup=500, num_samples=1000, num_chains=2,
                chain_method="sequential", progress_bar=False)  # fmt: skip
    with jax.enable_x64(True):  # a user's own NumPyro model on the building blocks: float64
        mcmc.run(jax.random.PRNGKey(0), datasets)
    a = np.asarray(mcmc.get_samples()["a"])
    assert abs(a.mean() - 1) < 3 * a.std(), (a.mean(), a.std())
    assert a.std() < 0.2
