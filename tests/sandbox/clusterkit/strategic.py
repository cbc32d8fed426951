"""Strategic merge patch (`application/strategic-merge-patch+json`) as the Kubernetes API server applies it.

A port of k8s.io/apimachinery/pkg/util/strategicpatch (patch.go: mergeMap, mergeSlice, mergePatchIntoOriginal,
applyRetainKeysDirective, normalizeElementOrder, mergeSortedSlice), driven by the patchStrategy/patchMergeKey
tags of k8s.io/api core/v1, apps/v1 and meta/v1 types.go for the kinds the sandbox serves (SCHEMA below).
Directives: `$patch: replace|delete` (in maps and in merge lists), `$setElementOrder/<field>`, `$retainKeys`,
`$deleteFromPrimitiveList/<field>`. After patching, the API server decodes the result into the typed object,
which drops any key it does not know: `strip_directives` plays that part for the `$...` keys left over.
Known difference: Go orders lists with sort.SliceStable (insertion sort for up to 20 items, then merges of
blocks); this port uses that insertion sort for every length, so lists of more than 20 items may differ.
"""
import copy
from collections.abc import Mapping
from typing import Any

from . import errors

DIRECTIVE = '$patch'
RETAIN_KEYS = '$retainKeys'
SET_ELEMENT_ORDER = '$setElementOrder/'
DELETE_FROM_PRIMITIVE_LIST = '$deleteFromPrimitiveList/'

# type name -> {field: (strategies, merge key, type of the field's value or of its list items)}.
# From the `patchStrategy:"..." patchMergeKey:"..."` struct tags of k8s.io/api (v0.32) types.go.
SCHEMA: dict[str, dict[str, tuple[frozenset[str], str, str | None]]] = {
    'ObjectMeta': {
        'finalizers': (frozenset({'merge'}), '', None),
        'ownerReferences': (frozenset({'merge'}), 'uid', None),
    },
    'Service': {'metadata': (frozenset(), '', 'ObjectMeta'), 'spec': (frozenset(), '', 'ServiceSpec'),
                'status': (frozenset(), '', 'Status')},
    'ServiceSpec': {'ports': (frozenset({'merge'}), 'port', None)},
    'Status': {'conditions': (frozenset({'merge'}), 'type', None)},
    'Pod': {'metadata': (frozenset(), '', 'ObjectMeta'), 'spec': (frozenset(), '', 'PodSpec'),
            'status': (frozenset(), '', 'Status')},
    'PodTemplateSpec': {'metadata': (frozenset(), '', 'ObjectMeta'), 'spec': (frozenset(), '', 'PodSpec')},
    'PodSpec': {
        'volumes': (frozenset({'merge', 'retainKeys'}), 'name', None),
        'initContainers': (frozenset({'merge'}), 'name', 'Container'),
        'containers': (frozenset({'merge'}), 'name', 'Container'),
        'ephemeralContainers': (frozenset({'merge'}), 'name', 'Container'),
        'imagePullSecrets': (frozenset({'merge'}), 'name', None),
        'hostAliases': (frozenset({'merge'}), 'ip', None),
        'topologySpreadConstraints': (frozenset({'merge'}), 'topologyKey', None),
        'resourceClaims': (frozenset({'merge', 'retainKeys'}), 'name', None),
        'schedulingGates': (frozenset({'merge'}), 'name', None),
    },
    'Container': {
        'ports': (frozenset({'merge'}), 'containerPort', None),
        'env': (frozenset({'merge'}), 'name', None),
        'volumeMounts': (frozenset({'merge'}), 'mountPath', None),
        'volumeDevices': (frozenset({'merge'}), 'devicePath', None),
    },
    'Workload': {'metadata': (frozenset(), '', 'ObjectMeta'), 'spec': (frozenset(), '', 'WorkloadSpec'),
                 'status': (frozenset(), '', 'Status')},
    'WorkloadSpec': {'template': (frozenset(), '', 'PodTemplateSpec'),
                     'strategy': (frozenset({'retainKeys'}), '', None),
                     'updateStrategy': (frozenset({'retainKeys'}), '', None)},
    'Plain': {'metadata': (frozenset(), '', 'ObjectMeta')},
}
KIND_TYPES = {'Service': 'Service', 'Pod': 'Pod', 'Deployment': 'Workload', 'ReplicaSet': 'Workload',
              'StatefulSet': 'Workload', 'DaemonSet': 'Workload'}
