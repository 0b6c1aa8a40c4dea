"""Every single-action request shape from the seeds, normalized into one form.

- Execution Engine spec: ``{project_id, user_id, action, platform, parameters}``
- its flow form: ``{project_id, flow_id, action: {type, platform, payload}, user_context}``
- the PURAIFY execution README: ``{action, project, params}``, answered in its own words
  (``data`` beside ``result``; ``status: error`` and ``message`` for a failure)
- the Action Engine: ``POST /perform_action {user_id, platform, action_type, payload}``

The run service resolves action names (``RunService.resolve_action``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError

__all__ = ["ActionRequest", "in_readme_shape", "normalize_execute", "normalize_perform_action"]


@dataclass(frozen=True)
class ActionRequest:
    project_id: str | None
    action: str
    platform: str | None
    parameters: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(f"`{name}` must be an object", code="invalid_request", field=name)
    return value


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ApiError(f"`{name}` must be a string", code="invalid_request", field=name)
    return str(value)


def in_readme_shape(body: Any) -> bool:
    """Whether a ``POST /execute`` body is in the README's shape (``{action, project,
    params}``), whose callers read ``data``, ``message`` and ``status: error``: told by its
    own keys, before anything else in it is checked."""
    return (
        isinstance(body, dict)
        and not isinstance(body.get("action"), dict)
        and ("params" in body or ("project" in body and "project_id" not in body))
    )


def normalize_execute(body: Any) -> ActionRequest:
    """``POST /execute`` in any of its three shapes."""
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object", code="invalid_request")
    action = body.get("action")
    user_context = _object(body.get("user_context") or body.get("user"), "user_context")
    context: dict[str, Any] = {}
    if isinstance(action, dict):  # flow form
        name = _text(action.get("type"), "action.type")
        platform = _text(action.get("platform"), "action.platform")
        parameters = _object(action.get("payload", action.get("parameters")), "action.payload")
        if body.get("flow_id") is not None:
            context["flow_id"] = _text(body.get("flow_id"), "flow_id")
    else:
        name = _text(action, "action")
        platform = _text(body.get("platform"), "platform")
        given = "parameters" if body.get("parameters") is not None else "params"
        parameters = _object(body.get(given), given)
    if not name:
        raise ApiError("the request names no action", code="invalid_request", field="action")
    named = "project_id" if body.get("project_id") is not None else "project"
    project = _text(body.get(named), named)
    user = dict(user_context)
    if body.get("user_id") is not None:
        user.setdefault("id", _text(body.get("user_id"), "user_id"))
    context["user"] = user
    if project is not None:
        context["project_id"] = project
    return ActionRequest(project, name, platform, parameters, context)


def normalize_perform_action(body: Any) -> ActionRequest:
    """``POST /perform_action``: the Action Engine's shape."""
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object", code="invalid_request")
    name = _text(body.get("action_type"), "action_type")
    if not name:
        raise ApiError("`action_type` is required", code="invalid_request", field="action_type")
    user: dict[str, Any] = {}
    if body.get("user_id") is not None:
        user["id"] = _text(body.get("user_id"), "user_id")
    return ActionRequest(
        _text(body.get("project_id"), "project_id"),
        name,
        _text(body.get("platform"), "platform"),
        _object(body.get("payload"), "payload"),
        {"user": user},
    )
