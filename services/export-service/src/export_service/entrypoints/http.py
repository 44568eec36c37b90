"""`/erp-connections` REST routes (role `admin`); secrets go in, never come out."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Response, status
from fastapi.responses import JSONResponse
from orderflow_shared.auth import Principal, require_roles
from orderflow_shared.web import (
    VALIDATOR_HEADERS,
    JsonInteger,
    PatchIn,
    PreconditionsDep,
    error_responses,
    links_by_id,
    problem,
    require_json_body,
    set_validators,
    string_header,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.config import JsonDict
from sqlalchemy.exc import IntegrityError

from export_service.domain.circuit import Circuit
from export_service.domain.connection import (
    MAX_DELIVERY_DEADLINE_SECONDS,
    ConnectorType,
    ErpConnection,
    LocalSettings,
    Secrets,
    SftpSettings,
)
from export_service.domain.errors import (
    ConnectionNotFound,
    DomainError,
    InvalidConnection,
    PreconditionFailed,
    TargetNotAllowed,
)
from export_service.domain.filenames import DEFAULT_TEMPLATE
from export_service.domain.renderers import FileFormat
from export_service.service_layer import connections as uc
from export_service.service_layer.circuits import circuit_of
from export_service.service_layer.ports import (
    Clock,
    LocalDirectoryPolicy,
    Transports,
    UnitOfWorkFactory,
)

Admin = Annotated[Principal, Depends(require_roles("admin"))]
FormatName = Literal["csv", "json", "xml"]
#: what the server takes (the domain checks the same): `ssh-keygen -lf` output
FINGERPRINT_PATTERN = r"^SHA256:[A-Za-z0-9+/]{43}=?$"
HOST_PATTERN = r"^[A-Za-z0-9._:\[\]-]{1,255}$"
USERNAME_PATTERN = r"^[A-Za-z0-9._@+-]{1,128}$"
ABSOLUTE_PATH_PATTERN = r"^/[^\x00]*$"
#: `{export_id}` once at least, other placeholders of domain.filenames, no other braces
_PLACEHOLDER = r"\{(?:export_id|external_ref|draft_id|date)\}"
TEMPLATE_PATTERN = (
    rf"^(?:[^{{}}\x00]|{_PLACEHOLDER})*\{{export_id\}}(?:[^{{}}\x00]|{_PLACEHOLDER})*$"
)
EXAMPLE_FINGERPRINT = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"


Port = Annotated[int, JsonInteger(1, 65535)]
DeadlineSeconds = Annotated[int, JsonInteger(1, MAX_DELIVERY_DEADLINE_SECONDS)]

#: a connection's name: no control characters, and something besides white space (the
#: white space of JSON Schema's and Python's regexes alike, spelled out)
_SPACE = r" \t\n\x0b\x0c\r\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_CONTROL = r"\x00-\x1f\x7f-\x9f"
NAME_PATTERN = f"^[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*$"

#: the secrets an sftp connection is created with: a key, a password or both
_ONE_SECRET: JsonDict = {
    "anyOf": [
        {"required": ["private_key"], "properties": {"private_key": {"type": "string"}}},
        {"required": ["password"], "properties": {"password": {"type": "string"}}},
    ]
}


class SftpIn(BaseModel):
    # strict: a JSON `0` is no boolean and `"22"` no port
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_ONE_SECRET)

    host: str = Field(min_length=1, max_length=255, pattern=HOST_PATTERN)
    port: Port = 22
    username: str = Field(min_length=1, max_length=128, pattern=USERNAME_PATTERN)
    remote_directory: str = Field(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")
    host_key_fingerprint: str = Field(
        description="SHA256 fingerprint of the server's host key as `ssh-keygen -lf` "
        "prints it: `SHA256:` and 43 base64 characters",
        max_length=128,
        pattern=FINGERPRINT_PATTERN,
        examples=[EXAMPLE_FINGERPRINT],
    )
    private_key: SecretStr | None = Field(
        default=None, min_length=1, description="OpenSSH private key"
    )
    password: SecretStr | None = Field(default=None, min_length=1)


class SftpPatch(PatchIn):
    """Only the fields sent change; `null` for a secret keeps it, elsewhere it is a 422."""

    model_config = ConfigDict(extra="forbid", strict=True)
    nullable_fields = frozenset({"private_key", "password"})

    host: str | None = Field(default=None, min_length=1, max_length=255, pattern=HOST_PATTERN)
    port: Port | None = None
    username: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=USERNAME_PATTERN
    )
    remote_directory: str | None = Field(
        default=None, min_length=1, max_length=1024, pattern=r"^[^\x00]+$"
    )
    host_key_fingerprint: str | None = Field(
        default=None, max_length=128, pattern=FINGERPRINT_PATTERN
    )
    private_key: SecretStr | None = Field(default=None, min_length=1)
    password: SecretStr | None = Field(default=None, min_length=1)


class LocalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    directory: str = Field(
        min_length=1,
        max_length=1024,
        pattern=ABSOLUTE_PATH_PATTERN,
        description="An absolute path inside the org's local root",
        examples=["/srv/orderflow/dropzones/demo/inbox"],
    )


#: the settings each connector type needs (an object, not `null`)
_SETTINGS_OF_TYPE: JsonDict = {
    "anyOf": [
        {
            "properties": {
                "connector_type": {"const": "sftp_dropzone"},
                "sftp": {"type": "object"},
            },
            "required": ["sftp"],
        },
        {
            "properties": {
                "connector_type": {"const": "local_dropzone"},
                "local": {"type": "object"},
            },
            "required": ["local"],
        },
    ]
}


class ConnectionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            **_SETTINGS_OF_TYPE,
            "example": {
                "name": "Demo ERP dropzone",
                "connector_type": "sftp_dropzone",
                "is_active": True,
                "file_format": "csv",
                "file_name_template": "{external_ref}_{export_id}",
                "sftp": {
                    "host": "127.0.0.1",
                    "port": 2222,
                    "username": "orderflow-sftp",
                    "remote_directory": "/inbox",
                    "host_key_fingerprint": EXAMPLE_FINGERPRINT,
                    "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n...",
                    "password": None,
                },
            },
        },
    )

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    connector_type: Literal["sftp_dropzone", "local_dropzone"]
    is_active: bool = False
    file_format: FormatName = "csv"
    file_name_template: str = Field(
        default=DEFAULT_TEMPLATE, min_length=1, max_length=200, pattern=TEMPLATE_PATTERN
    )
    csv_formula_guard: bool = Field(
        default=True,
        description="CSV cells starting with =, +, -, @, TAB or CR get a leading ' and "
        "quotes (OWASP), so a spreadsheet never runs them; false for ERPs that need raw values",
    )
    delivery_deadline_seconds: DeadlineSeconds | None = Field(
        default=None,
        description="How long a transient delivery failure is retried, per export, in "
        "seconds (1 to 30 days); null: the service's EXPORT_DELIVERY_DEADLINE_SECONDS (24 h)",
    )
    sftp: SftpIn | None = None
    local: LocalIn | None = None


class ConnectionPatch(PatchIn):
    """Only the fields sent change; `null` is a 422 (leave a field out to keep it)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    is_active: bool | None = None
    file_format: FormatName | None = None
    file_name_template: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=TEMPLATE_PATTERN
    )
    csv_formula_guard: bool | None = None
    delivery_deadline_seconds: DeadlineSeconds | None = None
    sftp: SftpPatch | None = None
    local: LocalIn | None = None


