"""`python -m uno_local` is the same as `uno`."""

from uno_local.cli import main

if __name__ == "__main__":
    main()
