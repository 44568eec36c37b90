import sys

from draft_api.entrypoints.cli import main

sys.exit(main())