class SftpOut(BaseModel):
    host: str
    port: int
    username: str
    remote_directory: str
    host_key_fingerprint: str
    has_private_key: bool
    has_password: bool


class CircuitOut(BaseModel):
    """The connection's delivery circuit (`open`: exports wait, one probe at a time)."""

    state: Literal["closed", "open", "half_open"]
    since: datetime
    consecutive_failures: int
    last_error_code: str | None
    next_probe_at: datetime | None

    @classmethod
    def of(cls, c: Circuit) -> CircuitOut:
        return cls(
            state=c.state.value,
            since=c.since,
            consecutive_failures=c.consecutive_failures,
            last_error_code=c.last_error_code,
            next_probe_at=c.next_probe_at,
        )


class ConnectionOut(BaseModel):
    id: uuid.UUID
    org_id: str
    name: str
    connector_type: str
    is_active: bool
    file_format: str
    file_name_template: str
    csv_formula_guard: bool
    delivery_deadline_seconds: int | None = Field(
        description="Retry budget per export in seconds; null: the service's default."
    )
    sftp: SftpOut | None
    local: LocalIn | None
    created_at: datetime
    updated_at: datetime
    circuit: CircuitOut | None = Field(
        default=None, description="Delivery circuit; given by `GET /erp-connections/{id}`."
    )

    @classmethod
    def of(cls, c: ErpConnection, circuit: Circuit | None = None) -> ConnectionOut:
        sftp = None
        if c.sftp is not None:
            sftp = SftpOut(
                **asdict(c.sftp),
                has_private_key=bool(c.secrets.private_key),
                has_password=bool(c.secrets.password),
            )
        return cls(
            id=c.id,
            org_id=c.org_id,
            name=c.name,
            connector_type=c.connector_type.value,
            is_active=c.is_active,
            file_format=c.file_format.value,
            file_name_template=c.file_name_template,
            csv_formula_guard=c.csv_formula_guard,
            delivery_deadline_seconds=c.delivery_deadline_seconds,
            sftp=sftp,
            local=LocalIn(directory=c.local.directory) if c.local else None,
            created_at=c.created_at,
            updated_at=c.updated_at,
            circuit=CircuitOut.of(circuit) if circuit else None,
        )


