#!/usr/bin/env python
"""Traffic stand-ins: `traffic.py --dir DIR`, one HTTP listener per seeded Service (stdlib only).

Each listener plays `kubectl port-forward svc/<name>` to the Service's `http` port (or its only/first port): by default
the cluster answers (`200`, body `cluster: <service>.<namespace>`, header `X-Served-By: cluster`). While the emulator's
state.json holds an ACTIVE intercept of that Service (and port), the request goes to 127.0.0.1:<local_port> instead,
exactly as an intercepted workload would send it to the developer's machine. state.json is read on every request,
under a shared fcntl lock on state.lock. Ports go to DIR/ports/traffic.json as {"app/fresh-app": port, ...}.
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


def intercept_target(files: SandboxFiles, route: Route) -> int | None:
    """The local port an ACTIVE intercept sends this route's traffic to, read fresh from state.json."""
    if not files.state.exists():
        return None
    with locked(files.state_lock, shared=True):
        state = read_json(files.state, {}) or {}
    for intercept in state.get('intercepts') or []:
        if isinstance(intercept, dict) and route.is_intercepted_by(intercept) and intercept.get('local_port'):
            return int(intercept['local_port'])
    return None


def make_handler(files: SandboxFiles, route: Route) -> type[http.server.BaseHTTPRequestHandler]:
    class ServiceHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def handle_any(self) -> None:
            body = self._read_body()
            local_port = intercept_target(files, route)
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


def seeded_routes() -> list[Route]:
    return [Route(seed.APP_NAMESPACE, name, seed.forwarded_port(ports))
            for name, ports in seed.seeded_services().items()]


def serve(files: SandboxFiles) -> None:
    files.make_dirs()
    files.traffic_ports.unlink(missing_ok=True)
    servers = []
    for route in seeded_routes():
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), make_handler(files, route))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.2}, name=route.key,
                         daemon=True).start()
        servers.append((route, server))
    write_atomically(files.traffic_ports, json.dumps({route.key: server.server_address[1]
                                                      for route, server in servers}, indent=1))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.2):  # bounded waits keep the main thread responsive to signals
        pass
    for _route, server in servers:
        server.shutdown()
    files.traffic_ports.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', required=True, help='the sandbox directory ($TP_SANDBOX_DIR)')
    serve(SandboxFiles(parser.parse_args().dir))


if __name__ == '__main__':
    main()
