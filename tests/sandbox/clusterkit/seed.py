"""What the sandbox cluster holds at start (CONTRACT.md, "Seeded cluster"). Stdlib only: traffic.py reads it too."""
from typing import Any

APP_NAMESPACE = 'app'
NAMESPACES = ('default', 'kube-system', APP_NAMESPACE)
IMAGE_REGISTRY = 'registry.sandbox.local/devloop'


def _port(name: str | None, port: int, target: int) -> dict[str, Any]:
    spec: dict[str, Any] = {'port': port, 'targetPort': target, 'protocol': 'TCP'}
    if name:
        spec['name'] = name
    return spec


# workload name -> the Service ports selecting it (None = no Service), per CONTRACT.md.
SEEDED_WORKLOADS: dict[str, list[dict[str, Any]] | None] = {
    'fresh-app': [_port('http', 80, 8080)],
    'multi-port': [_port('http', 80, 8080), _port('grpc', 9090, 9090)],
    'numeric-port': [_port(None, 8080, 8080)],
    'web-only': [_port('web', 80, 8080)],
    'no-service': None,
    'secret-app': [_port('http', 80, 8080)],
    'stateful-app': [_port('http', 80, 8080)],
}
# Seeded workloads that are StatefulSets (facts sheet section 3: `list` shows StatefulSets; section 5: they are
# interceptable); every other seeded workload is a Deployment.
STATEFUL_WORKLOADS = frozenset({'stateful-app'})
SECRET_WORKLOAD = 'secret-app'
SECRET_ENV_NAME = 'API_TOKEN'
# Beside the secret, secret-app's pod holds values that are common words and paths: the same text appears in the
# modules' own fields (`--mount=false`, the client `root@host`, the disposition `ACTIVE`, paths under `/root`), so a
# censoring policy that masks every environment value would garble them (issue 13).
COMMON_ENV = (('DEBUG', 'false'), ('RUN_AS', 'root'), ('STATE', 'ACTIVE'), ('DATA_HOME', '/root'))


def workload_kind(name: str) -> str:
    return 'StatefulSet' if name in STATEFUL_WORKLOADS else 'Deployment'


def seeded_services() -> dict[str, list[dict[str, Any]]]:
    """`{service name: ports}` for the seeded Services (each is named after its workload)."""
    return {name: ports for name, ports in SEEDED_WORKLOADS.items() if ports is not None}


def forwarded_port(ports: list[dict[str, Any]]) -> dict[str, Any]:
    """The Service port a `kubectl port-forward svc/<name>` stand-in forwards: `http` if present, else the first."""
    return next((port for port in ports if port.get('name') == 'http'), ports[0])


def _container_ports(service_ports: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not service_ports:
        return [{'name': 'http', 'containerPort': 8080, 'protocol': 'TCP'}]
    result = []
    for port in service_ports:
        container_port: dict[str, Any] = {'containerPort': port['targetPort'], 'protocol': 'TCP'}
        if port.get('name'):
            container_port['name'] = port['name']
        result.append(container_port)
    return result


def workload_manifest(name: str, secret_value: str) -> dict[str, Any]:
    """The seeded Deployment or StatefulSet `name` (a StatefulSet names its governing Service, which is its own)."""
    labels = {'app': name}
    container: dict[str, Any] = {
        'name': name,
        'image': f'{IMAGE_REGISTRY}/{name}:1.0.0',
        'ports': _container_ports(SEEDED_WORKLOADS[name]),
    }
    if name == SECRET_WORKLOAD:
        container['env'] = [{'name': SECRET_ENV_NAME, 'value': secret_value}] + [
            {'name': key, 'value': value} for key, value in COMMON_ENV]
    spec: dict[str, Any] = {
        'replicas': 1,
        'selector': {'matchLabels': dict(labels)},
        'template': {'metadata': {'labels': dict(labels)}, 'spec': {'containers': [container]}},
    }
    if workload_kind(name) == 'StatefulSet':
        spec['serviceName'] = name
    return {
        'apiVersion': 'apps/v1',
        'kind': workload_kind(name),
        'metadata': {'name': name, 'namespace': APP_NAMESPACE, 'labels': dict(labels)},
        'spec': spec,
    }


def service_manifest(name: str) -> dict[str, Any]:
    return {
        'apiVersion': 'v1',
        'kind': 'Service',
        'metadata': {'name': name, 'namespace': APP_NAMESPACE, 'labels': {'app': name}},
        'spec': {'selector': {'app': name}, 'ports': [dict(port) for port in SEEDED_WORKLOADS[name] or []]},
    }


def namespace_manifest(name: str) -> dict[str, Any]:
    return {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}
