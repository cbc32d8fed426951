"""The simulated Kubernetes API server: `kmock.KubernetesEmulator` (pinned 0.8) with its gaps closed.

What kmock provides and we keep: the HTTP server (`kmock.Server`), request reading (`kmock.Request`), the object
store with history (`self.objects`), the per-resource event buses and their lock, and the bundled discovery
snapshot of built-in resources (`self.resources.load_bundled()`).

What we replace, in the overridden `_handle` and the `_serve_*` discovery methods (kmock's names), and why:
kmock 0.8 has no Namespace support, no PUT, ignores selectors, fills no metadata, loses namespaced watch events,
reports the core group as "/v1" (kubectl then cannot map pods or services), has no `/version/`, no list `kind`,
no status subresource semantics, no cascade, and its error texts are not the ones real clients and users expect.
See tests/sandbox/README.md for the full list.
"""
import asyncio
import base64
import collections
import copy
import datetime
import json
import logging
import re
import secrets
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from . import errors, injector, patching, protobuf, selectors, tables
from .faults import ClusterFaults, Fault
from .files import SandboxFiles

SERVER_VERSION = {
    'major': '1', 'minor': '32', 'gitVersion': 'v1.32.4+sandbox', 'gitCommit': '0' * 40, 'gitTreeState': 'clean',
    'buildDate': '2025-04-22T00:00:00Z', 'goVersion': 'go1.23.6', 'compiler': 'gc', 'platform': 'linux/amd64',
}
HISTORY_SIZE = 10_000              # watch events kept for `?watch&resourceVersion=N` replays
DEFAULT_WATCH_SECONDS = 1800.0     # like the apiserver's --min-request-timeout when the client gives none
DISCONNECT_POLL_SECONDS = 1.0      # how often an idle watch checks that its client is still there
GENERATION_GROUPS = ('apps', 'batch')  # resources whose spec changes bump metadata.generation
OBJECT_RETURNING_DELETES = ('pods', 'namespaces')  # others answer DELETE with a Status, as real servers do
log = logging.getLogger('sandbox.cluster')
NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # the alphabet Kubernetes uses for generated name suffixes


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def random_suffix(length: int = 5) -> str:
    return ''.join(secrets.choice(NAME_ALPHABET) for _index in range(length))


def _named(by_selector, name):
    """A watch filter that also requires the object's name (watches of one object by fieldSelector or path)."""
    def wanted(obj):
        return by_selector(obj) and obj['metadata'].get('name') == name
    return wanted


@attrs.frozen
class ApiPath:
    """A resource URL: /api/v1/namespaces/app/pods/x/status, /apis/apps/v1/deployments, ..."""
    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """None for non-resource paths (discovery, /version). kmock's parser reads /api/v1/namespaces/x as a namespace."""
    parts = [part for part in path.split('/') if part]
    if len(parts) >= 3 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    namespace_subresource = len(rest) == 3 and rest[0] == 'namespaces' and rest[2] in ('status', 'finalize')
    if rest[0] == 'namespaces' and len(rest) >= 3 and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    return ApiPath(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None,
                   '/'.join(rest[2:]) or None)


def api_verb(method: str, api: ApiPath, params: Mapping[str, str]) -> str:
    """The RBAC verb of a request, as used in Forbidden messages and in faults.json rules."""
    if method == 'GET':
        if params.get('watch') in ('true', '1'):
            return 'watch'
        return 'get' if api.name else 'list'
    if method == 'DELETE':
        return 'delete' if api.name else 'deletecollection'
    return {'POST': 'create', 'PUT': 'update', 'PATCH': 'patch'}.get(method, method.lower())


@attrs.frozen
class Kind:
    """One served resource with what the bundled discovery snapshot says about it."""
    resource: kmock.resource
    info: kmock.ResourceInfo

    @property
    def group(self) -> str:
        return self.resource.group or ''

    @property
    def plural(self) -> str:
        return self.resource.plural or ''

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.resource.version}' if self.group else str(self.resource.version)

    @property
    def kind(self) -> str:
        return self.info.kind or self.plural.capitalize()

    @property
    def namespaced(self) -> bool:
        return bool(self.info.namespaced)

    @property
    def has_status(self) -> bool:
        return 'status' in self.info.subresources

    @property
    def tracks_generation(self) -> bool:
        return self.group in GENERATION_GROUPS


