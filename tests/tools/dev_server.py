# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in for the developer's local dev server, for Molecule and the demo (stdlib only).

    python dev_server.py start --dir DIR [--port 8000|auto] [--name NAME]   # prints the port, returns when it listens
    python dev_server.py stop --dir DIR                                     # stops the one started in DIR

Every request gets ``200`` with the body ``local: <name>`` and the header ``X-Served-By: local``, so a test can tell
it from the cluster's answer. ``--port auto`` (the default) takes 8000 when it is free, else any free port. The port
and pid go to DIR/dev_server.port and DIR/dev_server.pid.
"""

from __future__ import annotations

import argparse
import errno
import http.server
import os
import signal
import socket
import subprocess
import sys
import time

PREFERRED_PORT = 8000
START_SECONDS = 10


def port_file(directory):
    return os.path.join(directory, "dev_server.port")


def pid_file(directory):
    return os.path.join(directory, "dev_server.pid")


def bind(port):
    """A listening server on 127.0.0.1:port; port "auto" means 8000 when free, else any free port."""
    if port != "auto":
        return http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", PREFERRED_PORT), Handler)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    name = "dev-server"

    def do_GET(self):  # pylint: disable=invalid-name
        body = ("local: %s\n" % self.name).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", "local")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        sys.stderr.write("%s\n" % (format % args))


def serve(args):
    Handler.name = args.name
    server = bind(args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    write(port_file(args.dir), str(server.server_address[1]))
    write(pid_file(args.dir), str(os.getpid()))
    server.serve_forever()


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text + "\n")
    os.replace(tmp, path)


def read_int(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(args):
    os.makedirs(args.dir, exist_ok=True)
    stop(args, quiet=True)
    log = open(os.path.join(args.dir, "dev_server.log"), "ab")
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", "--dir", args.dir,
                              "--port", str(args.port), "--name", args.name],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        port = read_int(port_file(args.dir))
        if port and read_int(pid_file(args.dir)) == child.pid and listening(port):
            print(port)
            return 0
        if child.poll() is not None:
            break
        time.sleep(0.05)
    child.kill()
    sys.stderr.write("dev server did not start; see %s\n" % os.path.join(args.dir, "dev_server.log"))
    return 1


def stop(args, quiet=False):
    pid = read_int(pid_file(args.dir))
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    for path in (pid_file(args.dir), port_file(args.dir)):
        if os.path.exists(path):
            os.remove(path)
    if not quiet:
        print("stopped" if pid else "not running")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "serve"])
    parser.add_argument("--dir", required=True, help="where the port, pid and log files go")
    parser.add_argument("--port", default="auto", help="a port number, or auto (8000 when free, else any)")
    parser.add_argument("--name", default="dev-server", help="how the server identifies itself")
    args = parser.parse_args()
    if args.action == "serve":
        return serve(args)
    return start(args) if args.action == "start" else stop(args)


if __name__ == "__main__":
    sys.exit(main())
