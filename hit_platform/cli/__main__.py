"""`python -m hit_platform.cli`: the same as the `hit-platform` command."""

import sys

from hit_platform.cli.main import main

sys.exit(main())
