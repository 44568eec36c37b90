"""Fetch an SSH server's host-key fingerprint, for the admin to confirm before saving."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import asyncssh

TIMEOUT_SECONDS = 10.0


class HostKeyError(Exception):
    """A sentence for the page: why no fingerprint could be fetched."""


async def fetch_fingerprint(host: str, port: int, *, allow_private: bool) -> str:
    """`SHA256:...` of the key the server presents (as `ssh-keygen -lf` prints it)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError) as exc:
        raise HostKeyError(f"The host name {host} could not be resolved.") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise HostKeyError(f"The host name {host} has no address.")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not allow_private and (
            ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified
        ):
            raise HostKeyError(
                f"{host} is a private or loopback address; fetching its key is not allowed here."
            )
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(addresses[0], port), TIMEOUT_SECONDS
        )
    except TimeoutError as exc:
        raise HostKeyError(f"{host}:{port} did not answer within 10 seconds.") from exc
    except (OSError, asyncssh.Error) as exc:
        raise HostKeyError(f"No SSH server answered at {host}:{port} ({exc}).") from exc
    if key is None:
        raise HostKeyError(f"{host}:{port} presented no host key.")
    return str(key.get_fingerprint("sha256"))
