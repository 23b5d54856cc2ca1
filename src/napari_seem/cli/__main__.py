"""``python -m napari_seem.cli``: the same as the ``napari-seem`` command."""

import sys

from napari_seem.cli.main import main

sys.exit(main())
