# The SFTP dropzone for compose (and its local image, DEBIAN_IMAGE the debootstrap
# base): OpenSSH, key auth only, chrooted to /dropzone,
# uploads land in /dropzone/inbox. The client's public key comes from the
# SFTP_AUTHORIZED_KEY environment variable or a file mounted at /keys/authorized_keys.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-server \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin orderflow-sftp \
    && usermod -p '*' orderflow-sftp \
    && mkdir -p /run/sshd /dropzone/inbox /keys /etc/ssh/orderflow \
    && chown root:root /dropzone && chmod 0755 /dropzone \
    && chown orderflow-sftp:orderflow-sftp /dropzone/inbox

COPY deploy/sftp/sshd_config /etc/ssh/orderflow/sshd_config
COPY deploy/sftp/entrypoint.sh /usr/local/bin/sftp-entrypoint
RUN chmod 0755 /usr/local/bin/sftp-entrypoint

EXPOSE 2222
VOLUME ["/dropzone/inbox", "/etc/ssh/orderflow/keys"]
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222 && head -c 4 <&3 | grep -q SSH-'
ENTRYPOINT ["/usr/local/bin/sftp-entrypoint"]
