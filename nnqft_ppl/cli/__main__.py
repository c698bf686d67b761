"""``python -m nnqft_ppl.cli``: the ``nnqft`` command line."""

from .app import main

main()
