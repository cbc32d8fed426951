"""PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch (strategic.py), JSON patch (RFC 6902)."""
import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch  # a kmock dependency

from . import errors, strategic

JSON_PATCH = 'application/json-patch+json'
MERGE_PATCH = 'application/merge-patch+json'
STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else (lists too) replaces.

    kmock's own merge refuses to replace a scalar by a dict and back; real servers do not.
    """
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(content_type: str, current: dict[str, Any], body: Any) -> dict[str, Any]:
    """The patched copy of `current`. Server-side apply (apply-patch+yaml) stays a plain merge of the applied
    configuration: the sandbox keeps no managedFields, so it cannot tell which fields an applier gave up."""
    if content_type == JSON_PATCH:
        if not isinstance(body, list):
            raise errors.bad_request('the body of a JSON patch must be a list of operations')
        try:
            return jsonpatch.apply_patch(copy.deepcopy(current), body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise errors.ApiError(422, 'Invalid', f'the server rejected our request due to an error in our request: {exc}', {})
    if not isinstance(body, Mapping):
        raise errors.bad_request('the body of a merge patch must be a JSON object')
    if content_type == STRATEGIC_MERGE_PATCH:
        return strategic.strategic_merge_patch(str(current.get('kind') or ''), current, body)
    return merge_patch(current, body)
