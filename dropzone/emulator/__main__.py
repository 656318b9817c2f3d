"""``python -m dropzone.emulator``: the emulator without the rest of dropzone's CLI."""

import sys

from dropzone.emulator.cli import main

sys.exit(main())
