#!/usr/bin/env python
"""Traffic stand-ins: `traffic.py --dir DIR`, one HTTP listener per port of every Service in the cluster (stdlib only).

It lists and then watches the cluster's Services through the sandbox API (the port in DIR/ports/api), so a Service
created later is served as soon as its watch event arrives and stops being served when it is deleted. Each listener
plays `kubectl port-forward svc/<name>` to one Service port: by default
the cluster answers (`200`, body `cluster: <service>.<namespace>`, header `X-Served-By: cluster`). While the emulator's
state.json holds an ACTIVE intercept or replace of that Service (and port), the request goes to 127.0.0.1:<local_port>
instead, exactly as an intercepted workload would send it to the developer's machine; an ACTIVE wiretap leaves the
answer to the cluster and sends a copy of the request to its local port (header `X-Telepresence-Wiretap: 1`). state.json is read on every request,
under a shared fcntl lock on state.lock. The URLs go to DIR/ports/traffic.json, rewritten at every change:
{"app/fresh-app": {"url": <the `http` port's URL, else the first port's>, "ports": {"http": URL, "80": URL}}, ...}.
"""
import argparse
import http.client
import http.server
import json
import pathlib
import signal
import sys
import threading
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from clusterkit import seed  # noqa: E402  (stdlib-only module)
from clusterkit.files import SandboxFiles, locked, read_json, write_atomically  # noqa: E402

PROXY_TIMEOUT_SECONDS = 10.0
LIST_TIMEOUT_SECONDS = 5.0
WATCH_READ_TIMEOUT_SECONDS = 2.0  # an idle watch is re-listed this often; it bounds how long a stop waits
RETRY_SECONDS = 0.1               # while the cluster's API port file is missing or the API does not answer
HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailers',
              'transfer-encoding', 'upgrade', 'host', 'content-length'}
ACTIVE = ('ACTIVE', 1)  # a disposition as the emulator writes it (string), or the manager's enum number


class Route:
    """One forwarded Service port."""

    def __init__(self, namespace: str, service: str, port: dict[str, Any]) -> None:
        self.namespace, self.service = namespace, service
        self.port_name: str | None = port.get('name')
        self.port_number: int = int(port['port'])

    @property
    def key(self) -> str:
        return f'{self.namespace}/{self.service}'

    def is_intercepted_by(self, intercept: dict[str, Any]) -> bool:
        """Same namespace and Service, ACTIVE, and (when the intercept names a Service port) that very port."""
        service = intercept.get('service') or intercept.get('workload')
        if intercept.get('namespace') != self.namespace or service != self.service:
            return False
        if intercept.get('disposition') not in ACTIVE:
            return False
        wanted_name, wanted_number = intercept.get('service_port_name'), intercept.get('service_port')
        if wanted_name and self.port_name and wanted_name != self.port_name:
            return False
        if wanted_number and not wanted_name and int(wanted_number) != self.port_number:
            return False
        return True


def engagements(files: SandboxFiles, route: Route) -> tuple[int | None, list[int]]:
    """``(redirect, copies)`` for this route, read fresh from state.json: the local port an ACTIVE intercept or
    replace sends the traffic to (None: the cluster answers), and the local ports ACTIVE wiretaps get a copy on.

    A record's ``mode`` (intercept when absent) decides: intercept and replace take the traffic, wiretap only
    copies it, and ingests (kept apart, under ``ingests``) change no traffic at all.
    """
    if not files.state.exists():
        return None, []
    with locked(files.state_lock, shared=True):
        state = read_json(files.state, {}) or {}
    redirect, copies = None, []
    for intercept in state.get('intercepts') or []:
        if not (isinstance(intercept, dict) and route.is_intercepted_by(intercept) and intercept.get('local_port')):
            continue
        if intercept.get('mode') == 'wiretap':
            copies.append(int(intercept['local_port']))
        elif redirect is None:
            redirect = int(intercept['local_port'])
    return redirect, copies


def intercept_target(files: SandboxFiles, route: Route) -> int | None:
    """The local port an ACTIVE intercept (or replace) sends this route's traffic to, read fresh from state.json."""
    return engagements(files, route)[0]


