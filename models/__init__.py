"""The model zoo: declarative study specs (TOML), shipped with the package.

In a source checkout this is the top-level ``models/`` folder; installed, it is the package
``nnqft_ppl.models``. Read the specs with ``nnqft_ppl.load_spec("<name>")``.
"""
