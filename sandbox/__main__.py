"""``python -m lienthong.sandbox --port P``: run the national-services emulator in the foreground."""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
