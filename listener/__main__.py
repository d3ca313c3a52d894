"""python -m listener → the command line."""

from listener.cli import main

main()
