"""`python -m cnnspec`: the same entry point as the `cnnspec` console script."""

from cnnspec.cli import main

main()
