"""The emulator's error type and the Ruby-flavoured message helpers.

Rails renders an exception as its Ruby ``inspect`` text
(``#<ArvadosModel::LockFailedError: cannot lock when Locked>``) and a failed
validation as a list of "full messages" (``State cannot change from Queued to
Running``): services/api/app/controllers/application_controller.rb: render_error,
send_error. The emulator keeps both forms so tests can see what operators see.
Rails also appends `` (<request-id>)``; the emulator does not (see docs/sandbox-api.md).
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """An API request refused with an HTTP status and one or more messages.

    Attributes:
        status: the HTTP status to answer.
        messages: the ``errors`` strings of the response body.
    """

    def __init__(self, status: int, *messages: str):
        self.status = status
        self.messages = list(messages) or ["error"]
        super().__init__(f"{status}: {'; '.join(self.messages)}")


def ruby_exc(cls: str, message: str | None = None) -> str:
    """Return Ruby's ``inspect`` of an exception (``#<cls: message>``). Pure.

    A Ruby exception created without a message uses its class name as the message.
    """
    return f"#<{cls}: {message if message is not None else cls}>"


def argument_error(message: str) -> ApiError:
    """Return the 422 that Rails gives for a bad list/filter parameter (``ArgumentError``). Pure."""
    return ApiError(422, ruby_exc("ArgumentError", message))


def permission_denied(message: str | None = None) -> ApiError:
    """Return the 403 of ``ArvadosModel::PermissionDeniedError``. Pure."""
    return ApiError(403, ruby_exc("ArvadosModel::PermissionDeniedError", message))


def ruby_class(value: Any) -> str:
    """Return the Ruby class name a JSON-decoded ``value`` would have in Rails. Pure."""
    if value is None:
        return "NilClass"
    if value is True:
        return "TrueClass"
    if value is False:
        return "FalseClass"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Hash"


def ruby_inspect(value: Any) -> str:
    """Return (approximately) Ruby's ``inspect`` of a JSON-decoded value. Pure.

    Used in ``<Attr> cannot be modified in state 'S' (<old>, <new>)``.
    """
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(ruby_inspect(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{ruby_inspect(k)} => {ruby_inspect(v)}" for k, v in value.items()) + "}"
    return repr(value)


def humanize(attr: str) -> str:
    """Return Rails' ``humanize`` of an attribute name (``locked_by_uuid`` → ``Locked by uuid``). Pure."""
    text = attr.replace("_", " ")
    return text[:1].upper() + text[1:]
