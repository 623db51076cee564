"""python -m loadtest.peers: see loadtest/peers/comparison.py."""

import sys

from loadtest.peers.comparison import main

if __name__ == "__main__":
    sys.exit(main())
