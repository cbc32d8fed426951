"""Label and field selectors (`?labelSelector=`, `?fieldSelector=`), which kmock 0.8 ignores."""
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import errors

Predicate = Callable[[Mapping[str, Any]], bool]

# `key in (a,b)`, `key notin (a,b)`, `key=v`, `key==v`, `key!=v`, `key`, `!key`.
_SET_TERM = re.compile(r'^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$')
_EQ_TERM = re.compile(r'^\s*([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$')
_EXISTS_TERM = re.compile(r'^\s*(!?)\s*([^\s!=(),]+)\s*$')


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `( ... )` value sets."""
    terms, depth, current = [], 0, ''
    for char in selector:
        depth += {'(': 1, ')': -1}.get(char, 0)
        if char == ',' and depth == 0:
            terms.append(current)
            current = ''
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> Predicate:
    if match := _SET_TERM.match(term):
        key, operator, raw_values = match.groups()
        values = {value.strip() for value in raw_values.split(',') if value.strip()}
        if operator == 'in':
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, operator, value = match.groups()
        if operator == '!=':
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negated, key = match.groups()
        return (lambda labels: key not in labels) if negated else (lambda labels: key in labels)
    raise errors.bad_request(f'unable to parse requirement: invalid label selector term {term!r}')


def label_selector(selector: str | None) -> Predicate:
    """A predicate over an object's `metadata.labels`."""
    terms = [_label_term(term) for term in _split_terms(selector or '')]
    return lambda labels: all(term(labels) for term in terms)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """`metadata.name`, `involvedObject.kind`, `status.phase`...; absent fields read as '' like in Kubernetes."""
    value: Any = obj
    for part in path.split('.'):
        value = value.get(part) if isinstance(value, Mapping) else None
    return '' if value is None else str(value)


def _field_term(term: str) -> Predicate:
    match = _EQ_TERM.match(term)
    if not match:
        raise errors.bad_request(f'invalid field selector: {term!r}')
    path, operator, value = match.groups()
    if operator == '!=':
        return lambda obj: field_value(obj, path) != value
    return lambda obj: field_value(obj, path) == value


def field_selector(selector: str | None) -> Predicate:
    """A predicate over a whole object. Any dotted field path is accepted (real servers whitelist them per kind)."""
    terms = [_field_term(term) for term in _split_terms(selector or '')]
    return lambda obj: all(term(obj) for term in terms)


def object_filter(labels: str | None, fields: str | None) -> Predicate:
    by_labels, by_fields = label_selector(labels), field_selector(fields)
    return lambda obj: by_labels(obj.get('metadata', {}).get('labels') or {}) and by_fields(obj)


def matches_label_map(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A workload's `matchLabels` against a pod's labels."""
    return all(labels.get(key) == value for key, value in selector.items())
