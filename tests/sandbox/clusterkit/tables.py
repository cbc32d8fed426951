"""Server-side `Table` rendering for kubectl (`Accept: ...;as=Table`), with the columns real servers print."""
import datetime
import json
from collections.abc import Callable
from typing import Any

Row = list[Any]
Columns = list[tuple[str, Callable[[dict[str, Any]], Any]]]


def watch_line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(',', ':')).encode() + b'\n'


def age(obj: dict[str, Any]) -> str:
    """Kubernetes' short human duration of an object's age: 42s, 3m7s, 25m, 5h3m, 2d."""
    created = obj.get('metadata', {}).get('creationTimestamp')
    if not created:
        return '<unknown>'
    then = datetime.datetime.strptime(created, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    if seconds < 120:
        return f'{max(seconds, 0)}s'
    minutes, hours = seconds // 60, seconds // 3600
    if minutes < 10:
        return f'{minutes}m{seconds % 60}s' if seconds % 60 else f'{minutes}m'
    if hours < 3:
        return f'{minutes}m'
    if hours < 8:
        return f'{hours}h{minutes % 60}m' if minutes % 60 else f'{hours}h'
    return f'{hours}h' if hours < 48 else f'{hours // 24}d'


def _name(obj: dict[str, Any]) -> str:
    return obj['metadata']['name']


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get('status') or {}


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = _status(pod).get('containerStatuses') or []
    total = len((pod.get('spec') or {}).get('containers') or []) or len(statuses)
    return f'{sum(1 for s in statuses if s.get("ready"))}/{total}'


def pod_display_status(pod: dict[str, Any]) -> str:
    """What `kubectl get pods` shows: a container's waiting reason beats the phase, deletion shows Terminating."""
    if pod['metadata'].get('deletionTimestamp'):
        return 'Terminating'
    for container in _status(pod).get('containerStatuses') or []:
        waiting = (container.get('state') or {}).get('waiting')
        if waiting and waiting.get('reason'):
            return waiting['reason']
    return _status(pod).get('phase', 'Pending')


def _ports(svc: dict[str, Any]) -> str:
    ports = (svc.get('spec') or {}).get('ports') or []
    return ','.join(f'{p.get("port")}/{p.get("protocol", "TCP")}' for p in ports) or '<none>'


COLUMNS: dict[str, Columns] = {
    'deployments': [
        ('Name', _name),
        ('Ready', lambda o: f'{_status(o).get("readyReplicas", 0)}/{(o.get("spec") or {}).get("replicas", 1)}'),
        ('Up-to-date', lambda o: _status(o).get('updatedReplicas', 0)),
        ('Available', lambda o: _status(o).get('availableReplicas', 0)),
        ('Age', age)],
    'statefulsets': [
        ('Name', _name),
        ('Ready', lambda o: f'{_status(o).get("readyReplicas", 0)}/{(o.get("spec") or {}).get("replicas", 1)}'),
        ('Age', age)],
    'replicasets': [
        ('Name', _name), ('Desired', lambda o: (o.get('spec') or {}).get('replicas', 0)),
        ('Current', lambda o: _status(o).get('replicas', 0)), ('Ready', lambda o: _status(o).get('readyReplicas', 0)),
        ('Age', age)],
    'pods': [
        ('Name', _name), ('Ready', _pod_ready), ('Status', pod_display_status),
        ('Restarts', lambda o: sum(s.get('restartCount', 0) for s in _status(o).get('containerStatuses') or [])),
        ('Age', age)],
    'services': [
        ('Name', _name), ('Type', lambda o: (o.get('spec') or {}).get('type', 'ClusterIP')),
        ('Cluster-IP', lambda o: (o.get('spec') or {}).get('clusterIP', '<none>')),
        ('External-IP', lambda o: '<none>'), ('Port(s)', _ports), ('Age', age)],
    'namespaces': [('Name', _name), ('Status', lambda o: _status(o).get('phase', 'Active')), ('Age', age)],
    'events': [
        ('Last Seen', lambda o: age({'metadata': {'creationTimestamp': o.get('lastTimestamp')
                                                  or o['metadata'].get('creationTimestamp')}})),
        ('Type', lambda o: o.get('type', '')), ('Reason', lambda o: o.get('reason', '')),
        ('Object', lambda o: f'{(o.get("involvedObject") or {}).get("kind", "").lower()}/'
                             f'{(o.get("involvedObject") or {}).get("name", "")}'),
        ('Message', lambda o: o.get('message', ''))],
    'configmaps': [('Name', _name), ('Data', lambda o: len(o.get('data') or {})), ('Age', age)],
    'secrets': [('Name', _name), ('Type', lambda o: o.get('type', 'Opaque')),
                ('Data', lambda o: len(o.get('data') or {})), ('Age', age)],
}
DEFAULT_COLUMNS: Columns = [('Name', _name), ('Age', age)]


def table(plural: str, objs: list[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table; each row carries the full object, so `-A` and `-o wide` find their metadata."""
    columns = COLUMNS.get(plural, DEFAULT_COLUMNS)
    return {
        'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1', 'metadata': {'resourceVersion': resource_version},
        'columnDefinitions': [
            {'name': title, 'type': 'string', 'format': 'name' if title == 'Name' else '', 'description': title,
             'priority': 0} for title, _cell in columns],
        'rows': [{'cells': [cell(obj) for _title, cell in columns], 'object': obj} for obj in objs],
    }
