"""Kubernetes `Status` failures with the reasons and message texts a real API server uses."""
from typing import Any

import attrs
import kmock


@attrs.frozen
class ApiError(kmock.KubernetesError):
    """A failure answered as a `Status` object; `details` is always set (kmock would put a traceback there)."""

    def as_status(self) -> dict[str, Any]:
        return {
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
            'message': self.message, 'reason': self.reason, 'details': self.details or {}, 'code': self.status,
        }


def qualified(plural: str, group: str) -> str:
    """`deployments.apps`, `pods` (the core group has no suffix), as in real messages."""
    return f'{plural}.{group}' if group else plural


def _details(plural: str, group: str, name: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {'kind': plural}
    if name is not None:
        details['name'] = name
    if group:
        details['group'] = group
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, 'NotFound', f'{qualified(plural, group)} "{name}" not found', _details(plural, group, name))


def unknown_resource() -> ApiError:
    return ApiError(404, 'NotFound', 'the server could not find the requested resource', {})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    message = f'{qualified(plural, group)} "{name}" already exists'
    return ApiError(409, 'AlreadyExists', message, _details(plural, group, name))


def conflict(plural: str, group: str, name: str) -> ApiError:
    message = (f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": the object has been modified; '
               'please apply your changes to the latest version and try again')
    return ApiError(409, 'Conflict', message, _details(plural, group, name))


def forbidden(user: str, verb: str, plural: str, group: str, namespace: str | None, name: str | None) -> ApiError:
    subject = qualified(plural, group) + (f' "{name}"' if name else '')
    scope = f'in the namespace "{namespace}"' if namespace else 'at the cluster scope'
    message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{plural}" '
               f'in API group "{group}" {scope}')
    return ApiError(403, 'Forbidden', message, _details(plural, group, name))


def forbidden_terminating(plural: str, group: str, name: str, namespace: str) -> ApiError:
    message = (f'{qualified(plural, group)} "{name}" is forbidden: unable to create new content in namespace '
               f'{namespace} because it is being terminated')
    return ApiError(403, 'Forbidden', message, _details(plural, group, name))


def internal(text: str) -> ApiError:
    return ApiError(500, 'InternalError', f'Internal error occurred: {text}', {'causes': [{'message': text}]})


def bad_request(text: str) -> ApiError:
    return ApiError(400, 'BadRequest', text, {})


def invalid(kind: str, group: str, name: str, field: str, text: str) -> ApiError:
    message = f'{qualified(kind, group)} "{name}" is invalid: {field}: {text}'
    return ApiError(422, 'Invalid', message, {'name': name, 'kind': kind, 'causes': [
        {'reason': 'FieldValueRequired', 'message': text, 'field': field}]})


def method_not_allowed() -> ApiError:
    return ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {})


def expired(resource_version: str) -> ApiError:
    return ApiError(410, 'Expired', f'too old resource version: {resource_version}', {})
