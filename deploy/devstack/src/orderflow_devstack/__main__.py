"""`python -m orderflow_devstack`."""

from orderflow_devstack.cli import main

raise SystemExit(main())
