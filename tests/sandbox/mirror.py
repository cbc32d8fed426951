#!/usr/bin/env python
"""Release mirror of the sandbox: builds per-version emulator artifacts and serves them over HTTP.

    mirror.py build --dir DIR [--big MB]   write DIR/mirror/v<X.Y.Z>/telepresence-<os>-<arch> (+ sha256sums.txt)
                                           and DIR/bin/telepresence-<X.Y.Z> for this host
    mirror.py serve --dir DIR              serve DIR/mirror on 127.0.0.1:<random port> (port in DIR/ports/mirror)

Stdlib only.  The layout is GitHub's release layout (`<base>/v2.24.0/telepresence-linux-amd64`), so a
module's `mirror_url`/`base_url` option can point at it.  Faults come from DIR/faults.json key "mirror"
(see tests/sandbox/CONTRACT.md); their counters live in faults.state.json under an fcntl lock.
"""

import argparse
import fcntl
import hashlib
import http.server
import importlib.util
import io
import json
import marshal
import os
import platform
import re
import struct
import sys
import threading
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "emulator", "telepresence.py")
VERSIONS = ("2.20.2", "2.24.0", "2.24.1", "2.25.0", "2.29.0", "2.30.0")
PLATFORMS = tuple((os_name, arch) for os_name in ("linux", "darwin") for arch in ("amd64", "arm64"))
BIG_ARTIFACT = "telepresence-big"
CHUNK = 64 * 1024
SLOW_CHUNK = 1024          # `slow` fault: 1 KiB ...
SLOW_PAUSE = 0.5           # ... every half second


# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------

def host_platform():
    os_name = "darwin" if sys.platform == "darwin" else "linux"
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "amd64"
    return os_name, arch


def interpreter_line():
    """The shebang of the artifacts: this host's base Python run with -S -E (stdlib only, no site-packages).

    A version-manager shim (pyenv's `python3` is a shell script) costs ~0.2 s per call, and the emulator is
    called hundreds of times per test run; TP_SANDBOX_EMULATOR_PYTHON overrides the interpreter.
    """
    python = os.environ.get("TP_SANDBOX_EMULATOR_PYTHON") or os.path.realpath(
        getattr(sys, "_base_executable", None) or sys.executable)
    return ("#!%s -SE\n" % python).encode()


def baked_source(source, version, sandbox_dir):
    text = re.sub(r'^EMULATED_VERSION = ".*"$', 'EMULATED_VERSION = "%s"' % version, source, count=1, flags=re.M)
    return re.sub(r'^SANDBOX_DIR = ".*"$', "SANDBOX_DIR = %s" % json.dumps(sandbox_dir), text, count=1, flags=re.M)


class Baker:
    """Turns the emulator source into per-version, per-platform executables.

    Each artifact is a zipapp: a shebang line followed by a zip holding the baked source (`telepresence.py`),
    its bytecode (`telepresence.pyc`, so no call pays the ~50 ms compile of a 100 KB script), a `__main__.py`
    that runs it, and a platform marker. The source is compiled once with placeholder constants; each version
    gets a copy of that code object whose two placeholders are swapped for the real values.
    """

    VERSION_MARK = "@@EMULATED_VERSION@@"
    DIR_MARK = "@@SANDBOX_DIR@@"

    def __init__(self, source):
        self.source = source
        template = baked_source(source, self.VERSION_MARK, self.DIR_MARK)
        self.code = compile(template, "telepresence.py", "exec", dont_inherit=True, optimize=0)
        self.shebang = interpreter_line()

    def version_files(self, version, sandbox_dir):
        text = baked_source(self.source, version, sandbox_dir).encode()
        swap = {self.VERSION_MARK: version, self.DIR_MARK: sandbox_dir}
        code = self.code.replace(co_consts=tuple(swap.get(c, c) if isinstance(c, str) else c
                                                 for c in self.code.co_consts))
        # unchecked hash-based pyc (PEP 552): valid without comparing against the source's mtime
        pyc = importlib.util.MAGIC_NUMBER + struct.pack("<I", 0b01) + importlib.util.source_hash(text) \
            + marshal.dumps(code)
        return text, pyc

    def artifact(self, files, os_name, arch):
        text, pyc = files
        buffer = io.BytesIO()
        stamp = (2025, 8, 25, 0, 0, 0)   # fixed timestamps: identical inputs give identical bytes
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(zipfile.ZipInfo("__main__.py", stamp),
                             "import sys\nimport telepresence\nsys.exit(telepresence.main())\n")
            archive.writestr(zipfile.ZipInfo("telepresence.py", stamp), text)
            archive.writestr(zipfile.ZipInfo("telepresence.pyc", stamp), pyc)
            archive.writestr(zipfile.ZipInfo("PLATFORM", stamp), "%s/%s\n" % (os_name, arch))
        return self.shebang + buffer.getvalue()


