"""One worker process: ``python worker.py [--queues bg-removal,face-crop] [--burst]``."""

import sys

from imgproc.worker import main

if __name__ == "__main__":
    sys.exit(main())
