"""`python -m warmstart.cli` = the `warmstart` command."""

from warmstart.cli import main

main()