def send_copy(local_port: int, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
    """A wiretap's read-only copy: the request goes to the local port too, its answer (or failure) is dropped."""
    connection = http.client.HTTPConnection('127.0.0.1', local_port, timeout=PROXY_TIMEOUT_SECONDS)
    try:
        connection.request(method, path, body=body or None, headers=dict(headers, **{'X-Telepresence-Wiretap': '1'}))
        connection.getresponse().read()
    except OSError:
        pass  # nobody listens locally: the cluster's answer is all the caller sees, as with a real wiretap
    finally:
        connection.close()


def make_handler(files: SandboxFiles, route: Route) -> type[http.server.BaseHTTPRequestHandler]:
    class ServiceHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def handle_any(self) -> None:
            body = self._read_body()
            local_port, copies = engagements(files, route)
            for copy_port in copies:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                send_copy(copy_port, self.command, self.path, body, headers)
            if local_port is None:
                self._answer(200, f'cluster: {route.service}.{route.namespace}\n'.encode(),
                             {'Content-Type': 'text/plain; charset=utf-8', 'X-Served-By': 'cluster'})
            else:
                self._proxy(local_port, body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

        def _read_body(self) -> bytes:
            length = int(self.headers.get('Content-Length') or 0)
            return self.rfile.read(length) if length else b''

        def _proxy(self, local_port: int, body: bytes) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection = http.client.HTTPConnection('127.0.0.1', local_port, timeout=PROXY_TIMEOUT_SECONDS)
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                answer_headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
                self._answer(response.status, payload, answer_headers)
            except OSError as exc:  # refused, reset, timed out: what a developer sees when nothing listens locally
                text = (f'svc/{route.service} in namespace {route.namespace} is intercepted to 127.0.0.1:{local_port}, '
                        f'but that local port does not answer: {exc}\n')
                self._answer(502, text.encode(), {'Content-Type': 'text/plain; charset=utf-8',
                                                  'X-Served-By': 'sandbox-traffic'})
            finally:
                connection.close()

        def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header('Content-Length', str(len(payload)))
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f'{route.key} {self.address_string()} {format % args}\n')

    return ServiceHandler


def default_port(ports: list[dict[str, Any]]) -> dict[str, Any]:
    """The port a bare `traffic-url NAMESPACE/SERVICE` means: `http` if present, else the first (as port-forward)."""
    return seed.forwarded_port(ports)


def port_key(port: dict[str, Any]) -> tuple[str | None, int]:
    return port.get('name'), int(port['port'])


class Listener:
    """One ThreadingHTTPServer on 127.0.0.1 (port 0) for one Service port."""

    def __init__(self, files: SandboxFiles, route: Route) -> None:
        self.route = route
        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), make_handler(files, route))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.2},
                                       name=f'{route.key}:{route.port_number}', daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.server.server_address[1]}'

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Routes:
    """The listeners of every Service the cluster holds, kept in step with its Service list and watch events."""

    def __init__(self, files: SandboxFiles) -> None:
        self.files = files
        self.services: dict[str, dict[tuple[str | None, int], Listener]] = {}
        self.defaults: dict[str, tuple[str | None, int]] = {}
        self.published = ''

    def put(self, service: dict[str, Any]) -> None:
        meta = service.get('metadata') or {}
        namespace, name = meta.get('namespace') or 'default', meta.get('name')
        ports = [port for port in ((service.get('spec') or {}).get('ports') or [])
                 if isinstance(port, dict) and port.get('port') is not None]
        if not name:
            return
        key = f'{namespace}/{name}'
        if not ports:
            self.remove(key)
            return
        current = self.services.setdefault(key, {})
        wanted = {port_key(port): port for port in ports}
        for gone in [k for k in current if k not in wanted]:
            current.pop(gone).stop()
        for wanted_key, port in wanted.items():
            if wanted_key not in current:  # an unchanged port keeps its listener (and URL) across edits
                current[wanted_key] = Listener(self.files, Route(namespace, name, port))
        self.defaults[key] = port_key(default_port(ports))

    def remove(self, key: str) -> None:
        for listener in self.services.pop(key, {}).values():
            listener.stop()
        self.defaults.pop(key, None)

    def replace_all(self, services: list[dict[str, Any]]) -> None:
        """A fresh list (start, or a watch that had to start over): add, update and drop to match it."""
        keys = set()
        for service in services:
            meta = service.get('metadata') or {}
            keys.add(f"{meta.get('namespace') or 'default'}/{meta.get('name')}")
            self.put(service)
        for key in [k for k in self.services if k not in keys]:
            self.remove(key)

    def table(self) -> dict[str, Any]:
        """traffic.json: per Service its default URL and one URL per port name and per port number."""
        result = {}
        for key, listeners in sorted(self.services.items()):
            by_port: dict[str, str] = {}
            for (name, number), listener in listeners.items():
                by_port[str(number)] = listener.url
                if name:
                    by_port[name] = listener.url
            result[key] = {'url': listeners[self.defaults[key]].url, 'ports': by_port}
        return result

    def publish(self) -> None:
        """Rewrite traffic.json when it changed (the periodic re-list usually changes nothing)."""
        text = json.dumps(self.table(), indent=1, sort_keys=True)
        if text != self.published or not self.files.traffic_ports.exists():
            write_atomically(self.files.traffic_ports, text)
            self.published = text

    def stop(self) -> None:
        for key in list(self.services):
            self.remove(key)