def write_executable(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def write_big_artifact(version_dir, megabytes):
    """A large deterministic artifact for download tests (streamed in chunks by `serve`)."""
    path = os.path.join(version_dir, BIG_ARTIFACT)
    block = hashlib.sha256(b"telepresence-big").digest() * (CHUNK // 32)
    with open(path, "wb") as handle:
        remaining = int(megabytes * 1024 * 1024)
        while remaining > 0:
            handle.write(block[:remaining])
            remaining -= len(block)
    os.chmod(path, 0o755)
    return path


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(directory, big_mb=0):
    directory = os.path.abspath(directory)
    with open(EMULATOR) as handle:
        baker = Baker(handle.read())
    host = host_platform()
    os.makedirs(os.path.join(directory, "bin"), exist_ok=True)
    for version in VERSIONS:
        version_dir = os.path.join(directory, "mirror", "v" + version)
        os.makedirs(version_dir, exist_ok=True)
        sums = []
        files = baker.version_files(version, directory)
        for os_name, arch in PLATFORMS:
            name = "telepresence-%s-%s" % (os_name, arch)
            data = baker.artifact(files, os_name, arch)
            write_executable(os.path.join(version_dir, name), data)
            sums.append("%s  %s\n" % (hashlib.sha256(data).hexdigest(), name))
            if (os_name, arch) == host:
                write_executable(os.path.join(directory, "bin", "telepresence-" + version), data)
        if big_mb and version == "2.24.0":
            big = write_big_artifact(version_dir, big_mb)
            sums.append("%s  %s\n" % (sha256_file(big), BIG_ARTIFACT))
        with open(os.path.join(version_dir, "sha256sums.txt"), "w") as handle:
            handle.write("".join(sums))


# ---------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------

def read_json(path, default):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def take_mirror_fault(directory, url_path):
    """The fault spec matching url_path (longest matching suffix, then "*"), counted per spec key."""
    faults = (read_json(os.path.join(directory, "faults.json"), {}) or {}).get("mirror") or {}
    candidates = sorted((key for key in faults if key != "*" and url_path.endswith(key)), key=len, reverse=True)
    key = candidates[0] if candidates else ("*" if "*" in faults else None)
    if key is None or not isinstance(faults[key], dict):
        return None
    spec = faults[key]
    times = spec.get("times")
    state_path = os.path.join(directory, "faults.state.json")
    with open(os.path.join(directory, "faults.lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            counters = read_json(state_path, {}) or {}
            mirror_counters = counters.setdefault("mirror", {})
            used = int(mirror_counters.get(key, 0))
            if times is not None and used >= int(times):
                return None
            mirror_counters[key] = used + 1
            tmp = "%s.%d.tmp" % (state_path, os.getpid())
            with open(tmp, "w") as handle:
                json.dump(counters, handle, indent=2, sort_keys=True)
            os.replace(tmp, state_path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return spec


# ---------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------

class MirrorHandler(http.server.BaseHTTPRequestHandler):
    server_version = "sandbox-mirror/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: to DIR/logs/mirror.log, not stderr
        self.server.log("%s %s" % (self.address_string(), fmt % args))

    def do_HEAD(self):
        self.handle_request(head=True)

    def do_GET(self):
        self.handle_request(head=False)

    def resolve(self):
        """Map the URL path onto a file under DIR/mirror, refusing anything that escapes it."""
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        root = self.server.root
        target = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if not target.startswith(root + os.sep) or not os.path.isfile(target):
            return path, None
        return path, target

    def handle_request(self, head):
        url_path, target = self.resolve()
        fault = take_mirror_fault(self.server.directory, url_path)
        mode = str(fault.get("mode")) if fault else None
        if mode == "404" or (target is None and mode is None):
            return self.send_plain(404, "Not Found\n", head)
        if mode == "500":
            return self.send_plain(500, "Internal Server Error\n", head)
        if target is None:
            return self.send_plain(404, "Not Found\n", head)
        size = os.path.getsize(target)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode == "truncate":
            self.send_header("Content-Length", str(size + 4096))
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        if head:
            return None
        if mode == "truncate":
            self.stream(target, limit=size // 2)
            self.close_connection = True
            return None
        if mode == "wrong":
            return self.stream_wrong(size)
        return self.stream(target, slow=(mode == "slow"))

    def send_plain(self, code, text, head):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def stream(self, target, limit=None, slow=False):
        """Send the file in chunks (never the whole file in memory); `slow` trickles it."""
        chunk = SLOW_CHUNK if slow else CHUNK
        sent = 0
        try:
            with open(target, "rb") as handle:
                while limit is None or sent < limit:
                    size = chunk if limit is None else min(chunk, limit - sent)
                    data = handle.read(size)
                    if not data:
                        break
                    if slow:
                        time.sleep(SLOW_PAUSE)    # before each chunk: even a one-chunk file is late
                    self.wfile.write(data)
                    self.wfile.flush()
                    sent += len(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def stream_wrong(self, size):
        """Different bytes, same length: only a checksum catches it."""
        block = b"#!/bin/sh\necho tampered\n" + b"\0" * (CHUNK - 24)
        sent = 0
        try:
            while sent < size:
                data = block[:min(CHUNK, size - sent)]
                self.wfile.write(data)
                sent += len(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class MirrorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory):
        self.directory = os.path.abspath(directory)
        self.root = os.path.realpath(os.path.join(self.directory, "mirror"))
        os.makedirs(os.path.join(self.directory, "logs"), exist_ok=True)
        self.log_file = open(os.path.join(self.directory, "logs", "mirror.log"), "a")
        self.log_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), MirrorHandler)

    def log(self, line):
        with self.log_lock:
            self.log_file.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), line))
            self.log_file.flush()


def write_port(directory, port):
    ports = os.path.join(directory, "ports")
    os.makedirs(ports, exist_ok=True)
    tmp = os.path.join(ports, "mirror.tmp")
    with open(tmp, "w") as handle:
        handle.write(str(port))
    os.replace(tmp, os.path.join(ports, "mirror"))


def serve(directory):
    server = MirrorServer(directory)
    port = server.server_address[1]
    write_port(server.directory, port)
    server.log("serving %s on http://127.0.0.1:%d" % (server.root, port))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    build_cmd = sub.add_parser("build", help="write the artifacts")
    build_cmd.add_argument("--dir", required=True)
    build_cmd.add_argument("--big", type=float, default=0, metavar="MB",
                           help="also write v2.24.0/%s of MB mebibytes" % BIG_ARTIFACT)
    serve_cmd = sub.add_parser("serve", help="serve DIR/mirror on 127.0.0.1")
    serve_cmd.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    if args.action == "build":
        build(args.dir, args.big)
    else:
        serve(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
