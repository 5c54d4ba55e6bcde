"""``python -m imgproc``: the ``imgproc`` command."""

import sys

from imgproc.tools.cli import main

sys.exit(main())
