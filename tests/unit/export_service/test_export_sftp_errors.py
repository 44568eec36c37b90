import socket

import asyncssh
import pytest
from export_service.adapters.sftp import classify, fingerprints_match
from export_service.domain.errors import ErrorCode


@pytest.mark.parametrize(
    ("exc", "context", "code"),
    [
        (ConnectionRefusedError(), "connect", ErrorCode.CONNECTION_REFUSED),
        (TimeoutError(), "connect", ErrorCode.CONNECTION_TIMEOUT),
        (socket.gaierror(), "connect", ErrorCode.HOST_UNREACHABLE),
        (ConnectionResetError(), "upload", ErrorCode.CONNECTION_LOST),
        (asyncssh.ConnectionLost("gone"), "upload", ErrorCode.CONNECTION_LOST),
        (asyncssh.SFTPConnectionLost("gone"), "upload", ErrorCode.CONNECTION_LOST),
        (asyncssh.HostKeyNotVerifiable("changed"), "connect", ErrorCode.HOST_KEY_MISMATCH),
        (asyncssh.PermissionDenied("no"), "connect", ErrorCode.AUTH_FAILED),
        (asyncssh.KeyImportError("bad"), "connect", ErrorCode.INVALID_CONFIGURATION),
        (asyncssh.SFTPNoSuchFile("no dir"), "directory", ErrorCode.REMOTE_DIR_MISSING),
        (asyncssh.SFTPNoSuchFile("no dir"), "upload", ErrorCode.REMOTE_DIR_MISSING),
        (asyncssh.SFTPPermissionDenied("ro"), "upload", ErrorCode.REMOTE_PERMISSION_DENIED),
        (asyncssh.SFTPFailure("disk full"), "upload", ErrorCode.REMOTE_IO_ERROR),
    ],
)
def test_failures_map_to_precise_codes(exc, context, code):
    assert classify(exc, context=context).code is code


def test_transient_and_permanent_follow_the_code():
    assert classify(ConnectionRefusedError()).is_transient
    assert not classify(asyncssh.PermissionDenied("no")).is_transient
    assert not classify(asyncssh.HostKeyNotVerifiable("x")).is_transient


def test_fingerprints_compare_with_or_without_base64_padding():
    pin = "SHA256:" + "a" * 43
    assert fingerprints_match(pin, pin + "=")
    assert not fingerprints_match(pin, "SHA256:" + "b" * 43)
