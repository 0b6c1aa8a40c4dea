"""Every error code puraify can report, with its HTTP status, CLI exit code and what to do.

``ErrorCode`` is the one list of codes; ``CODES`` gives each one its ``CodeInfo``. A code is a
``StrEnum`` member, so it equals its string: ``ErrorCode.TIMEOUT == "timeout"``, and code that
compares or stores plain strings keeps working. The status of a registered code wins over the
status of the error class that carries it (see ``PuraifyError.http_status``); a code that is not
registered (an action from a third party) gets its class's status.

``python -m puraify.codes`` prints docs/errors.md, the table users read; a test keeps the
committed file equal to it. Imports only the standard library: every layer may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from http import HTTPStatus
from types import MappingProxyType
from typing import Final

__all__ = ["CODES", "CodeInfo", "ErrorCode", "ExitCode", "describe", "markdown"]


class ExitCode(IntEnum):
    """The CLI's exit codes (DESIGN.md §4)."""

    OK = 0
    FAILED = 1  # the mission failed or was cancelled
    INVALID = 2  # invalid input: load, validation, safety
    INTERNAL = 3


class ErrorCode(StrEnum):
    """A stable code a caller can branch on; docs/errors.md says what each one means."""

    ACTION_FAILED = "action_failed"
    BAD_REQUEST = "bad_request"
    BODY_TOO_LARGE = "body_too_large"
    CANCELLED = "cancelled"
    CIRCUIT_OPEN = "circuit_open"
    COMMAND_DISABLED = "command_disabled"
    COMMAND_FAILED = "command_failed"
    COMMAND_NOT_FOUND = "command_not_found"
    COMMAND_REFUSED = "command_refused"
    CREDENTIAL_INVALID = "credential_invalid"
    CREDENTIAL_MISSING = "credential_missing"
    CREDENTIAL_UNDECRYPTABLE = "credential_undecryptable"
    CONNECTION_ERROR = "connection_error"
    CONSTRAINT_VIOLATION = "constraint_violation"
    DEPENDENCY_CYCLE = "dependency_cycle"
    DOCUMENT_TOO_DEEP = "document_too_deep"
    DOCUMENT_TOO_LARGE = "document_too_large"
    DUPLICATE_KEY = "duplicate_key"
    DUPLICATE_STEP_ID = "duplicate_step_id"
    ENGINE_EXISTS = "engine_exists"
    ENGINE_UNKNOWN = "engine_unknown"
    FILE_ERROR = "file_error"
    FILE_EXISTS = "file_exists"
    FILE_NOT_FOUND = "file_not_found"
    FILE_TOO_LARGE = "file_too_large"
    FILE_TYPE_REFUSED = "file_type_refused"
    FORBIDDEN = "forbidden"
    FORBIDDEN_TAG = "forbidden_tag"
    GUARD_REFUSED = "guard_refused"
    HTTP_ERROR = "http_error"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INTERNAL_ERROR = "internal_error"
    INTERRUPTED = "interrupted"
    INVALID_ARGUMENTS = "invalid_arguments"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    INVALID_HEADER = "invalid_header"
    INVALID_CREDENTIAL = "invalid_credential"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_FIELD = "invalid_field"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_MISSION = "invalid_mission"
    INVALID_NUMBER = "invalid_number"
    INVALID_PARAMETERS = "invalid_parameters"
    INVALID_PROJECT = "invalid_project"
    INVALID_REFERENCE = "invalid_reference"
    INVALID_REQUEST = "invalid_request"
    INVALID_SETTINGS = "invalid_settings"
    INVALID_STATUS = "invalid_status"
    INVALID_RESPONSE = "invalid_response"
    INVALID_SCHEMA = "invalid_schema"
    INVALID_SCOPE = "invalid_scope"
    INVALID_URL = "invalid_url"
    JSON_SYNTAX = "json_syntax"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MISSING_DEPENDENCY = "missing_dependency"
    MISSION_TIMEOUT = "mission_timeout"
    NO_STEPS = "no_steps"
    NOT_FOUND = "not_found"
    NUMBER_TOO_LARGE = "number_too_large"
    PARSE_ERROR = "parse_error"
    PATH_OUTSIDE_JAIL = "path_outside_jail"
    PLATFORM_UNAVAILABLE = "platform_unavailable"
    OAUTH_ERROR = "oauth_error"
    OAUTH_PROVIDER_UNKNOWN = "oauth_provider_unknown"
    OAUTH_STATE_INVALID = "oauth_state_invalid"
    POLICY_DENIED = "policy_denied"
    POLICY_UNAVAILABLE = "policy_unavailable"
    PROFILE_REFUSED = "profile_refused"
    RESOURCE_LIMIT = "resource_limit"
    RESPONSE_TOO_LARGE = "response_too_large"
    RUN_BUSY = "run_busy"
    RATE_LIMITED = "rate_limited"
    RUN_NOT_FOUND = "run_not_found"
    SAFETY_REFUSED = "safety_refused"
    SCHEMA_MISMATCH = "schema_mismatch"
    SSRF_BLOCKED = "ssrf_blocked"
    STORE_ERROR = "store_error"
    STORE_SCHEMA = "store_schema"
    STORE_UNAVAILABLE = "store_unavailable"
    TEMPLATE_ERROR = "template_error"
    TEMPLATE_LIMIT = "template_limit"
    TEMPLATE_REFERENCE_ERROR = "template_reference_error"
    TEMPLATE_SECURITY_ERROR = "template_security_error"
    TIMEOUT = "timeout"
    TOO_MANY_ALIASES = "too_many_aliases"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_MANY_STEPS = "too_many_steps"
    UNAUTHENTICATED = "unauthenticated"
    UNKNOWN_ACTION = "unknown_action"
    UNKNOWN_KEY = "unknown_key"
    UNKNOWN_OUTCOME = "unknown_outcome"
    UNKNOWN_REFERENCE = "unknown_reference"
    UNKNOWN_STEP_TYPE = "unknown_step_type"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UPSTREAM_ERROR = "upstream_error"
    VALIDATION_FAILED = "validation_failed"
    VAULT_ERROR = "vault_error"
    VAULT_KEY_MISSING = "vault_key_missing"
    VAULT_UNAVAILABLE = "vault_unavailable"
    YAML_SYNTAX = "yaml_syntax"


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What a code means: its HTTP status, the CLI's exit code, and a sentence for the user.

    ``exit_code`` is the exit of a CLI command that reports this error itself; ``None`` for
    codes only the HTTP API answers. A run whose step fails exits 1 whatever the step's code.
    """

    status: HTTPStatus
    exit_code: ExitCode | None
    sentence: str


CODES: Final[Mapping[ErrorCode, CodeInfo]] = MappingProxyType(
    {
        ErrorCode.ACTION_FAILED: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "A step's action failed without a more precise code; the message says why and "
            "`retryable` whether trying again may help.",
        ),
        ErrorCode.BAD_REQUEST: CodeInfo(
            HTTPStatus.BAD_REQUEST,
            None,
            "The request is malformed; correct it as the message says and send it again.",
        ),
        ErrorCode.BODY_TOO_LARGE: CodeInfo(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            None,
            "The request body is larger than the server accepts (`PURAIFY_MAX_BODY_BYTES`); "
            "send less.",
        ),
        ErrorCode.CANCELLED: CodeInfo(
            HTTPStatus.CONFLICT,
            ExitCode.FAILED,
            "The step did not finish because its run stopped first (cancelled, past its "
            "deadline, or stopped by another step's failure); `puraify runs retry` runs it again.",
        ),
        ErrorCode.COMMAND_DISABLED: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "Command steps are off on this engine (the server's default); an operator turns "
            "them on with `PURAIFY_COMMAND_ENABLED`.",
        ),
        ErrorCode.COMMAND_FAILED: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The command exited with a code outside `success_codes`; its exit code, stdout and "
            "stderr are in the error's details.",
        ),
        ErrorCode.COMMAND_NOT_FOUND: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "The program is not on the engine's PATH; install it or name one that is.",
        ),
        ErrorCode.COMMAND_REFUSED: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "The command guard refused this program or argument (shells, inline code, "
            "privilege tools); run a plain program with an argv list.",
        ),
        ErrorCode.CONNECTION_ERROR: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The platform could not be reached (name lookup, refused or reset connection); it "
            "is retried, and if it persists check the URL and the network.",
        ),
        ErrorCode.CONSTRAINT_VIOLATION: CodeInfo(
            HTTPStatus.CONFLICT,
            ExitCode.FAILED,
            "The database refused the record: a unique key already holds this value, or a "
            "required, foreign-key or check constraint is not met; the message is the database's.",
        ),
        ErrorCode.DEPENDENCY_CYCLE: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "Steps depend on each other in a loop; the message shows the cycle, so remove one "
            "of its `depends_on` entries.",
        ),
        ErrorCode.DOCUMENT_TOO_DEEP: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The document nests deeper than the limit (`PURAIFY_MAX_DOCUMENT_DEPTH`); flatten it.",
        ),
        ErrorCode.DOCUMENT_TOO_LARGE: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The mission document is larger than the limit (`PURAIFY_MAX_DOCUMENT_BYTES`); "
            "split it.",
        ),
        ErrorCode.DUPLICATE_KEY: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A mapping repeats a key, so one of the values would be lost silently; keep one.",
        ),
        ErrorCode.DUPLICATE_STEP_ID: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "Two steps share an id; give each step its own.",
        ),
        ErrorCode.FILE_ERROR: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            None,
            "The file step could not do what it was asked (a name too long, a file where a "
            "folder should be, a folder moved into itself, ...); fix the step's paths.",
        ),
        ErrorCode.FILE_EXISTS: CodeInfo(
            HTTPStatus.CONFLICT,
            ExitCode.FAILED,
            "The destination already exists; set `overwrite: true` or choose another path.",
        ),
        ErrorCode.FILE_NOT_FOUND: CodeInfo(
            HTTPStatus.NOT_FOUND,
            ExitCode.INVALID,
            "The file does not exist: the mission file given to the CLI, or a workspace file a "
            "step reads (the step then fails); check the path.",
        ),
        ErrorCode.FILE_TOO_LARGE: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "The workspace file is larger than a step may read or edit; use a smaller file.",
        ),
        ErrorCode.FILE_TYPE_REFUSED: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "The path is not a regular file (a device, socket, pipe, or a link where none may "
            "be); file steps work on regular files only.",
        ),
        ErrorCode.FORBIDDEN: CodeInfo(
            HTTPStatus.FORBIDDEN,
            None,
            "The caller lacks what this call needs: a token its scope (`puraify tokens create "
            "--scope ...`), an engine its permission (`control:admin` for Engine Control's "
            "changes, or to ask about another engine).",
        ),
        ErrorCode.FORBIDDEN_TAG: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The YAML uses a tag that would build objects or run code; only plain data is "
            "accepted.",
        ),
        ErrorCode.GUARD_REFUSED: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "A safety guard refused the operation; the message names the guard and the reason.",
        ),
        ErrorCode.HTTP_ERROR: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The platform answered with an unexpected HTTP status, given in the error; 408, "
            "429 and 5xx answers are retried.",
        ),
        ErrorCode.IDEMPOTENCY_CONFLICT: CodeInfo(
            HTTPStatus.CONFLICT,
            ExitCode.INVALID,
            "This idempotency key was already used with another request or mission, or its "
            "first request is still running; use a new key, or wait for the first answer.",
        ),
        ErrorCode.INTERNAL_ERROR: CodeInfo(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ExitCode.INTERNAL,
            "The engine failed in a way it did not foresee; the request id (or the CLI's "
            "message) finds it in the log, and it is worth reporting.",
        ),
        ErrorCode.INVALID_ENCODING: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The document is not UTF-8; save it as UTF-8.",
        ),
        ErrorCode.INVALID_FIELD: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A mission field has the wrong type or value; the message names the field and what "
            "it expects.",
        ),
        ErrorCode.INVALID_IDEMPOTENCY_KEY: CodeInfo(
            HTTPStatus.BAD_REQUEST,
            None,
            "The Idempotency-Key header is longer than 200 characters; send a shorter key.",
        ),
        ErrorCode.INVALID_NUMBER: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "NaN and infinities have no JSON spelling, so a mission cannot hold them; write the "
            "value as a string, or leave it out.",
        ),
        ErrorCode.INVALID_MISSION: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The document is not a mission (it has no `steps` list); see docs/missions.md.",
        ),
        ErrorCode.INVALID_PARAMETERS: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A step's parameters do not fit its action; `puraify actions show <name>` (or "
            "GET /actions/{name}) prints what it takes.",
        ),
        ErrorCode.INVALID_PROJECT: CodeInfo(
            HTTPStatus.BAD_REQUEST,
            ExitCode.INVALID,
            "A token needs a project; name one with `--project`.",
        ),
        ErrorCode.INVALID_REFERENCE: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A template reads a step that does not exist, its own output, or a step that does "
            "not run before it; fix the name or add the step to `depends_on`.",
        ),
        ErrorCode.INVALID_SETTINGS: CodeInfo(
            HTTPStatus.BAD_REQUEST,
            ExitCode.INVALID,
            "A setting (a PURAIFY_* variable or the config file) has a value puraify cannot "
            "use; fix it (docs/configuration.md lists them).",
        ),
        ErrorCode.INVALID_ARGUMENTS: CodeInfo(
            HTTPStatus.BAD_REQUEST,
            ExitCode.INVALID,
            "The command line is not one puraify accepts (an unknown option, a value of the "
            "wrong kind); `puraify COMMAND --help` shows what it takes.",
        ),
        ErrorCode.INVALID_REQUEST: CodeInfo(
            HTTPStatus.BAD_REQUEST,
            None,
            "The request is not one the API accepts (a JSON object naming an action, fields of "
            "the right types; a query, path or header value of the wrong type answers 422); "
            "see docs/api.md.",
        ),
        ErrorCode.INVALID_RESPONSE: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The platform's answer could not be read in the format the step asked for (for "
            "example `response_format: json`).",
        ),
        ErrorCode.INVALID_SCHEMA: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "The JSON Schema given to the step is itself invalid; fix the schema.",
        ),
        ErrorCode.INVALID_SCOPE: CodeInfo(
            HTTPStatus.BAD_REQUEST,
            ExitCode.INVALID,
            "A token was asked for with an unknown scope; the message lists the known ones.",
        ),
        ErrorCode.INVALID_URL: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "The URL cannot be parsed; give an absolute http or https URL.",
        ),
        ErrorCode.JSON_SYNTAX: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The JSON is not well-formed; fix it at the line and column given.",
        ),
        ErrorCode.METHOD_NOT_ALLOWED: CodeInfo(
            HTTPStatus.METHOD_NOT_ALLOWED,
            None,
            "This path does not take this HTTP method; /docs lists the routes.",
        ),
        ErrorCode.MISSING_DEPENDENCY: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A step's `depends_on` names a step that does not exist; fix the id.",
        ),
        ErrorCode.MISSION_TIMEOUT: CodeInfo(
            HTTPStatus.GATEWAY_TIMEOUT,
            ExitCode.FAILED,
            "The mission ran past `config.timeout_seconds` and its unfinished steps were "
            "cancelled; raise the deadline or make the steps faster.",
        ),
        ErrorCode.NO_STEPS: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The mission has no steps; add at least one.",
        ),
        ErrorCode.NOT_FOUND: CodeInfo(
            HTTPStatus.NOT_FOUND,
            ExitCode.INVALID,
            "Nothing is at this path or id, or it belongs to another project; check the URL, "
            "the id and the token's project.",
        ),
        ErrorCode.NUMBER_TOO_LARGE: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A number has too many digits to be read safely; write it as a string.",
        ),
        ErrorCode.PARSE_ERROR: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "The data is not valid JSON, YAML, XML or CSV, or is unsafe XML; the message says "
            "where.",
        ),
        ErrorCode.PATH_OUTSIDE_JAIL: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "The path leads out of the workspace or into the engine's own state; use a path "
            "inside the workspace.",
        ),
        ErrorCode.PROFILE_REFUSED: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.INVALID,
            "The run was created in the local safety profile; a server runs only server-profile "
            "runs, so retry or resume it with `puraify runs` on the operator's machine.",
        ),
        ErrorCode.POLICY_DENIED: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "Engine Control does not let this engine run this action on this platform now (a "
            "permission, the platform's status or a feature flag).",
        ),
        ErrorCode.POLICY_UNAVAILABLE: CodeInfo(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ExitCode.FAILED,
            "Engine Control could not be asked whether this action may run, so it did not run "
            "(the engine fails closed); it is retryable, and the operator should check that "
            "Engine Control is reachable.",
        ),
        ErrorCode.PLATFORM_UNAVAILABLE: CodeInfo(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ExitCode.FAILED,
            "The platform is in maintenance (or disabled or deprecated) in Engine Control, so "
            "nothing is sent to it; try again once an operator sets it active.",
        ),
        ErrorCode.ENGINE_EXISTS: CodeInfo(
            HTTPStatus.CONFLICT,
            ExitCode.INVALID,
            "An engine with this id is registered already (ids are never reused, also after a "
            "revocation); choose another id, or rotate the existing engine's key.",
        ),
        ErrorCode.ENGINE_UNKNOWN: CodeInfo(
            HTTPStatus.NOT_FOUND,
            ExitCode.INVALID,
            "No engine with this id is registered, or it was revoked; `puraify engines list` "
            "shows them.",
        ),
        ErrorCode.INVALID_STATUS: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A platform's status is one of active, maintenance, disabled or deprecated.",
        ),
        ErrorCode.RESOURCE_LIMIT: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "The step passed a resource limit of its sandbox (memory) and was stopped; give it "
            "less to do, or have the operator raise the limit.",
        ),
        ErrorCode.RESPONSE_TOO_LARGE: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The platform's answer is larger than a step may read; ask for less (paging, filters).",
        ),
        ErrorCode.RUN_BUSY: CodeInfo(
            HTTPStatus.CONFLICT,
            ExitCode.INVALID,
            "The run has not finished; cancel it, or wait for it, before retrying or resuming it.",
        ),
        ErrorCode.SAFETY_REFUSED: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The safety analysis failed the mission at the configured level, so nothing ran; "
            "`findings` lists each risk (`puraify safety validate` shows them too). Change the "
            "mission, or have the operator choose another `safety_level`.",
        ),
        ErrorCode.RUN_NOT_FOUND: CodeInfo(
            HTTPStatus.NOT_FOUND,
            ExitCode.INVALID,
            "No run has this id in this project; `puraify runs list` (or GET /runs) shows the "
            "runs.",
        ),
        ErrorCode.SCHEMA_MISMATCH: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "The data does not match the JSON Schema; the details say where.",
        ),
        ErrorCode.SSRF_BLOCKED: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "The request would reach a private, loopback, link-local or metadata address, or "
            "uses a scheme other than http(s); an operator may allow a host with "
            "`PURAIFY_SSRF_ALLOW_HOSTS`.",
        ),
        ErrorCode.STORE_ERROR: CodeInfo(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ExitCode.INTERNAL,
            "The run store could not read or write; the message says why.",
        ),
        ErrorCode.STORE_SCHEMA: CodeInfo(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ExitCode.INTERNAL,
            "The database schema is older than this engine; run `puraify db upgrade`.",
        ),
        ErrorCode.STORE_UNAVAILABLE: CodeInfo(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ExitCode.INTERNAL,
            "The run store cannot be reached or written (down, or its disk is full); try again "
            "later, and check the database, its URL and its free space.",
        ),
        ErrorCode.TEMPLATE_ERROR: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A template has a syntax error or could not be rendered; the message names the field.",
        ),
        ErrorCode.TEMPLATE_LIMIT: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A template's output, numbers or render time went over their limit; render less.",
        ),
        ErrorCode.TEMPLATE_REFERENCE_ERROR: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A template reads a path that holds no value when the step runs; check the step's "
            "output or the variable's name.",
        ),
        ErrorCode.TEMPLATE_SECURITY_ERROR: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A template tried to leave the sandbox or produced something other than data; "
            "templates only read and shape data.",
        ),
        ErrorCode.TIMEOUT: CodeInfo(
            HTTPStatus.GATEWAY_TIMEOUT,
            ExitCode.FAILED,
            "The step ran past its timeout and was stopped (it is retried if it has retries); "
            "raise `timeout_seconds`, or follow a long single action at /runs/{id}.",
        ),
        ErrorCode.TOO_MANY_ALIASES: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The YAML uses more aliases than allowed, which guards against alias bombs; write "
            "the values out.",
        ),
        ErrorCode.TOO_MANY_REDIRECTS: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The platform redirected too many times; check the URL.",
        ),
        ErrorCode.TOO_MANY_STEPS: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The mission has more steps than the limit (`PURAIFY_MAX_STEPS`); split it.",
        ),
        ErrorCode.UNAUTHENTICATED: CodeInfo(
            HTTPStatus.UNAUTHORIZED,
            None,
            "No valid credentials: send `Authorization: Bearer <token>` with a token that is "
            "known, unexpired and not revoked.",
        ),
        ErrorCode.UNKNOWN_ACTION: CodeInfo(
            HTTPStatus.NOT_FOUND,
            ExitCode.INVALID,
            "No action has this name; GET /actions or `puraify actions list` lists them.",
        ),
        ErrorCode.UNKNOWN_KEY: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The document has a key puraify does not know (a warning, an error under "
            "`--strict`); the hint names the key you probably meant.",
        ),
        ErrorCode.INTERRUPTED: CodeInfo(
            HTTPStatus.SERVICE_UNAVAILABLE,
            None,
            "The engine running this attempt stopped (a crash or a kill); the step was sent "
            "again with the same idempotency key when the run was resumed.",
        ),
        ErrorCode.UNKNOWN_OUTCOME: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The engine stopped during a call that is not safe to repeat, so whether the "
            "platform acted is unknown; check the platform, then retry the run or set "
            "`retry_on_unknown: true`.",
        ),
        ErrorCode.UNKNOWN_REFERENCE: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "A template reads a name that is neither a step, a variable nor a built-in; the "
            "hint names the closest one.",
        ),
        ErrorCode.UNKNOWN_STEP_TYPE: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "No action has this `step_type`; `puraify actions list` shows them, and the hint "
            "names the closest.",
        ),
        ErrorCode.UNSUPPORTED_MEDIA_TYPE: CodeInfo(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            None,
            "Send the mission as JSON or YAML (`Content-Type: application/json` or "
            "`application/yaml`).",
        ),
        ErrorCode.VALIDATION_FAILED: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The mission has several errors; `issues` lists each one with its code and place.",
        ),
        ErrorCode.VAULT_KEY_MISSING: CodeInfo(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ExitCode.INTERNAL,
            "The vault has no key that opens its credentials: set PURAIFY_MASTER_KEY, or put "
            "back the key file `puraify init` made (<home>/vault.key); credentials are never "
            "handed out empty.",
        ),
        ErrorCode.INVALID_HEADER: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.FAILED,
            "A header value (an email's to, from, subject, ...) holds a line break, which would "
            "let it write headers of its own; remove the CR or LF.",
        ),
        ErrorCode.CIRCUIT_OPEN: CodeInfo(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ExitCode.FAILED,
            "The platform failed several times in a row for this credential, so calls to it are "
            "paused for a while (`circuit_reset_seconds`); it is retryable.",
        ),
        ErrorCode.RATE_LIMITED: CodeInfo(
            HTTPStatus.TOO_MANY_REQUESTS,
            ExitCode.FAILED,
            "The platform answered that it is rate limited (429, or its own error); it is "
            "retryable, after the time it asked for.",
        ),
        ErrorCode.UPSTREAM_ERROR: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The platform failed (a 5xx, or an error of its own it did not explain); the "
            "message gives what it said; 5xx answers are retryable.",
        ),
        ErrorCode.VAULT_UNAVAILABLE: CodeInfo(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ExitCode.FAILED,
            "The vault (`vault_url`) could not be asked for the step's credential, or refused "
            "this engine (it needs vault:read in Engine Control); the step did not run.",
        ),
        ErrorCode.CREDENTIAL_UNDECRYPTABLE: CodeInfo(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ExitCode.INTERNAL,
            "A stored credential does not open with its key: it was altered or moved from "
            "another row; store it again.",
        ),
        ErrorCode.CREDENTIAL_MISSING: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "Missing token or insufficient scope: the vault holds no credential for this "
            "platform in this project (or for this user); store one (`puraify vault set`, "
            "`PUT /vault/credentials/...` or `POST /auth/start`).",
        ),
        ErrorCode.CREDENTIAL_INVALID: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "The platform's credential is no longer valid (its refresh was refused, or it was "
            "marked invalid); connect the platform again to store a new one.",
        ),
        ErrorCode.INSUFFICIENT_SCOPE: CodeInfo(
            HTTPStatus.FORBIDDEN,
            ExitCode.FAILED,
            "Missing token or insufficient scope: the stored credential does not grant every "
            "scope the action needs (the message names them); connect the platform again with "
            "those scopes.",
        ),
        ErrorCode.OAUTH_PROVIDER_UNKNOWN: CodeInfo(
            HTTPStatus.NOT_FOUND,
            ExitCode.INVALID,
            "No OAuth2 provider is configured for this platform; add it to `oauth_providers` "
            "in the settings (presets exist for slack, google and notion).",
        ),
        ErrorCode.OAUTH_STATE_INVALID: CodeInfo(
            HTTPStatus.UNAUTHORIZED,
            ExitCode.FAILED,
            "The authorization's `state` is unknown, expired or already used; start the "
            "connection again (`POST /auth/start`).",
        ),
        ErrorCode.OAUTH_ERROR: CodeInfo(
            HTTPStatus.BAD_GATEWAY,
            ExitCode.FAILED,
            "The platform's authorization server refused or failed the token request; the "
            "message gives its error.",
        ),
        ErrorCode.INVALID_CREDENTIAL: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The credential's type or value is not one the vault takes; the message names the "
            "fields its type holds.",
        ),
        ErrorCode.VAULT_ERROR: CodeInfo(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ExitCode.FAILED,
            "Credentials could not be stored, found or decrypted; check the vault's key and "
            "the stored credential.",
        ),
        ErrorCode.YAML_SYNTAX: CodeInfo(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ExitCode.INVALID,
            "The YAML is not well-formed; fix it at the line and column given.",
        ),
    }
)

_BY_VALUE: Final[dict[str, CodeInfo]] = {code.value: info for code, info in CODES.items()}


def describe(code: str) -> CodeInfo | None:
    """The registry's entry for ``code`` (a member or its string), or ``None`` if unregistered."""
    return _BY_VALUE.get(code)