NO_FIELD = (frozenset(), '', None)


def invalid(message: str) -> errors.ApiError:
    return errors.ApiError(422, 'Invalid', f'the server rejected our request due to an error in our request: {message}', {})


def field_of(type_name: str | None, key: str) -> tuple[frozenset[str], str, str | None]:
    return SCHEMA.get(type_name or '', {}).get(key, NO_FIELD)


def strategic_merge_patch(kind: str, current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = merge_map(copy.deepcopy(dict(current)), copy.deepcopy(dict(patch)), KIND_TYPES.get(kind, 'Plain'))
    return strip_directives(merged)


def strip_directives(value: Any) -> Any:
    """What decoding into the typed object leaves: no `$...` keys, no list items that were only directives."""
    if isinstance(value, Mapping):
        return {k: strip_directives(v) for k, v in value.items() if not str(k).startswith('$')}
    if isinstance(value, list):
        return [strip_directives(item) for item in value if not (isinstance(item, Mapping) and DIRECTIVE in item)]
    return value


def merge_map(original: Any, patch: dict[str, Any], type_name: str | None) -> dict[str, Any]:
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == 'replace':
            return patch
        if directive == 'delete':
            return {}
        raise invalid(f'unknown patch type: {directive!r} in map: {patch}')
    original = original if isinstance(original, dict) else {}
    apply_retain_keys(original, patch)
    merge_ordered_lists(original, patch, type_name)
    for key, patch_value in list(patch.items()):
        is_delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = key[len(DELETE_FROM_PRIMITIVE_LIST):]
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not is_delete_list:
                original[key] = patch_value
            continue
        current = original[key]
        if _shape(current) != _shape(patch_value):
            original[key] = patch_value
            continue
        strategies, merge_key, child = field_of(type_name, key)
        if isinstance(current, dict):
            original[key] = patch_value if 'replace' in strategies else merge_map(current, patch_value, child)
        elif isinstance(current, list):
            original[key] = merge_slice_handler(current, patch_value, strategies, merge_key, child, is_delete_list)
        else:
            original[key] = patch_value
    return original


def _shape(value: Any) -> type:
    """Go compares reflect types: float64 against float64 and so on; here dict, list or a scalar type."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, (int, float)):
        return float
    return type(value)


def apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    retained = patch.pop(RETAIN_KEYS)
    if not isinstance(retained, list):
        raise invalid('invalid patch format of retainKeys')
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in retained:
            raise invalid('doesn\'t satisfy the retainKeys directive: all fields of the patch must be in $retainKeys')
    for key in [k for k in original if k not in retained]:
        del original[key]


def merge_ordered_lists(original: dict[str, Any], patch: dict[str, Any], type_name: str | None) -> None:
    """mergePatchIntoOriginal: each `$setElementOrder/<field>` with its list, ordered by the directive."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise invalid('invalid patch format of setElementOrder list')
        field = key[len(SET_ELEMENT_ORDER):]
        strategies, merge_key, child = field_of(type_name, field)
        in_original, in_patch = field in original, field in patch
        if not in_original and not in_patch:
            continue
        original_list = original.get(field) if in_original else []
        if in_original and not in_patch:
            merged = original_list
        elif in_patch and not in_original:
            merged = patch[field]
        else:
            merged = merge_slice_handler(original_list, patch[field], strategies, merge_key, child, False)
        patch_items, server_only = partition(merged, order, merge_key)
        original[field] = normalize_element_order(patch_items, server_only, order, original_list or [], merge_key)
        patch.pop(field, None)


def merge_slice_handler(original: Any, patch: Any, strategies: frozenset[str], merge_key: str, child: str | None,
                        is_delete_list: bool) -> list[Any]:
    if not isinstance(original, list) or not isinstance(patch, list):
        raise invalid('a list in the patch meets something else in the object')
    if 'merge' in strategies:
        return merge_slice(original, patch, merge_key, child, is_delete_list)
    return patch


def merge_slice(original: list[Any], patch: list[Any], merge_key: str, child: str | None,
                is_delete_list: bool) -> list[Any]:
    if not original and not patch:
        return original
    maps = any(isinstance(item, dict) for item in original + patch)
    if not maps:
        if is_delete_list:
            return [item for item in original if item not in patch]
        merged = deduplicate_scalars(original + patch)
        key = ''
    else:
        if not merge_key:
            raise invalid('cannot merge lists without merge key')
        original, patch = merge_special_elements(original, patch, merge_key)
        merged = merge_plain_elements(original, patch, merge_key, child)
        key = merge_key
    patch_items, server_only = partition(merged, patch, key)
    return normalize_element_order(patch_items, server_only, patch, original, key)


def merge_special_elements(original: list[Any], patch: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """`$patch: delete` items remove their match from original; a `$patch: replace` item makes the rest the list."""
    plain, replace = [], False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
        elif item[DIRECTIVE] == 'delete':
            if merge_key not in item:
                raise invalid(f'map: {item} does not contain declared merge key: {merge_key}')
            original = [o for o in original
                        if not (isinstance(o, dict) and merge_key in o and o[merge_key] == item[merge_key])]
        elif item[DIRECTIVE] == 'replace':
            replace = True
        elif item[DIRECTIVE] == 'merge':
            raise invalid('merging lists cannot yet be specified in the patch')
        else:
            raise invalid(f'unknown patch type: {item[DIRECTIVE]!r} in map: {item}')
    if replace:
        return plain, []
    return original, plain


def merge_plain_elements(original: list[Any], patch: list[Any], merge_key: str, child: str | None) -> list[Any]:
    original = list(original)
    for item in patch:
        if merge_key not in item:
            raise invalid(f'map: {item} does not contain declared merge key: {merge_key}')
        index = next((i for i, o in enumerate(original)
                      if isinstance(o, dict) and merge_key in o and o[merge_key] == item[merge_key]), None)
        if index is None:
            original.append(item)
        else:
            original[index] = merge_map(original[index], item, child)
    return original


def deduplicate_scalars(items: list[Any]) -> list[Any]:
    """Go's in-place deduplication, which moves the last item into a duplicate's place (the order matters)."""
    s = list(items)
    length = len(s) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if s[i] == s[j]:
                s[j] = s[length]
                s = s[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return s


def _key_of(item: Any, merge_key: str) -> Any:
    if not merge_key:
        return item
    return item.get(merge_key) if isinstance(item, dict) else None


def index_of(items: list[Any], value: Any, merge_key: str) -> int:
    wanted = _key_of(value, merge_key)
    return next((i for i, item in enumerate(items) if _key_of(item, merge_key) == wanted), -1)


def partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Items present in `by` (by merge key, or by value for scalars), and the server-only rest."""
    if merge_key:
        wanted = [item.get(merge_key) for item in by if isinstance(item, dict) and merge_key in item]
        found = [item for item in merged if isinstance(item, dict) and item.get(merge_key) in wanted]
    else:
        found = [item for item in merged if item in by]
    return found, [item for item in merged if not any(item is f for f in found)]


def normalize_slice_order(to_sort: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    to_delete: list[Any] = []
    if merge_key:
        for item in to_sort + order:
            if not isinstance(item, dict) or merge_key not in item:
                raise invalid(f'map: {item} does not contain declared merge key: {merge_key}')
        to_delete = [item for item in to_sort if item.get(DIRECTIVE) == 'delete']
        to_sort = [item for item in to_sort if item.get(DIRECTIVE) != 'delete']

    def less(a: Any, b: Any) -> bool:  # Go's comparator, as written (true whenever either is not in `order`)
        ia = index_of(order, a, merge_key)
        if ia >= 0:
            ib = index_of(order, b, merge_key)
            if ib >= 0:
                return ia < ib
        return True

    result = list(to_sort)
    for i in range(1, len(result)):  # sort.SliceStable's insertion sort
        j = i
        while j > 0 and less(result[j], result[j - 1]):
            result[j], result[j - 1] = result[j - 1], result[j]
            j -= 1
    return result + to_delete


def normalize_element_order(patch: list[Any], server_only: list[Any], patch_order: list[Any],
                            server_order: list[Any], merge_key: str) -> list[Any]:
    patch = normalize_slice_order(patch, patch_order, merge_key)
    server_only = normalize_slice_order(server_only, server_order, merge_key)
    return merge_sorted_slice(server_only, patch, server_order, merge_key)


def merge_sorted_slice(left: list[Any], right: list[Any], server_order: list[Any], merge_key: str) -> list[Any]:
    result, i, j = [], 0, 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            result.append(right[j])
            j += 1
        elif j >= len(right):
            result.append(left[i])
            i += 1
        else:
            li, ri = index_of(server_order, left[i], merge_key), index_of(server_order, right[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                result.append(left[i])
                i += 1
            else:
                result.append(right[j])
                j += 1
    return result