class CheckOut(BaseModel):
    name: str
    ok: bool
    message: str


class TestOut(BaseModel):
    ok: bool
    checks: list[CheckOut]
    error_code: str | None
    message: str


_WORDING = {
    403: "Requires the role admin, or the target is not allowed for the org (a local "
    "directory outside its root, local dropzones disabled)",
    404: "No such connection in the caller's organisation",
    412: "If-Match / If-Unmodified-Since: the connection changed (nothing was done)",
    409: "Another active connection exists, or a concurrent change won",
    422: "Invalid input or an invalid connection (e.g. a directory outside the org's root)",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Every route can answer 400 (bad Content-Length), 401 and 403; plus `codes`."""
    return error_responses(400, 401, 403, *codes, descriptions=_WORDING)


def _with_validators(*codes: int, status_code: int = 200) -> dict[int | str, dict[str, Any]]:
    return {status_code: {"headers": VALIDATOR_HEADERS}, **_errors(*codes)}


def _validators(response: Response, connection: ErpConnection) -> None:
    set_validators(response, uc.version_of(connection), connection.updated_at)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _create_command(body: ConnectionIn) -> uc.CreateConnection:
    kind = ConnectorType(body.connector_type)
    sftp = local = None
    secrets = Secrets()
    if kind is ConnectorType.SFTP:
        if body.sftp is None:
            raise InvalidConnection("an sftp_dropzone connection needs the `sftp` settings")
        sftp = SftpSettings(
            host=body.sftp.host,
            port=body.sftp.port,
            username=body.sftp.username,
            remote_directory=body.sftp.remote_directory,
            host_key_fingerprint=body.sftp.host_key_fingerprint,
        )
        secrets = Secrets(_secret(body.sftp.private_key), _secret(body.sftp.password))
    elif body.local is not None:
        local = LocalSettings(directory=body.local.directory)
    return uc.CreateConnection(
        name=body.name,
        connector_type=kind,
        is_active=body.is_active,
        file_format=FileFormat(body.file_format),
        file_name_template=body.file_name_template,
        sftp=sftp,
        local=local,
        secrets=secrets,
        csv_formula_guard=body.csv_formula_guard,
        delivery_deadline_seconds=body.delivery_deadline_seconds,
    )


def _update_command(body: ConnectionPatch) -> uc.UpdateConnection:
    sftp_changes: dict[str, Any] | None = None
    secrets = None
    if body.sftp is not None:
        sftp_changes = body.sftp.model_dump(exclude_unset=True, exclude={"private_key", "password"})
        secrets = Secrets(_secret(body.sftp.private_key), _secret(body.sftp.password))
    return uc.UpdateConnection(
        name=body.name,
        file_format=FileFormat(body.file_format) if body.file_format else None,
        file_name_template=body.file_name_template,
        sftp_changes=sftp_changes,
        local=LocalSettings(body.local.directory) if body.local else None,
        secrets=secrets,
        is_active=body.is_active,
        csv_formula_guard=body.csv_formula_guard,
        delivery_deadline_seconds=body.delivery_deadline_seconds,
    )


def _actor(principal: Principal) -> uc.Actor:
    return uc.Actor(org_id=principal.org_id, user_id=principal.user_id)


def _deps(request: Request) -> tuple[UnitOfWorkFactory, Clock]:
    container = request.app.state.container
    return container.uow_factory, container.clock


def _local_policy(request: Request) -> LocalDirectoryPolicy:
    policy: LocalDirectoryPolicy = request.app.state.container.local_roots
    return policy


async def _change(
    use_case: Callable[..., Awaitable[ErpConnection]],
    change: Any,
    connection_id: uuid.UUID,
    principal: Principal,
    request: Request,
    response: Response,
    expect: PreconditionsDep,
) -> ConnectionOut:
    """Run a use case that changes one connection (under its preconditions), then answer
    with the connection and its new validators."""
    uow_factory, clock = _deps(request)
    changed = await use_case(
        uow_factory(),
        _actor(principal),
        connection_id,
        change,
        clock,
        local_policy=_local_policy(request),
        expect=expect,
    )
    _validators(response, changed)
    return ConnectionOut.of(changed)


def connections_router() -> APIRouter:
    router = APIRouter(prefix="/erp-connections", tags=["erp-connections"])

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        response_model=ConnectionOut,
        dependencies=[Depends(require_json_body)],
        responses={
            201: {
                "headers": {
                    "Location": string_header("URL of the new connection"),
                    **VALIDATOR_HEADERS,
                },
                "links": links_by_id(
                    "connection_id",
                    "get_connection",
                    "update_connection",
                    "activate_connection",
                    "deactivate_connection",
                    "test_connection",
                ),
            },
            **_errors(409, 413, 415, 422),
        },
        operation_id="create_connection",
        summary="Create an ERP connection (secrets go in, never come out)",
    )
    async def create(
        body: ConnectionIn, principal: Admin, request: Request, response: Response
    ) -> ConnectionOut:
        uow_factory, clock = _deps(request)
        connection = await uc.create_connection(
            uow_factory(),
            _actor(principal),
            _create_command(body),
            clock,
            local_policy=_local_policy(request),
        )
        response.headers["Location"] = f"/erp-connections/{connection.id}"
        _validators(response, connection)
        return ConnectionOut.of(connection)

    @router.get(
        "",
        response_model=list[ConnectionOut],
        responses=_errors(),
        operation_id="list_connections",
        summary="The org's ERP connections",
    )
    async def list_all(principal: Admin, request: Request) -> list[ConnectionOut]:
        uow_factory, _ = _deps(request)
        found = await uc.list_connections(uow_factory(), _actor(principal))
        return [ConnectionOut.of(c) for c in found]

    @router.get(
        "/{connection_id}",
        response_model=ConnectionOut,
        responses=_with_validators(404, 422),
        operation_id="get_connection",
        summary="An ERP connection with its delivery circuit",
    )
    async def get_one(
        connection_id: uuid.UUID, principal: Admin, request: Request, response: Response
    ) -> ConnectionOut:
        uow_factory, _ = _deps(request)
        found = await uc.get_connection(uow_factory(), _actor(principal), connection_id)
        _validators(response, found)
        circuit = await circuit_of(uow_factory(), found.org_id, found.id, found.created_at)
        return ConnectionOut.of(found, circuit)

    @router.patch(
        "/{connection_id}",
        response_model=ConnectionOut,
        dependencies=[Depends(require_json_body)],
        responses=_with_validators(404, 409, 412, 413, 415, 422, 428),
        operation_id="update_connection",
        summary="Change the fields sent (secrets left out keep their value)",
    )
    async def update(
        connection_id: uuid.UUID,
        body: ConnectionPatch,
        principal: Admin,
        request: Request,
        response: Response,
        expect: PreconditionsDep,
    ) -> ConnectionOut:
        return await _change(
            uc.update_connection,
            _update_command(body),
            connection_id,
            principal,
            request,
            response,
            expect,
        )

    def set_active_route(active: bool) -> Callable[..., Awaitable[ConnectionOut]]:
        async def set_active(
            connection_id: uuid.UUID,
            principal: Admin,
            request: Request,
            response: Response,
            expect: PreconditionsDep,
        ) -> ConnectionOut:
            return await _change(
                uc.set_active, active, connection_id, principal, request, response, expect
            )

        return set_active

    for active, verb, summary in (
        (True, "activate", "Activate the connection (the org's other active one is deactivated)"),
        (False, "deactivate", "Deactivate the connection"),
    ):
        router.post(
            f"/{{connection_id}}/{verb}",
            response_model=ConnectionOut,
            responses=_with_validators(404, 409, 412, 422, 428),
            operation_id=f"{verb}_connection",
            summary=summary,
        )(set_active_route(active))

    @router.post(
        "/{connection_id}/test",
        response_model=TestOut,
        responses=_errors(404, 422),
        operation_id="test_connection",
        summary="Check that the connection can deliver (reach, log in, write)",
    )
    async def test(connection_id: uuid.UUID, principal: Admin, request: Request) -> TestOut:
        uow_factory, _ = _deps(request)
        transports: Transports = request.app.state.container.transports
        report = await uc.test_connection(
            uow_factory(), _actor(principal), connection_id, transports
        )
        return TestOut(
            ok=report.ok,
            checks=[CheckOut(name=c.name, ok=c.ok, message=c.message) for c in report.checks],
            error_code=report.error_code,
            message=report.message,
        )

    return router


def install_domain_errors(app: FastAPI) -> None:
    """Map the domain's errors to HTTP status codes, in one place."""

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        code = 422
        if isinstance(exc, ConnectionNotFound):
            code = 404
        elif isinstance(exc, PreconditionFailed):
            code = 412
        elif isinstance(exc, TargetNotAllowed):
            code = 403
        return problem(request, code, exc.detail)

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return problem(
            request, 409, "Conflicting change: another active connection or a concurrent update"
        )

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(IntegrityError, conflict)