def markdown() -> str:
    """docs/errors.md: every registered code with its HTTP status, CLI exit code and sentence."""
    lines = [
        "# Error codes",
        "",
        "Every error puraify reports carries a stable `code`: in the HTTP envelope",
        '(`"error": {"code", "retryable", ...}`), in a step\'s result, and in the CLI\'s message',
        "(`--json` prints it as `error.code`). This table is generated from `puraify/codes.py`",
        "(`python -m puraify.codes > docs/errors.md`); a test keeps the two equal.",
        "",
        "- **HTTP** is the status the API answers with this code. An error whose code is not",
        "  listed (from a third-party action) answers its error class's status: 502 for a",
        "  failed action.",
        "- **CLI** is the exit code when a command reports this error itself: 1 failed,",
        "  2 invalid input, 3 internal error; — where only the HTTP API answers it. A run",
        "  that fails exits 1, whatever its failed step's code.",
        "",
        "| code | HTTP | CLI | what happened, and what to do |",
        "|---|---|---|---|",
    ]
    for code in sorted(CODES):
        info = CODES[code]
        exit_code = "—" if info.exit_code is None else str(int(info.exit_code))
        sentence = info.sentence.replace("|", "\\|")
        lines.append(f"| `{code.value}` | {int(info.status)} | {exit_code} | {sentence} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
