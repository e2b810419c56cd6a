"""``python -m ai_ops_cli``: the ``ai-ops`` command without its console script."""

import sys

from ai_ops_cli import main

sys.exit(main())