@attrs.frozen
class Change:
    """One stored write, kept for watches: `old` lets a selector-filtered watch see objects enter or leave it."""
    revision: int
    resource: kmock.resource
    type: str
    object: dict[str, Any]
    old: dict[str, Any] | None


@attrs.define(kw_only=True)
class SandboxCluster(kmock.KubernetesEmulator):
    files: SandboxFiles | None = None
    user: str = 'sandbox'
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)  # wakes the controller after any write
    _faults: ClusterFaults | None = attrs.field(default=None, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _history: collections.deque[Change] = attrs.field(
        factory=lambda: collections.deque(maxlen=HISTORY_SIZE), init=False)
    _next_ip: int = attrs.field(default=10, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        if self.files is not None:
            self._faults = ClusterFaults(self.files)

    # ------------------------------------------------------------------ HTTP entry points

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Faults are decided on the raw request: `unreachable` must drop the connection before any answer."""
        fault = self._fault_for(raw_request)
        if fault is not None and fault.mode == 'unreachable':
            return self._drop_connection(raw_request)
        if fault is not None:
            return self._fault_response(raw_request, fault)
        request = await self._read_request(raw_request)
        try:
            return await self._handle(request)
        except Exception as exc:  # a bug here must still answer like an API server, and be logged
            log.exception('failed to serve %s %s', raw_request.method, raw_request.path_qs)
            return await self._render_error(exc)

    @staticmethod
    async def _read_request(raw: aiohttp.web.BaseRequest) -> kmock.Request:
        """A kmock Request without kmock's path parsing, which fails on /api/v1/namespaces (we parse paths ourselves).

        Not recorded in `self.requests`: a long-lived sandbox would keep every request in memory.
        """
        body = await raw.read()
        text = body.decode('utf-8', errors='replace')
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        return kmock.Request(method=raw.method, url=raw.url, params=dict(raw.query), headers=dict(raw.headers),
                             body=body, text=text, data=data, raw_request=raw)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None  # always set when served over HTTP
        try:
            api = parse_api_path(raw.path)
            if api is None:
                return await self._serve_non_resource(request, raw.path)
            return await self._serve_resource(request, api)
        except errors.ApiError as exc:
            return aiohttp.web.json_response(exc.as_status(), status=exc.status)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        """Unexpected failures become an InternalError Status (kmock would add a traceback to the details)."""
        status = errors.internal(f'{type(exc).__name__}: {exc}').as_status()
        return aiohttp.web.json_response(status, status=500)

    # ------------------------------------------------------------------ faults

    def _fault_for(self, raw: aiohttp.web.BaseRequest) -> Fault | None:
        if self._faults is None:
            return None
        api = parse_api_path(raw.path)
        if api is None:
            return self._faults.check('get', None, None)
        return self._faults.check(api_verb(raw.method, api, raw.query), api.plural, self._scope_namespace(api))

    @staticmethod
    def _scope_namespace(api: ApiPath) -> str | None:
        """RBAC checks a Namespace object against its own name."""
        return api.name if api.plural == 'namespaces' and api.group == '' else api.namespace

    @staticmethod
    def _drop_connection(raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """No HTTP answer at all: the client sees the connection reset, as with a cluster that went away."""
        if raw.transport is not None:
            raw.transport.abort()
        return aiohttp.web.Response(status=503)  # never reaches the client: the transport is gone

    def _fault_response(self, raw: aiohttp.web.BaseRequest, fault: Fault) -> aiohttp.web.StreamResponse:
        api = parse_api_path(raw.path)
        assert api is not None  # only resource requests get 403/500 faults
        if fault.mode == '403':
            verb = api_verb(raw.method, api, raw.query)
            namespace = self._scope_namespace(api) if verb not in ('create', 'list') or api.plural != 'namespaces' \
                else None
            error = errors.forbidden(self.user, verb, api.plural, api.group, namespace, api.name)
        else:
            error = errors.internal(fault.message or 'etcdserver: request timed out (sandbox fault)')
        return aiohttp.web.json_response(error.as_status(), status=error.status)

    # ------------------------------------------------------------------ discovery (kmock's method names)

    async def _serve_non_resource(self, request: kmock.Request, path: str) -> aiohttp.web.StreamResponse:
        path = '/' + path.strip('/')
        if path == '/version':
            return aiohttp.web.json_response(await self._serve_server_version(request))
        if path in ('/healthz', '/readyz', '/livez'):
            return aiohttp.web.Response(text='ok')
        if path == '/api':
            return aiohttp.web.json_response(await self._serve_api(request))
        if path == '/apis':
            return aiohttp.web.json_response(await self._serve_apis(request))
        if match := re.fullmatch(r'/api/([^/]+)', path):
            return aiohttp.web.json_response(self._resource_list('', match.group(1)))
        if match := re.fullmatch(r'/apis/([^/]+)', path):
            return aiohttp.web.json_response(self._api_group(match.group(1)))
        if match := re.fullmatch(r'/apis/([^/]+)/([^/]+)', path):
            return aiohttp.web.json_response(self._resource_list(match.group(1), match.group(2)))
        raise errors.unknown_resource()

    async def _serve_server_version(self, request: kmock.Request) -> dict[str, Any]:
        return dict(SERVER_VERSION)

    async def _serve_api(self, request: kmock.Request) -> dict[str, Any]:
        port = self.servers[0].port if self.servers else 0
        return {'kind': 'APIVersions', 'versions': ['v1'],
                'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': f'127.0.0.1:{port}'}]}

    async def _serve_apis(self, request: kmock.Request) -> dict[str, Any]:
        groups = sorted({res.group for res in self.resources if res.group})
        return {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': [self._group_entry(g) for g in groups]}

    def _group_versions(self, group: str) -> list[str]:
        """Served versions, preferred (stable, then highest) first."""
        versions = {str(res.version) for res in self.resources if res.group == group}

        def rank(version: str) -> tuple[int, int, int]:
            match = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
            if not match:
                return (0, 0, 0)
            stability = {'alpha': 1, 'beta': 2}.get(match.group(2) or '', 3)
            return (stability, int(match.group(1)), int(match.group(3) or 0))
        return sorted(versions, key=rank, reverse=True)

    def _group_entry(self, group: str) -> dict[str, Any]:
        versions = [{'groupVersion': f'{group}/{v}', 'version': v} for v in self._group_versions(group)]
        return {'name': group, 'versions': versions, 'preferredVersion': versions[0]}

    def _api_group(self, group: str) -> dict[str, Any]:
        if not self._group_versions(group):
            raise errors.unknown_resource()
        return {'kind': 'APIGroup', 'apiVersion': 'v1', **self._group_entry(group)}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        """APIResourceList with groupVersion `v1` for the core group (kmock says "/v1", which kubectl rejects)."""
        kinds = [self.kind_for(res) for res in self.resources if res.group == group and res.version == version]
        if not kinds:
            raise errors.unknown_resource()
        entries = []
        for kind in sorted(kinds, key=lambda k: k.plural):
            entries.append({
                'name': kind.plural, 'singularName': kind.info.singular or kind.kind.lower(),
                'namespaced': kind.namespaced, 'kind': kind.kind, 'verbs': sorted(kind.info.verbs),
                'shortNames': sorted(kind.info.shortnames), 'categories': sorted(kind.info.categories),
            })
            for sub in sorted(kind.info.subresources):
                entries.append({'name': f'{kind.plural}/{sub}', 'singularName': '', 'namespaced': kind.namespaced,
                                'kind': 'Scale' if sub == 'scale' else kind.kind, 'verbs': ['get', 'patch', 'update']})
        return {'kind': 'APIResourceList', 'apiVersion': 'v1',
                'groupVersion': f'{group}/{version}' if group else version, 'resources': entries}

    # ------------------------------------------------------------------ resource requests

    def kind_for(self, res: kmock.resource) -> Kind:
        return Kind(res, self.resources[res])

    def kind_of(self, plural: str, group: str = '') -> Kind:
        """The preferred version of a resource, for in-process callers (seeding, the controller)."""
        version = self._group_versions(group)[0] if group else 'v1'
        return self.kind_for(kmock.resource(group, version, plural))

    async def _serve_resource(self, request: kmock.Request, api: ApiPath) -> aiohttp.web.StreamResponse:
        res = kmock.resource(api.group, api.version, api.plural)
        if res not in self.resources:
            raise errors.unknown_resource()
        kind = self.kind_for(res)
        if api.namespace is not None and not kind.namespaced:
            raise errors.unknown_resource()
        verb = api_verb(request.method.value, api, request.params)
        if api.subresource == 'eviction' and kind.plural == 'pods' and kind.group == '':
            return await self._serve_eviction(verb, api)
        if api.subresource not in (None, 'status', 'scale') or (api.subresource and api.subresource not in kind.info.subresources):
            raise errors.unknown_resource()
        if api.subresource == 'scale':
            return await self._serve_scale(request, kind, api, verb)
        handler = {
            'get': self._serve_get, 'list': self._serve_list_request, 'watch': self._serve_watch_request,
            'create': self._serve_create_request, 'update': self._serve_update_request,
            'patch': self._serve_patch_request, 'delete': self._serve_delete_request,
            'deletecollection': self._serve_delete_collection,
        }.get(verb)
        if handler is None or (api.subresource and verb not in ('get', 'update', 'patch')):
            raise errors.method_not_allowed()
        return await handler(request, kind, api)

    async def _serve_eviction(self, verb: str, api: ApiPath) -> aiohttp.web.StreamResponse:
        """POST pods/<name>/eviction (policy/v1 Eviction): the pod is deleted at once. The sandbox has no
        PodDisruptionBudgets, so an eviction is never refused with 429 (the 2.22+ manager then patches the template).
        """
        if verb != 'create':
            raise errors.method_not_allowed()
        await self.delete_object(self.kind_of('pods'), api.namespace, api.name or '')
        return aiohttp.web.json_response({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
                                          'code': 201}, status=201)

    def admit_pod(self, pod: dict[str, Any]) -> None:
        """The mutating admission a pod passes when it is created: the traffic-manager's webhook (injector.py)."""
        def lookup(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
            group = 'apps' if plural in ('replicasets', 'deployments', 'statefulsets') else ''
            return self._live(self.kind_of(plural, group), namespace, name)
        injector.inject_agent(self.files, pod, lookup)

    @staticmethod
    def _wants_table(request: kmock.Request) -> bool:
        return 'as=Table' in request.headers.get('Accept', '')

    def _answer(self, request: kmock.Request, kind: Kind, objs: list[dict[str, Any]], single: bool,
                status: int = 200) -> aiohttp.web.StreamResponse:
        if self._wants_table(request):
            return aiohttp.web.json_response(tables.table(kind.plural, objs, str(self._revision)), status=status)
        if single:
            return aiohttp.web.json_response(objs[0], status=status)
        return aiohttp.web.json_response({
            'kind': f'{kind.kind}List', 'apiVersion': kind.api_version,
            'metadata': {'resourceVersion': str(self._revision)}, 'items': objs}, status=status)

    async def _serve_get(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        obj = self.get_object(kind, api.namespace, api.name or '')
        return self._answer(request, kind, [obj], single=True)

    async def _serve_list_request(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        wanted = selectors.object_filter(request.params.get('labelSelector'), request.params.get('fieldSelector'))
        objs = [obj for obj in self.list_objects(kind, api.namespace) if wanted(obj)]
        return self._answer(request, kind, objs, single=False)

    async def _serve_create_request(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        body = self._body(request)
        if not isinstance(body, dict):
            raise errors.bad_request('the body of a create request must be a JSON object')
        created = await self.create_object(kind, api.namespace, body)
        return self._answer(request, kind, [created], single=True, status=201)

    async def _serve_update_request(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        body = self._body(request)
        if not isinstance(body, dict):
            raise errors.bad_request('the body of an update request must be a JSON object')
        body_name = (body.get('metadata') or {}).get('name')
        if body_name and body_name != api.name:
            raise errors.bad_request('the name of the object does not match the name on the URL')
        wanted_version = (body.get('metadata') or {}).get('resourceVersion')
        async with self._lock:
            current = self._require(kind, api.namespace, api.name or '')
            if wanted_version and wanted_version != current['metadata']['resourceVersion']:
                raise errors.conflict(kind.plural, kind.group, api.name or '')
            updated = await self._update_locked(kind, current, body, api.subresource)
        return self._answer(request, kind, [updated], single=True)

    async def _serve_patch_request(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        content_type = request.headers.get('Content-Type', '').split(';')[0].strip()
        if content_type not in patching.PATCH_TYPES:
            raise errors.ApiError(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format - '
                                  f'accepted media types include: {", ".join(patching.PATCH_TYPES)}', {})
        body = self._body(request)
        async with self._lock:
            current = self._live(kind, api.namespace, api.name or '')
            if current is None and content_type == patching.APPLY_PATCH and not api.subresource:
                created = await self._create_locked(kind, api.namespace, dict(body or {}, metadata={
                    **((body or {}).get('metadata') or {}), 'name': api.name}), keep_status=False)
                return self._answer(request, kind, [created], single=True, status=201)
            if current is None:
                raise errors.not_found(kind.plural, kind.group, api.name or '')
            patched = patching.apply_patch(content_type, current, body)
            updated = await self._update_locked(kind, current, patched, api.subresource)
        return self._answer(request, kind, [updated], single=True)

    async def _serve_delete_request(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        deleted = await self.delete_object(kind, api.namespace, api.name or '')
        if kind.plural in OBJECT_RETURNING_DELETES and kind.group == '':
            return aiohttp.web.json_response(deleted)
        return aiohttp.web.json_response({
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
            'details': {'name': api.name, 'group': kind.group, 'kind': kind.plural,
                        'uid': deleted['metadata'].get('uid')}})

    async def _serve_delete_collection(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        wanted = selectors.object_filter(request.params.get('labelSelector'), request.params.get('fieldSelector'))
        victims = [obj for obj in self.list_objects(kind, api.namespace) if wanted(obj)]
        deleted = [await self.delete_object(kind, obj['metadata'].get('namespace'), obj['metadata']['name'])
                   for obj in victims]
        return self._answer(request, kind, deleted, single=False)

    async def _serve_scale(self, request: kmock.Request, kind: Kind, api: ApiPath, verb: str) -> aiohttp.web.StreamResponse:
        """autoscaling/v1 Scale of a Deployment or StatefulSet (`kubectl scale`)."""
        if verb in ('update', 'patch'):
            body = self._body(request)
            async with self._lock:
                current = self._require(kind, api.namespace, api.name or '')
                scale = self._scale_of(current)
                if verb == 'patch':
                    content_type = request.headers.get('Content-Type', '').split(';')[0].strip()
                    scale = patching.apply_patch(content_type, scale, body)
                else:
                    scale = body
                replicas = int(((scale or {}).get('spec') or {}).get('replicas', 0))
                candidate = copy.deepcopy(current)
                candidate['spec']['replicas'] = replicas
                current = await self._update_locked(kind, current, candidate, None)
        else:
            current = self.get_object(kind, api.namespace, api.name or '')
        return aiohttp.web.json_response(self._scale_of(current))

    @staticmethod
    def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj['metadata']
        match_labels = ((obj.get('spec') or {}).get('selector') or {}).get('matchLabels') or {}
        return {'kind': 'Scale', 'apiVersion': 'autoscaling/v1',
                'metadata': {key: meta.get(key) for key in ('name', 'namespace', 'uid', 'resourceVersion',
                                                            'creationTimestamp')},
                'spec': {'replicas': (obj.get('spec') or {}).get('replicas', 1)},
                'status': {'replicas': (obj.get('status') or {}).get('replicas', 0),
                           'selector': ','.join(f'{k}={v}' for k, v in match_labels.items())}}

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        """JSON bodies, or YAML (server-side apply may send it). Protobuf, which kubectl's typed generators send,
        is read for Namespace, ConfigMap and Secret (protobuf.py); for other kinds it is refused: decoding it needs
        every type's schema.
        """
        if request.headers.get('Content-Type', '').startswith('application/vnd.kubernetes.protobuf'):
            try:
                return protobuf.decode(request.body or b'')
            except protobuf.UnsupportedProtobuf as exc:
                raise errors.ApiError(415, 'UnsupportedMediaType', f'the sandbox API server accepts JSON or YAML '
                                      f'bodies ({exc}): use `kubectl create -f` or `kubectl apply -f`, or '
                                      f'`kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`', {})
        if request.data is not None:
            return request.data
        try:
            return yaml.safe_load(request.text) if request.text.strip() else None
        except yaml.YAMLError:
            raise errors.bad_request('the request body is neither JSON nor YAML')

    # ------------------------------------------------------------------ watch

    async def _serve_watch_request(self, request: kmock.Request, kind: Kind, api: ApiPath) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        wanted = selectors.object_filter(request.params.get('labelSelector'), request.params.get('fieldSelector'))
        if api.name:
            wanted = _named(wanted, api.name)
        timeout = float(request.params.get('timeoutSeconds') or DEFAULT_WATCH_SECONDS)
        async with self._lock:  # the snapshot and the bus mark must see the same point in the store's history
            initial = self._initial_watch_events(kind, api.namespace, wanted, request.params.get('resourceVersion'))
            mark = await self._buses[kind.resource].mark()
        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        await response.prepare(raw)
        try:
            for event in initial:
                await response.write(tables.watch_line(event))
            await self._stream_changes(response, raw, mark, api.namespace, wanted, timeout)
        except ConnectionError:
            pass  # the client went away; nothing to tell it
        finally:
            await self._buses[kind.resource].unmark(mark)
        return response

    def _initial_watch_events(self, kind: Kind, namespace: str | None, wanted: Any,
                              resource_version: str | None) -> list[dict[str, Any]]:
        """No version (or "0"): every current object as ADDED. A version: the stored changes after it."""
        if resource_version in (None, '', '0'):
            return [{'type': 'ADDED', 'object': obj} for obj in self.list_objects(kind, namespace) if wanted(obj)]
        try:
            since = int(resource_version)
        except ValueError:
            raise errors.bad_request(f'invalid resource version: {resource_version!r}')
        history_is_truncated = len(self._history) == self._history.maxlen
        if history_is_truncated and since < self._history[0].revision - 1:
            return [{'type': 'ERROR', 'object': errors.expired(resource_version).as_status()}]
        changes = (change for change in self._history if change.revision > since and change.resource == kind.resource)
        return [event for change in changes if (event := self._event_for(change, namespace, wanted))]

    async def _stream_changes(self, response: aiohttp.web.StreamResponse, raw: aiohttp.web.BaseRequest,
                              mark: kmock.BusMark[Change], namespace: str | None, wanted: Any, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                change = await asyncio.wait_for(mark.bus.get(since=mark), min(remaining, DISCONNECT_POLL_SECONDS))
            except TimeoutError:
                if raw.transport is None or raw.transport.is_closing():
                    return
                continue
            if event := self._event_for(change, namespace, wanted):
                await response.write(tables.watch_line(event))

    @staticmethod
    def _event_for(change: Change, namespace: str | None, wanted: Any) -> dict[str, Any] | None:
        """The event a filtered watch sees: an object entering the selector is ADDED, one leaving it DELETED."""
        if namespace is not None and change.object['metadata'].get('namespace') != namespace:
            return None
        now_in = wanted(change.object)
        was_in = wanted(change.old) if change.old is not None else now_in
        if change.type != 'MODIFIED':
            return {'type': change.type, 'object': change.object} if now_in else None
        if was_in and now_in:
            return {'type': 'MODIFIED', 'object': change.object}
        if now_in:
            return {'type': 'ADDED', 'object': change.object}
        if was_in:
            return {'type': 'DELETED', 'object': change.object}
        return None

    # ------------------------------------------------------------------ the store (also used in-process)

    def _iter_live(self, kind: Kind) -> Iterator[dict[str, Any]]:
        for (res, _namespace, _name), obj in self.objects.items():
            if res == kind.resource and not obj.deleted:
                yield obj.raw

    def _live(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kind.resource, namespace if kind.namespaced else None, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _require(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._live(kind, namespace, name)
        if obj is None:
            raise errors.not_found(kind.plural, kind.group, name)
        return obj

    def get_object(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        return self._require(kind, namespace, name)

    def list_objects(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        """Live objects sorted like etcd keys (namespace, then name); all namespaces when `namespace` is None."""
        objs = [copy.deepcopy(obj) for obj in self._iter_live(kind)
                if namespace is None or obj['metadata'].get('namespace') == namespace]
        return sorted(objs, key=lambda o: (o['metadata'].get('namespace') or '', o['metadata']['name']))

    @property
    def revision(self) -> int:
        return self._revision

    async def _commit(self, kind: Kind, change_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Store a new version (or the deletion), stamp the resourceVersion and tell the watches. Under the lock."""
        self._revision += 1
        obj = copy.deepcopy(obj)
        obj['metadata']['resourceVersion'] = str(self._revision)
        key = (kind.resource, obj['metadata'].get('namespace'), obj['metadata']['name'])
        if change_type == 'DELETED':
            self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].history.append(copy.deepcopy(obj))
        else:
            self.objects[key] = copy.deepcopy(obj)
        change = Change(self._revision, kind.resource, change_type, obj, old)
        self._history.append(change)
        await self._buses[kind.resource].put(change)
        self.changed.set()
        return copy.deepcopy(obj)

    async def create_object(self, kind: Kind, namespace: str | None, body: dict[str, Any],
                            keep_status: bool = False) -> dict[str, Any]:
        async with self._lock:
            return await self._create_locked(kind, namespace, body, keep_status)

    async def _create_locked(self, kind: Kind, namespace: str | None, body: dict[str, Any],
                             keep_status: bool) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault('metadata', {})
        name = meta.get('name') or (meta['generateName'] + random_suffix() if meta.get('generateName') else None)
        if not name:
            raise errors.invalid(kind.kind, kind.group, '', 'metadata.name',
                                 'Required value: name or generateName is required')
        meta['name'] = name
        self._place_in_namespace(kind, namespace, meta)
        if self._live(kind, meta.get('namespace'), name) is not None:
            raise errors.already_exists(kind.plural, kind.group, name)
        obj['apiVersion'], obj['kind'] = kind.api_version, kind.kind
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        meta.pop('resourceVersion', None)
        if kind.tracks_generation:
            meta['generation'] = 1
        if kind.has_status and not keep_status:
            obj.pop('status', None)
        if kind.plural == 'pods' and kind.group == '':
            self.admit_pod(obj)
        self._apply_defaults(kind, obj)
        return await self._commit(kind, 'ADDED', obj, None)

    def _place_in_namespace(self, kind: Kind, namespace: str | None, meta: dict[str, Any]) -> None:
        if not kind.namespaced:
            meta.pop('namespace', None)
            return
        namespace = namespace or meta.get('namespace')
        if meta.get('namespace') and meta['namespace'] != namespace:
            raise errors.bad_request('the namespace of the provided object does not match the namespace sent on the '
                                     'request')
        if not namespace:
            raise errors.bad_request('the server could not find the requested resource: a namespace is required')
        if self._live(self.kind_of('namespaces'), None, namespace) is None:
            raise errors.not_found('namespaces', '', namespace)
        meta['namespace'] = namespace

    async def update_object(self, kind: Kind, current: dict[str, Any], candidate: dict[str, Any],
                            subresource: str | None = None) -> dict[str, Any]:
        async with self._lock:
            latest = self._require(kind, current['metadata'].get('namespace'), current['metadata']['name'])
            return await self._update_locked(kind, latest, candidate, subresource)

    async def _update_locked(self, kind: Kind, current: dict[str, Any], candidate: dict[str, Any],
                             subresource: str | None) -> dict[str, Any]:
        """Writes keep identity fields; the main resource cannot change the status, `/status` only the status."""
        if subresource == 'status':
            new = copy.deepcopy(current)
            new['status'] = copy.deepcopy(candidate.get('status') or {})
        else:
            new = copy.deepcopy(candidate)
            if kind.has_status:
                new.pop('status', None)
                if 'status' in current:
                    new['status'] = copy.deepcopy(current['status'])
        meta = new.setdefault('metadata', {})
        for field in ('name', 'namespace', 'uid', 'creationTimestamp', 'generation', 'deletionTimestamp'):
            if field in current['metadata']:
                meta[field] = current['metadata'][field]
        new['apiVersion'], new['kind'] = kind.api_version, kind.kind
        self._apply_defaults(kind, new)
        if kind.tracks_generation and new.get('spec') != current.get('spec'):
            meta['generation'] = int(current['metadata'].get('generation', 1)) + 1
        meta['resourceVersion'] = current['metadata']['resourceVersion']
        if new == current:
            return current  # a no-op write keeps the resourceVersion and makes no watch event, as in Kubernetes
        return await self._commit(kind, 'MODIFIED', new, current)

    async def delete_object(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        async with self._lock:
            current = self._require(kind, namespace, name)
            if kind.plural == 'namespaces' and kind.group == '':
                return await self._delete_namespace_locked(kind, current)
            return await self._commit(kind, 'DELETED', current, None)

    async def _delete_namespace_locked(self, kind: Kind, namespace_obj: dict[str, Any]) -> dict[str, Any]:
        """Cascade at once: every object of the namespace goes (DELETED events), then the namespace itself.

        The answer shows the namespace as a real server does at that moment: Terminating, with a deletionTimestamp.
        """
        name = namespace_obj['metadata']['name']
        for (res, obj_namespace, _obj_name), obj in list(self.objects.items()):
            if obj_namespace == name and not obj.deleted:
                await self._commit(self.kind_for(res), 'DELETED', copy.deepcopy(obj.raw), None)
        terminating = copy.deepcopy(namespace_obj)
        terminating['metadata']['deletionTimestamp'] = now_rfc3339()
        terminating['status'] = {'phase': 'Terminating'}
        return await self._commit(kind, 'DELETED', terminating, None)

    # ------------------------------------------------------------------ defaults a real server fills in

    def _apply_defaults(self, kind: Kind, obj: dict[str, Any]) -> None:
        defaulter = {
            ('', 'namespaces'): self._default_namespace, ('', 'services'): self._default_service,
            ('', 'secrets'): self._default_secret, ('', 'pods'): self._default_pod,
            ('apps', 'deployments'): self._default_deployment, ('apps', 'statefulsets'): self._default_workload,
        }.get((kind.group, kind.plural))
        if defaulter is not None:
            defaulter(obj)

    @staticmethod
    def _default_namespace(obj: dict[str, Any]) -> None:
        obj['metadata'].setdefault('labels', {})['kubernetes.io/metadata.name'] = obj['metadata']['name']
        obj.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
        obj.setdefault('status', {}).setdefault('phase', 'Active')

    def _default_service(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault('spec', {})
        spec.setdefault('type', 'ClusterIP')
        spec.setdefault('sessionAffinity', 'None')
        if 'clusterIP' not in spec:
            self._next_ip += 1
            spec['clusterIP'] = f'10.43.{self._next_ip // 250}.{self._next_ip % 250 + 1}'
        spec.setdefault('clusterIPs', [spec['clusterIP']])
        for port in spec.get('ports') or []:
            port.setdefault('protocol', 'TCP')
            port.setdefault('targetPort', port.get('port'))
        obj.setdefault('status', {}).setdefault('loadBalancer', {})

    @staticmethod
    def _default_secret(obj: dict[str, Any]) -> None:
        obj.setdefault('type', 'Opaque')
        for key, value in (obj.pop('stringData', None) or {}).items():
            obj.setdefault('data', {})[key] = base64.b64encode(str(value).encode()).decode()

    @staticmethod
    def _default_pod(obj: dict[str, Any]) -> None:
        obj.setdefault('spec', {}).setdefault('restartPolicy', 'Always')
        obj.setdefault('status', {}).setdefault('phase', 'Pending')

    def _default_deployment(self, obj: dict[str, Any]) -> None:
        self._default_workload(obj)
        spec = obj['spec']
        spec.setdefault('strategy', {'type': 'RollingUpdate',
                                     'rollingUpdate': {'maxUnavailable': '25%', 'maxSurge': '25%'}})
        spec.setdefault('revisionHistoryLimit', 10)
        spec.setdefault('progressDeadlineSeconds', 600)

    @staticmethod
    def _default_workload(obj: dict[str, Any]) -> None:
        obj.setdefault('spec', {}).setdefault('replicas', 1)
