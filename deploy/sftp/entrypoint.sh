#!/bin/bash
# Host key once per volume, the client key from the environment, then sshd in the
# foreground with logs on stderr.
set -euo pipefail
keys=/etc/ssh/orderflow/keys
mkdir -p "$keys"
if [ ! -f "$keys/ssh_host_ed25519_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -f "$keys/ssh_host_ed25519_key"
fi
if [ -n "${SFTP_AUTHORIZED_KEY:-}" ]; then
    printf '%s\n' "$SFTP_AUTHORIZED_KEY" > /keys/authorized_keys
fi
chmod 0644 /keys/authorized_keys 2>/dev/null || true
chown orderflow-sftp:orderflow-sftp /dropzone/inbox
echo "host key: $(ssh-keygen -l -E sha256 -f "$keys/ssh_host_ed25519_key.pub")"
exec /usr/sbin/sshd -D -e -f /etc/ssh/orderflow/sshd_config
