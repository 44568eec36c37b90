import sys

from audit_service.entrypoints.cli import main

sys.exit(main())
