"""``python -m embedops``: the CLI."""

from embedops.cli import main

main()
