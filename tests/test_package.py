"""The package stands on its own: layers import one way, registries take new parts without
library changes, float64 stays local, and an installed wheel runs the zoo from anywhere."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import nnqft_ppl as nq

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nnqft_ppl"
LAYERS = ["core", "networks", "oracle", "ensembles", "theory", "inference", "zoo", "cli"]


def _imports(path: Path) -> set[str]:
    """Subpackages of nnqft_ppl that ``path`` imports (relative or absolute, any depth)."""
    tree = ast.parse(path.read_text())
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = [name] + [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            parts = n.split(".")
            if parts[0] == "nnqft_ppl" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_before_it(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    for path in (PACKAGE / layer).rglob("*.py"):
        bad = _imports(path) - allowed
        assert not bad, f"{path.relative_to(ROOT)} imports later layer(s) {sorted(bad)}"


def test_init_files_only_re_export():
    for path in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            assert isinstance(node, ast.Import | ast.ImportFrom | ast.Assign | ast.Expr), (
                f"{path.relative_to(ROOT)} defines {type(node).__name__} at line {node.lineno}"
            )


def test_no_module_cites_documents_outside_the_repository():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "SPEC" not in text and "../shared" not in text, path
    readme = (ROOT / "README.md").read_text()
    assert "](../" not in readme


# --------------------------------------------------------------------------- registries
PLUGIN = textwrap.dedent(
    '''
    import jax.numpy as jnp
    from nnqft_ppl import Activation

    class Sin(Activation):
        """phi(z) = sin(z): E[sin u sin v] = exp(-(c11 + c22)/2) sinh(c12)."""

        name = "sin"

        def __call__(self, z, q):
            return jnp.sin(z)
    '''
)


@pytest.fixture(scope="module")
def sin_plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "sin_activation.py"
    path.write_text(PLUGIN)
    from nnqft_ppl.cli.app import load_plugin

    load_plugin(str(path))
    return path


def test_a_new_activation_gets_kernel_ensembles_oracle_spec_and_cli(sin_plugin, tmp_path):
    """Defining ``Sin`` outside the package is all it takes (no library code touched)."""
    arch = nq.MLP(activation="sin", sb0=0.5)
    X = np.array([[-0.7], [0.1], [0.8]])
    # kernel by the default Gauss-Hermite rule = the closed form sb1^2 + e^{-(q+q')/2} sinh(c)
    C = 0.25 + X @ X.T
    q = np.diag(C)
    closed = 1.0 + np.exp(-(q[:, None] + q[None, :]) / 2) * np.sinh(C)
    np.testing.assert_allclose(nq.kernel(arch, X), closed, rtol=1e-12)
    # exact single-layer cumulants, and an ensemble that agrees with them
    exact = nq.exact_cumulant(arch, X, width=3, order=4)
    stats = nq.correlators(arch, X, 3, 200_000, seed=1, check_errors=False)
    test = nq.chi_square(stats.cumulant(4) - exact, stats.covariance(4, method="exact"))
    assert test.p_value > 1e-3 and test.dof == 15
    # a spec naming it validates; the CLI builds it
    spec = nq.zoo.specs.parse_spec(
        {
            "name": "s",
            "title": "t",
            "study": "falloff",
            "architecture": {"kind": "mlp", "activation": "sin"},
            "ensemble": {"widths": [2], "n_networks": 1000},
        }
    )
    assert spec.architecture_for().phi.name == "sin"
    out = tmp_path / "s.zarr"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnqft_ppl.cli",
            "--plugin",
            str(sin_plugin),
            "sample",
            "--arch",
            "mlp",
            "--activation",
            "sin",
            "--width",
            "3",
            "--n-networks",
            "50",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "50 networks of MLP(depth=1, sin)" in result.stdout


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(ValueError, match="unknown activation 'sinus'; known: .*erf"):
        nq.MLP(activation="sinus")
    with pytest.raises(ValueError, match="unknown coupling form 'quintic'; known: .*constant"):
        nq.coupling_form("quintic")
    with pytest.raises(ValueError, match="unknown architecture"):
        nq.architecture_from_dict({"kind": "transformer"})


# --------------------------------------------------------------------------- float64
def test_importing_leaves_jax_float32_and_entry_points_compute_in_float64():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        import nnqft_ppl as nq
        assert not jax.config.jax_enable_x64
        assert jnp.ones(2).dtype == jnp.float32
        X = [[0.0], [1e-4]]
        K = nq.kernel(nq.GaussNet(), X)
        assert K.dtype.name == "float64"
        # K(0,0) - K(0,x) = 1 - exp(-x^2/2) = 5e-9: float32 (resolution 2e-7 at K = 2) loses it
        assert abs((K[0, 0] - K[0, 1]) - 5e-9) < 1e-15
        k4 = nq.exact_cumulant(nq.ErfNet(), nq.paper_inputs(nq.ErfNet()), 5)
        assert k4.dtype.name == "float64"
        stats = nq.correlators(nq.ErfNet(), [[0.1], [0.2]], 3, 2000, check_errors=False)
        assert stats.cumulant(4).dtype.name == "float64"
        # the user's own code in the same process is still float32
        assert jnp.ones(2).dtype == jnp.float32 and not jax.config.jax_enable_x64
        assert jax.jit(lambda x: x * 2)(jnp.ones(2)).dtype == jnp.float32
        nq.enable_x64()
        assert jnp.ones(2).dtype == jnp.float64
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


# --------------------------------------------------------------------------- wheel
@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project built as a wheel (what ``pip install .`` installs)."""
    folder = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(folder),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = folder.glob("nnqft_ppl-*.whl")
    return path


def _run_from_empty_folder(python, env, tmp_path, *command) -> subprocess.CompletedProcess:
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return subprocess.run(
        [str(python), *command], cwd=empty, env=env, capture_output=True, text=True, timeout=900
    )


def _check_installed(python, env, tmp_path):
    where = "import nnqft_ppl as nq; print(nq.load_spec('coupling_relu').name, nq.__file__)"
    out = _run_from_empty_folder(python, env, tmp_path, "-c", where)
    assert out.returncode == 0, out.stderr[-2000:]
    name, location = out.stdout.split()
    assert name == "coupling_relu" and str(ROOT) not in location
    run = _run_from_empty_folder(
        python,
        env,
        tmp_path,
        "-m",
        "nnqft_ppl.cli",
        "run",
        "rg_gauss",
        "--out",
        "r",
        "--scale",
        "test",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = (tmp_path / "empty" / "r" / "index.md").read_text()
    assert "- PASS:" in report and "- FAIL:" not in report
    assert "`models/rg_gauss.toml`" in report  # named relative to the zoo, not by install path


def test_the_wheel_ships_the_zoo_and_runs_outside_the_checkout(wheel, tmp_path):
    """The wheel alone (installed into a folder of its own, dependencies from this
    environment) finds the zoo by name and runs a spec from an empty folder."""
    import os

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert (target / "nnqft_ppl" / "models" / "coupling_relu.toml").is_file()
    env = os.environ | {"PYTHONPATH": str(target)}
    _check_installed(sys.executable, env, tmp_path)


@pytest.mark.slow
def test_pip_install_into_a_fresh_virtualenv(wheel, tmp_path):
    """``pip install`` of the wheel with its dependencies into a new virtualenv."""
    import os

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _check_installed(python, env, tmp_path)
