import sys

from export_service.entrypoints.cli import main

sys.exit(main())
