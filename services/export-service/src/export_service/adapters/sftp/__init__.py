"""SFTP dropzone over asyncssh: pinned host keys, pooled sessions, pipelined uploads.

- `errors`: which network, SSH or SFTP failure is which delivery error.
- `probe`: the target, the address check, the pinned host key and its probing, and
  the steps of opening a session as they happen.
- `pool`: a small pool of sessions per target, with its metrics.
- `transport`: uploads through the pool, and the connection test.
"""

from export_service.adapters.sftp.errors import classify
from export_service.adapters.sftp.pool import SftpPool
from export_service.adapters.sftp.probe import fingerprints_match, is_refused_address
from export_service.adapters.sftp.transport import SftpDropzoneTransport

__all__ = [
    "SftpDropzoneTransport",
    "SftpPool",
    "classify",
    "fingerprints_match",
    "is_refused_address",
]