def api_connection(files: SandboxFiles, timeout: float) -> http.client.HTTPConnection | None:
    try:
        port = int(files.api_port.read_text().strip())
    except (OSError, ValueError):
        return None  # the cluster is not up (yet, or any more)
    return http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)


def list_services(files: SandboxFiles) -> tuple[list[dict[str, Any]], str] | None:
    connection = api_connection(files, LIST_TIMEOUT_SECONDS)
    if connection is None:
        return None
    try:
        connection.request('GET', '/api/v1/services', headers={'Accept': 'application/json'})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            return None
        body = json.loads(payload)
        return list(body.get('items') or []), str((body.get('metadata') or {}).get('resourceVersion') or '')
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def follow_watch(files: SandboxFiles, routes: Routes, resource_version: str, stop: threading.Event) -> None:
    """Apply the Service watch's events until it ends, fails, or we are told to stop (then the caller lists again)."""
    connection = api_connection(files, WATCH_READ_TIMEOUT_SECONDS)
    if connection is None:
        return
    try:
        connection.request('GET', f'/api/v1/services?watch=true&allowWatchBookmarks=false'
                                  f'&resourceVersion={resource_version}', headers={'Accept': 'application/json'})
        response = connection.getresponse()
        if response.status != 200:
            return
        while not stop.is_set():
            line = response.readline()
            if not line:
                return
            event = json.loads(line)
            obj = event.get('object') or {}
            if event.get('type') in ('ADDED', 'MODIFIED'):
                routes.put(obj)
            elif event.get('type') == 'DELETED':
                meta = obj.get('metadata') or {}
                routes.remove(f"{meta.get('namespace') or 'default'}/{meta.get('name')}")
            else:  # ERROR (e.g. 410 Gone) or BOOKMARK: start over from a list
                return
            routes.publish()
    except (OSError, ValueError, http.client.HTTPException):
        return  # includes the read timeout of an idle watch: listing again is cheap
    finally:
        connection.close()


def follow_cluster(files: SandboxFiles, routes: Routes, stop: threading.Event) -> None:
    """List, then watch, the cluster's Services; list again whenever the watch ends. Waits for the API to be up."""
    while not stop.is_set():
        listed = list_services(files)
        if listed is None:
            stop.wait(RETRY_SECONDS)
            continue
        items, resource_version = listed
        routes.replace_all(items)
        routes.publish()
        follow_watch(files, routes, resource_version, stop)


def serve(files: SandboxFiles) -> None:
    files.make_dirs()
    files.traffic_ports.unlink(missing_ok=True)
    routes = Routes(files)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    follower = threading.Thread(target=follow_cluster, args=(files, routes, stop), name='follow-cluster', daemon=True)
    follower.start()
    while not stop.wait(0.2):  # bounded waits keep the main thread responsive to signals
        pass
    follower.join(timeout=WATCH_READ_TIMEOUT_SECONDS + 1)
    routes.stop()
    files.traffic_ports.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', required=True, help='the sandbox directory ($TP_SANDBOX_DIR)')
    serve(SandboxFiles(parser.parse_args().dir))


if __name__ == '__main__':
    main()
