"""``python -m dropzone``: the same as the ``dropzone`` command."""

import sys

from dropzone.cli import main

sys.exit(main())
