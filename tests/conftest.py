"""Shared fixtures: the paper's inputs and the significance threshold of statistical tests."""

import numpy as np
import pytest

#: Statistical tests fail below this p-value (about 5 sigma, one-sided).
P_MIN = 3e-7


@pytest.fixture
def paper_inputs():
    """d_in = 1 inputs of the paper's Gauss- and Erf-net studies, shape (6, 1)."""
    return np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])[:, None]


@pytest.fixture
def relu_inputs():
    """Positive d_in = 1 inputs for ReLU-net, shape (6, 1)."""
    return np.linspace(0.2, 1.2, 6)[:, None]


@pytest.fixture
def assert_spec_error(tmp_path):
    """``assert_spec_error(text, needles)``: loading a spec file holding ``text`` fails with a
    one-line :class:`~nnqft_ppl.SpecError` that contains every string in ``needles``."""
    import nnqft_ppl as nq

    def check(text: str, needles) -> None:
        path = tmp_path / "spec.toml"
        path.write_text(text)
        with pytest.raises(nq.SpecError) as info:
            nq.load_spec(path)
        message = str(info.value)
        assert "\n" not in message
        for needle in needles:
            assert needle in message, (needle, message)

    return check
