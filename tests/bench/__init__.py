"""`make bench`: speed of OrderFlow measured against raw limits of the same machine.

Every figure is paired with an anchor measured in the same run (a no-op FastAPI
route, OpenSSH `sftp -b`, a plain aiokafka producer loop, Postgres COPY) and reported
as a ratio. Nothing here asserts a speed; CI runs `--quick` only to keep it working.
"""
