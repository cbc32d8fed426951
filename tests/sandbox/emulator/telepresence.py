#!/usr/bin/env python
"""Stand-in for the Telepresence CLI inside the devloop.telepresence test sandbox.

One stdlib-only file: it must run wherever a downloaded `telepresence` binary would, so it imports
nothing from the repository and nothing outside the standard library.  The mirror build
(`tests/sandbox/mirror.py`) bakes EMULATED_VERSION and SANDBOX_DIR into a copy per release.

The emulator follows /work/shared/docs/telepresence-cli-facts.md (the facts sheet): flags, output
shapes, error texts and exit codes per version.  It talks to the simulated cluster only through the
Kubernetes HTTP API named by the kubeconfig, as the real CLI does, and keeps the state of its
emulated daemons in $TP_SANDBOX_DIR/state.json (fcntl-locked).  See tests/sandbox/README.md.
"""

import base64
import contextlib
import fcntl
import getpass
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode
import uuid

EMULATED_VERSION = "2.24.0"
SANDBOX_DIR = ""

HTTP_TIMEOUT = 10.0          # every call to the cluster API is bounded
POLL_INTERVAL = 0.1
HANG_SECONDS = 3600          # `hang` fault: far past any caller timeout
DEFAULT_MANAGER_NAMESPACE = "ambassador"
AGENT_CONTAINER = "traffic-agent"
AGENTS_CONFIGMAP = "telepresence-agents"
# 2.22+: "the configuration moved into a pod annotation" (facts §9); the sheet gives no name, this one is the sandbox's
AGENT_CONFIG_ANNOTATION = "telepresence.io/agent-config"
RELEASE_NAME = "traffic-manager"
CHART_NAME = "telepresence-oss"
MANAGER_LABELS = {"app": "traffic-manager", "telepresence": "manager"}
SUDO_FAILURE = (
    "sudo: a terminal is required to read the password; either use the -S option to read from standard "
    "input or configure an askpass helper\nsudo: a password is required\n"
)
MOUNT_ERROR = "remote volume mounts are disabled: sshfs is not installed on your local machine"


# ---------------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------------

def parse_semver(text):
    """'v2.24.0' or '2.24.0' -> (2, 24, 0); anything unparsable -> None."""
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", str(text or ""))
    return tuple(int(part) for part in match.groups()) if match else None


VERSION = parse_semver(EMULATED_VERSION) or (2, 24, 0)
SEMVER = EMULATED_VERSION.lstrip("v")
VSEMVER = "v" + SEMVER


def since(major, minor, patch=0):
    return VERSION >= (major, minor, patch)


# ---------------------------------------------------------------------------------------------
# Errors and output
# ---------------------------------------------------------------------------------------------

class CLIError(Exception):
    """An error the CLI reports with exit code 1.

    `progress` marks errors raised inside progress-reported steps (daemon launch, connect, intercept
    creation): from 2.23 on those are printed once, bare, by the progress writer (facts §11).
    `flag` marks cobra parse errors, which are printed as plain text even in JSON mode.
    """

    def __init__(self, message, progress=False, flag=False):
        super().__init__(message)
        self.message = message
        self.progress = progress
        self.flag = flag


def go_json(obj, newline=True):
    """Compact JSON like Go's encoding/json Encoder (HTML-escaping, trailing newline)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text + ("\n" if newline else "")


def to_yaml(obj, indent=0):
    """Small YAML emitter, enough for the objects this CLI prints with --output yaml."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        lines = []
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(value, indent + 1)))
            else:
                lines.append("%s%s: %s\n" % (pad, key, yaml_scalar(value)))
        return "".join(lines)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        lines = []
        for value in obj:
            rendered = to_yaml(value, indent + 1).lstrip() if isinstance(value, (dict, list)) and value \
                else yaml_scalar(value) + "\n"
            lines.append("%s- %s" % (pad, rendered))
        return "".join(lines)
    return pad + yaml_scalar(obj) + "\n"


def yaml_scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    text = str(value)
    if text == "" or "\n" in text or text.strip() != text or re.search(r"[:#{}\[\],&*!|>'\"%@`]", text) \
            or text.lower() in ("true", "false", "null", "yes", "no", "~") or re.match(r"^[-+]?[\d.]+$", text):
        return json.dumps(text)
    return text


class Output:
    """Collects what a command prints and renders it per the output mode of this version.

    Modes: "text"; "legacy" = `--output json|yaml` (the {cmd, stdout, stderr, err} envelope of
    pkg/client/cli/output, with bare objects for commands that pass override); "format" = 2.29+
    `--format json|yaml` (clean objects, {"error": ...} on failure).
    """

    def __init__(self, mode="text", fmt="json", cmd_name=""):
        self.mode = mode
        self.fmt = fmt
        self.cmd_name = cmd_name
        self.stdout = []
        self.stderr = []
        self.obj = None
        self.override = False

    @property
    def structured(self):
        return self.mode != "text"

    def out(self, text):
        """Regular command output (stdout; goes into the envelope's `stdout` in legacy mode)."""
        if self.mode == "text":
            write_stdout(text)
        else:
            self.stdout.append(text)

    def info(self, text):
        """Informational output (output.Info / progress): discarded in structured modes."""
        if self.mode == "text":
            write_stdout(text)

    def warn(self, text):
        """Progress warnings (2.23+): stderr in plain mode, nothing when --output/--format is set."""
        if self.mode == "text":
            write_stderr(text)

    def err(self, text):
        """Command stderr (cmd.ErrOrStderr): captured into the envelope in legacy mode."""
        if self.mode == "legacy":
            self.stderr.append(text)
        else:
            write_stderr(text)

    def object(self, obj, override=False):
        self.obj = obj
        self.override = override

    def encode(self, obj, newline=True):
        if self.fmt == "yaml":
            return to_yaml(obj)
        return go_json(obj, newline=newline)

    def finish(self, error):
        """Print the final output; returns the exit code."""
        if self.mode == "format":
            if error is not None:
                write_stdout(self.encode({"error": error.message}, newline=False))
                return 1
            if self.obj is not None:
                write_stdout(self.encode(self.obj, newline=False))
            return 0
        if self.mode == "legacy":
            if error is None and self.override:
                write_stdout(self.encode(self.obj))
                return 0
            response = {"cmd": self.cmd_name}
            if self.stdout:
                response["stdout"] = "".join(self.stdout)
            elif self.obj is not None:
                response["stdout"] = self.obj
            if self.stderr:
                response["stderr"] = "".join(self.stderr)
            if error is not None:
                response["err"] = error.message
            if len(response) > 1:   # the "zero" object ({cmd} only) is not printed
                write_stdout(self.encode(response))
            return 1 if error is not None else 0
        return 1 if error is not None else 0


def write_stdout(text):
    sys.stdout.write(text)
    sys.stdout.flush()


def write_stderr(text):
    sys.stderr.write(text)
    sys.stderr.flush()


def print_text_error(command_path, error):
    """Text-mode error line (facts §11): bare for 2.23+ progress errors, prefixed otherwise."""
    if error.progress and since(2, 23):
        write_stderr(error.message + "\n")
    else:
        write_stderr("%s: error: %s\n" % (command_path, error.message))


# ---------------------------------------------------------------------------------------------
# Sandbox files: locking, state, knobs, faults, calls log
# ---------------------------------------------------------------------------------------------

def sandbox_dir():
    path = os.environ.get("TP_SANDBOX_DIR") or SANDBOX_DIR
    if not path or not os.path.isdir(path):
        write_stderr("telepresence: error: no sandbox directory (set TP_SANDBOX_DIR); this is the devloop "
                     "sandbox's Telepresence emulator and only runs inside a sandbox\n")
        sys.exit(1)
    return path


@contextlib.contextmanager
def file_lock(path):
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_json(path, default):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def write_json_atomic(path, data):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def empty_state():
    return {
        "daemons": {"user": {"running": False}, "root": {"running": False}},
        "session": None,
        "intercepts": [],
        "intercept_extras": {},
        "ingests": [],
    }


class StateStore:
    """state.json guarded by an fcntl lock on state.lock; each change is one read-modify-write."""

    def __init__(self, base):
        self.path = os.path.join(base, "state.json")
        self.lock = os.path.join(base, "state.lock")

    def read(self):
        with file_lock(self.lock):
            return self._load()

    def _load(self):
        state = read_json(self.path, None) or empty_state()
        for key, value in empty_state().items():
            state.setdefault(key, value)
        return state

    @contextlib.contextmanager
    def transaction(self):
        with file_lock(self.lock):
            state = self._load()
            try:
                yield state
            finally:
                # written even when the command fails half-way: a daemon launched before the
                # failure stays running, as it does with the real CLI
                write_json_atomic(self.path, state)


def load_knobs(base):
    return read_json(os.path.join(base, "knobs.json"), {}) or {}


def take_cli_fault(base, command_path):
    """Return the fault spec to apply to this call, counting it in faults.state.json.

    The cluster server shares faults.state.json, so only the "cli" key is rewritten, under
    the fcntl lock on faults.lock.
    """
    faults = read_json(os.path.join(base, "faults.json"), {}) or {}
    spec = (faults.get("cli") or {}).get(command_path)
    if not isinstance(spec, dict):
        return None
    times = spec.get("times")
    if times is None and spec.get("mode") == "flaky":
        times = 1
    state_path = os.path.join(base, "faults.state.json")
    with file_lock(os.path.join(base, "faults.lock")):
        counters = read_json(state_path, {}) or {}
        cli_counters = counters.setdefault("cli", {})
        used = int(cli_counters.get(command_path, 0))
        if times is not None and used >= int(times):
            return None
        cli_counters[command_path] = used + 1
        write_json_atomic(state_path, counters)
    return spec


def append_call_log(base, record):
    path = os.path.join(base, "calls.log")
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(line)
        fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# A small YAML subset (config.yml, helm values, kubeconfig fallback); JSON is tried first
# ---------------------------------------------------------------------------------------------

def parse_yaml_scalar(text):
    text = text.strip()
    if text == "" or text in ("~", "null", "Null", "NULL"):
        return None
    if text[0] in "\"[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    if text[0] == "'" and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    if text.lower() in ("true", "yes", "on"):
        return True
    if text.lower() in ("false", "no", "off"):
        return False
    if re.match(r"^[-+]?\d+$", text):
        return int(text)
    if re.match(r"^[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?$", text):
        return float(text)
    return text


def strip_comment(line):
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def parse_yaml(text):
    """Parse block mappings/sequences with scalar or flow (JSON-like) values. Not full YAML."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    lines = []
    for raw in text.splitlines():
        if raw.strip() in ("---", "..."):
            continue
        line = strip_comment(raw).rstrip()
        if line.strip():
            lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
    value, _end = _parse_block(lines, 0, lines[0][0] if lines else 0)
    return value


def _split_key(text):
    match = re.match(r"""^("(?:[^"\\]|\\.)*"|'[^']*'|[^:]+?)\s*:(\s+(.*)|)$""", text)
    if not match:
        return None
    key = match.group(1)
    if key[0] in "\"'":
        key = parse_yaml_scalar(key)
    return key, (match.group(3) or "")


def _parse_block(lines, index, indent):
    if index >= len(lines):
        return None, index
    if lines[index][1].startswith("- ") or lines[index][1] == "-":
        return _parse_sequence(lines, index, indent)
    return _parse_mapping(lines, index, indent)


def _parse_mapping(lines, index, indent):
    result = {}
    while index < len(lines) and lines[index][0] == indent:
        split = _split_key(lines[index][1])
        if split is None:
            raise ValueError("cannot parse YAML line: %r" % lines[index][1])
        key, rest = split
        index += 1
        if rest.strip():
            result[key] = parse_yaml_scalar(rest)
        elif index < len(lines) and (lines[index][0] > indent or
                                     (lines[index][0] == indent and lines[index][1].startswith("-"))):
            result[key], index = _parse_block(lines, index, lines[index][0])
        else:
            result[key] = None
    return result, index


def _parse_sequence(lines, index, indent):
    result = []
    while index < len(lines) and lines[index][0] == indent and lines[index][1].startswith("-"):
        rest = lines[index][1][1:].strip()
        if not rest:
            index += 1
            item, index = _parse_block(lines, index, lines[index][0]) if index < len(lines) else (None, index)
            result.append(item)
            continue
        if _split_key(rest) is not None and not rest.startswith(("\"", "'", "[", "{")):
            # "- key: value" starts a mapping whose other keys are indented past the dash
            child_indent = indent + 2
            lines[index] = (child_indent, rest)
            item, index = _parse_mapping(lines, index, child_indent)
            result.append(item)
        else:
            result.append(parse_yaml_scalar(rest))
            index += 1
    return result, index


def load_structured_file(path):
    with open(path) as handle:
        return parse_yaml(handle.read())


# ---------------------------------------------------------------------------------------------
# Client configuration (config.yml): timeouts, manager namespace
# ---------------------------------------------------------------------------------------------

def client_config():
    """The user-level config.yml (Linux location, facts §12); {} when absent or unreadable."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = os.path.join(base, "telepresence", "config.yml")
    try:
        return load_structured_file(path) or {}
    except (OSError, ValueError):
        return {}


def parse_duration(value, default):
    """Go-style durations used in config.yml ("30s", "2m", "1m30s", "500ms") or plain seconds."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    total, found = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(value)):
        found = True
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if found else default


def config_timeout(name, default):
    timeouts = client_config().get("timeouts") or {}
    return parse_duration(timeouts.get(name) if isinstance(timeouts, dict) else None, default)


# ---------------------------------------------------------------------------------------------
# Kubeconfig and the Kubernetes API over HTTP
# ---------------------------------------------------------------------------------------------

class KubeConfig:
    def __init__(self, path, context_name, data):
        self.path = path
        contexts = {c.get("name"): c.get("context") or {} for c in data.get("contexts") or []}
        clusters = {c.get("name"): c for c in data.get("clusters") or []}
        users = {u.get("name"): u.get("user") or {} for u in data.get("users") or []}
        self.context = context_name or data.get("current-context") or ""
        if self.context not in contexts:
            raise CLIError('context "%s" does not exist' % self.context if self.context
                           else "no current context is set in %s" % path)
        ctx = contexts[self.context]
        cluster_entry = clusters.get(ctx.get("cluster")) or {}
        cluster = cluster_entry.get("cluster") or {}
        self.server = (cluster.get("server") or "").rstrip("/")
        self.namespace = ctx.get("namespace") or "default"
        self.token = (users.get(ctx.get("user")) or {}).get("token")
        self.extension = {}
        for ext in cluster.get("extensions") or []:
            if ext.get("name") == "telepresence.io":
                self.extension = ext.get("extension") or {}


def load_kubeconfig(flag_path, context_name):
    if flag_path:
        path = flag_path
    elif os.environ.get("KUBECONFIG"):
        path = os.environ["KUBECONFIG"].split(os.pathsep)[0]
    else:
        path = os.path.join(os.path.expanduser("~"), ".kube", "config")
    try:
        data = load_structured_file(path) or {}
    except OSError as exc:
        raise CLIError("unable to load kubeconfig %s: %s" % (path, exc.strerror))
    except ValueError as exc:
        raise CLIError("unable to parse kubeconfig %s: %s" % (path, exc))
    return KubeConfig(path, context_name, data)


class KubeError(Exception):
    def __init__(self, message, status=0):
        super().__init__(message)
        self.message = message
        self.status = status


class Kube:
    """Minimal Kubernetes REST client (urllib, bearer token, bounded timeouts)."""

    def __init__(self, config):
        self.server = config.server
        self.token = config.token

    def request(self, method, path, body=None, content_type="application/json", query=None):
        import urllib.error    # imported here: urllib.request is slow to import and most calls never need it
        import urllib.request
        url = self.server + path
        if query:
            url += "?" + urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
                raw = resp.read()
                return json.loads(raw) if raw.strip() else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                status = json.loads(raw)
                message = status.get("message") if isinstance(status, dict) else None
            except ValueError:
                message = None
            raise KubeError(message or "the server responded with the status code %d but did not return "
                                       "more information (%s %s)" % (exc.code, method.lower(), path), exc.code)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KubeError('%s "%s": %s' % (method.capitalize(), url, reason))

    def get(self, path):
        """GET returning None on 404."""
        try:
            return self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def items(self, path, selector=None):
        """List; label selectors are also applied client-side (the fake server may ignore them)."""
        query = {"labelSelector": ",".join("%s=%s" % kv for kv in selector.items())} if selector else None
        result = self.request("GET", path, query=query) or {}
        items = result.get("items") or []
        if selector:
            items = [i for i in items if labels_match(selector, (i.get("metadata") or {}).get("labels"))]
        return items

    def create(self, path, body):
        return self.request("POST", path, body)

    def merge_patch(self, path, body):
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path):
        try:
            return self.request("DELETE", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


def labels_match(selector, labels):
    labels = labels or {}
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def ns_path(namespace, resource, name=None):
    group = "/apis/apps/v1" if resource in ("deployments", "replicasets", "statefulsets") else "/api/v1"
    path = "%s/namespaces/%s/%s" % (group, namespace, resource)
    return path + "/" + name if name else path


def object_uid(obj, kind):
    meta = obj.get("metadata") or {}
    return meta.get("uid") or str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%s/%s" % (
        kind, meta.get("namespace"), meta.get("name"))))


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def wait_until(predicate, timeout):
    """Poll predicate() until it returns a truthy value or timeout elapses; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL_INTERVAL)


# ---------------------------------------------------------------------------------------------
# Command-line parsing (cobra/pflag semantics)
# ---------------------------------------------------------------------------------------------

class Flag:
    def __init__(self, name, short=None, kind="string", default=None, hidden=False, deprecated=None,
                 minimum=None, maximum=None):
        self.name = name
        self.short = short
        self.kind = kind              # bool | string | array (repeatable) | slice (repeatable, comma split)
        self.default = default
        self.hidden = hidden
        self.deprecated = deprecated
        self.minimum = minimum        # first version with the flag
        self.maximum = maximum        # last version with the flag (exclusive upper bound)

    def available(self):
        return (self.minimum is None or VERSION >= self.minimum) and (self.maximum is None or VERSION < self.maximum)


def global_flags():
    return [
        Flag("output", kind="string", default="default",
             deprecated="use --format instead" if since(2, 29) else None),
        Flag("format", kind="string", default="default", minimum=(2, 29)),
        Flag("progress", kind="string", default="auto", minimum=(2, 23)),
        Flag("use", kind="string", minimum=(2, 18)),
        Flag("config", kind="string", minimum=(2, 26)),
        Flag("json", short="j", kind="bool", hidden=True, maximum=(2, 23)),
        Flag("help", short="h", kind="bool"),
    ]


KUBE_FLAG_NAMES = ["as", "as-group", "as-uid", "cache-dir", "certificate-authority", "client-certificate",
                   "client-key", "cluster", "context", "disable-compression", "insecure-skip-tls-verify",
                   "kubeconfig", "request-timeout", "server", "tls-server-name", "token", "user"]


def kube_flags():
    flags = [Flag(name, kind="bool" if name in ("disable-compression", "insecure-skip-tls-verify") else "string")
             for name in KUBE_FLAG_NAMES if name != "server"]
    flags.append(Flag("server", short="s"))
    flags.append(Flag("namespace", short="n"))
    return flags


def connect_flags():
    return kube_flags() + [
        Flag("allow-conflicting-subnets", kind="slice"),
        Flag("also-proxy", kind="slice"),
        Flag("never-proxy", kind="slice"),
        Flag("docker", kind="bool"),
        Flag("expose", kind="array"),
        Flag("hostname"),
        Flag("manager-namespace"),
        Flag("mapped-namespaces", kind="slice"),
        Flag("name"),
        Flag("proxy-via", kind="array", minimum=(2, 19)),
        Flag("reroute-local", kind="array", minimum=(2, 24)),
        Flag("reroute-remote", kind="array", minimum=(2, 24)),
        Flag("vnat", kind="slice", minimum=(2, 21)),
    ]


def intercept_flags():
    return [
        Flag("address", default="127.0.0.1"),
        Flag("container", minimum=(2, 21)),
        Flag("detailed-output", kind="bool"),
        Flag("docker-build"),
        Flag("docker-build-opt", kind="array"),
        Flag("docker-debug"),
        Flag("docker-mount"),
        Flag("docker-run", kind="bool"),
        Flag("env-file", short="e"),
        Flag("env-json", short="j"),
        Flag("env-syntax", default="docker", minimum=(2, 20)),
        Flag("local-mount-port"),
        Flag("mechanism", default="tcp"),
        Flag("mount", default="true"),
        Flag("port", short="p", kind="array"),
        Flag("replace", kind="bool", hidden=since(2, 22),
             deprecated="use the replace command" if since(2, 22) else None),
        Flag("service"),
        Flag("to-pod", kind="array"),
        Flag("wait-message"),
        Flag("workload", short="w"),
        # 2.20 still had a hidden, deprecated -n (facts §5); 2.28 brought back a real --namespace.
        Flag("namespace", short="n", hidden=True, maximum=(2, 21),
             deprecated="use telepresence connect to set the namespace"),
        Flag("namespace", short="n", minimum=(2, 28)),
        # 2.25: HTTP filters
        Flag("http-header", kind="array", minimum=(2, 25)),
        Flag("http-path-prefix", minimum=(2, 25)),
        Flag("http-path-equal", minimum=(2, 25)),
        Flag("http-path-regex", minimum=(2, 25)),
        Flag("http-plaintext", kind="bool", minimum=(2, 25)),
        Flag("plaintext", kind="bool", minimum=(2, 25)),
        Flag("metadata", kind="array", minimum=(2, 25)),
    ]


def replace_flags():
    """Facts §5 "Sibling commands": replace takes the intercept flags without --workload/--service (the argument is
    the workload), its -p identifiers are container ports (default all); --namespace from 2.28."""
    dropped = {"workload", "service", "replace", "http-header", "http-path-prefix", "http-path-equal",
               "http-path-regex", "http-plaintext", "plaintext", "metadata"}
    return [f for f in intercept_flags() if f.name not in dropped]


def wiretap_flags():
    """Facts §5 "Sibling commands": wiretap's flags are intercept's minus --replace/--to-pod; --namespace from 2.28."""
    return [f for f in intercept_flags() if f.name not in ("replace", "to-pod")]


def ingest_flags():
    """Facts §5 "Sibling commands": the 2.24 ingest flags (no --port, no --detailed-output); --namespace from 2.29."""
    return [
        Flag("container", short="c"),
        Flag("docker-build"),
        Flag("docker-build-opt", kind="array"),
        Flag("docker-debug"),
        Flag("docker-mount"),
        Flag("docker-run", kind="bool"),
        Flag("env-file", short="e"),
        Flag("env-json", short="j"),
        Flag("env-syntax", default="docker"),
        Flag("local-mount-port"),
        Flag("mount", default="true"),
        Flag("to-pod", kind="array"),
        Flag("wait-message"),
        Flag("namespace", short="n", minimum=(2, 29)),
    ]


def helm_value_flags():
    return [
        Flag("set", kind="array"),
        Flag("set-file", kind="array"),
        Flag("set-json", kind="array"),
        Flag("set-string", kind="array"),
        Flag("values", short="f", kind="array"),
        Flag("no-hooks", kind="bool"),
        Flag("version", minimum=(2, 21)),
        Flag("create-namespace", kind="bool", default=True, minimum=(2, 19)),
    ] + connect_flags()


COMMANDS = {
    # name: (flags factory, use line, session required, minimum version, hidden)
    "version": (lambda: [], "telepresence version", False),
    "status": (lambda: [Flag("multi-daemon", kind="bool", minimum=(2, 18))], "telepresence status [flags]", False),
    "connect": (connect_flags, "telepresence connect [flags] [-- <command to run while connected>]", False),
    "quit": (lambda: [Flag("stop-daemons", short="s", kind="bool")], "telepresence quit [flags]", False),
    "list": (lambda: [Flag("agents", short="a", kind="bool"), Flag("debug", kind="bool"),
                      Flag("ingests", short="g", kind="bool", minimum=(2, 21)),
                      Flag("intercepts", short="i", kind="bool"),
                      Flag("namespace", short="n"),
                      Flag("replacements", short="r", kind="bool", minimum=(2, 22)),
                      Flag("wiretaps", short="t", kind="bool", minimum=(2, 23)),
                      Flag("only-interceptable", short="o", kind="bool", hidden=True),
                      Flag("watch", short="w", kind="bool", hidden=True)],
             "telepresence list [flags]", True),
    "intercept": (intercept_flags,
                  "telepresence intercept [flags] <intercept_base_name> [-- <command with arguments...>]", True),
    "replace": (replace_flags, "telepresence replace [flags] <workload> [-- <command with arguments...>]", True),
    "wiretap": (wiretap_flags, "telepresence wiretap [flags] <name> [-- <command with arguments...>]", True),
    "ingest": (ingest_flags, "telepresence ingest [flags] <workload> [-- <command with arguments...>]", True),
    "leave": (lambda: [Flag("container", short="c", minimum=(2, 21)),
                       Flag("namespace", short="n", minimum=(2, 29))],
              "telepresence leave [flags] <intercept_name>", True),
    "detach": (lambda: [Flag("container", short="c"), Flag("namespace", short="n")],
               "telepresence detach [flags] <name>", True),
    "uninstall": (lambda: [Flag("agent", short="d", kind="bool", hidden=since(2, 21)),
                           Flag("all-agents", short="a", kind="bool"),
                           Flag("everything", short="e", kind="bool", hidden=True, maximum=(2, 21))],
                  "telepresence uninstall [flags] <workloads...>", True),
    "helm install": (lambda: helm_value_flags() + [Flag("upgrade", short="u", kind="bool", hidden=True)],
                     "telepresence helm install [flags]", False),
    "helm upgrade": (lambda: helm_value_flags() + [Flag("reset-values", kind="bool"),
                                                   Flag("reuse-values", kind="bool")],
                     "telepresence helm upgrade [flags]", False),
    "helm uninstall": (lambda: [Flag("no-hooks", kind="bool")] + connect_flags(),
                       "telepresence helm uninstall [flags]", False),
}


# First version of each command that not every supported client has (facts sheet section 0 and section 5
# "Sibling commands": ingest 2.21, replace 2.22, wiretap 2.23; detach 2.30).
COMMAND_SINCE = {"ingest": (2, 21), "replace": (2, 22), "wiretap": (2, 23), "detach": (2, 30)}


def command_available(name):
    if name in COMMAND_SINCE:
        return since(*COMMAND_SINCE[name])
    return name in COMMANDS


class ParsedArgs:
    def __init__(self):
        self.values = {}     # flag name -> value (bool, str or list)
        self.given = {}      # flag name -> raw string(s) as typed, for the connect flag map
        self.positional = []
        self.after_dash = None

    def get(self, name, default=None):
        return self.values.get(name, default)

    def has(self, name):
        return name in self.values


def parse_bool(flag_label, text):
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise CLIError('invalid argument "%s" for "%s" flag: strconv.ParseBool: parsing "%s": invalid syntax'
                   % (text, flag_label, text), flag=True)


def parse_args(tokens, flags):
    """pflag-style parsing: --f=v, --f v, -f v, -fv, bool flags, `--` terminator, interspersed args."""
    by_long = {f.name: f for f in flags if f.available()}
    by_short = {f.short: f for f in flags if f.available() and f.short}
    parsed = ParsedArgs()
    deprecations = []
    index = 0

    def assign(flag, value, label):
        if flag.kind == "bool":
            value = value if isinstance(value, bool) else parse_bool(label, value)
            parsed.values[flag.name] = value
            parsed.given[flag.name] = str(value).lower()
        elif flag.kind in ("array", "slice"):
            parts = value.split(",") if flag.kind == "slice" else [value]
            parsed.values.setdefault(flag.name, []).extend(parts)
            parsed.given.setdefault(flag.name, []).extend(parts)
        else:
            parsed.values[flag.name] = value
            parsed.given[flag.name] = value
        if flag.deprecated:
            deprecations.append("Flag --%s has been deprecated, %s\n" % (flag.name, flag.deprecated))

    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "--":
            parsed.after_dash = tokens[index:]
            break
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                raise CLIError("unknown flag: --%s" % name, flag=True)
            if flag.kind == "bool":
                assign(flag, value if eq else True, "--" + name)
                continue
            if not eq:
                if index >= len(tokens):
                    raise CLIError("flag needs an argument: --%s" % name, flag=True)
                value = tokens[index]
                index += 1
            assign(flag, value, "--" + name)
        elif token.startswith("-") and token != "-":
            shorts = token[1:]
            position = 0
            while position < len(shorts):
                char = shorts[position]
                position += 1
                flag = by_short.get(char)
                if flag is None:
                    raise CLIError("unknown shorthand flag: '%s' in -%s" % (char, shorts), flag=True)
                if flag.kind == "bool":
                    if position < len(shorts) and shorts[position] == "=":
                        assign(flag, shorts[position + 1:], "-" + char)
                        break
                    assign(flag, True, "-" + char)
                    continue
                value = shorts[position:]
                if value.startswith("="):
                    value = value[1:]
                if not value:
                    if index >= len(tokens):
                        raise CLIError("flag needs an argument: '%s' in -%s" % (char, shorts), flag=True)
                    value = tokens[index]
                    index += 1
                assign(flag, value, "-" + char)
                break
        else:
            parsed.positional.append(token)
    return parsed, deprecations


GLOBAL_VALUE_FLAGS = {"--output", "--format", "--progress", "--use", "--config"}


def find_command(argv):
    """Locate the command words (like cobra's Find): skip flags, return (words, remaining tokens)."""
    words, rest, index = [], [], 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            rest.extend(argv[index:])
            break
        if token.startswith("-"):
            rest.append(token)
            if token in GLOBAL_VALUE_FLAGS and index + 1 < len(argv):
                rest.append(argv[index + 1])
                index += 1
        elif not words or (words == ["helm"] and len(words) == 1):
            words.append(token)
        else:
            rest.extend(argv[index:])
            break
        index += 1
    return words, rest


# ---------------------------------------------------------------------------------------------
# The emulated daemons and session
# ---------------------------------------------------------------------------------------------

def this_executable():
    return os.path.realpath(sys.argv[0])


def client_identity():
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - getuser raises several types when no user database entry exists
        user = "unknown"
    return "%s@%s" % (user, socket.gethostname())


def daemon_record():
    return {"running": True, "version": SEMVER, "executable": this_executable()}


class Context:
    """Everything a command needs: parsed args, output, sandbox paths, state store, knobs."""

    def __init__(self, base, command, args, output):
        self.base = base
        self.command = command
        self.args = args
        self.output = output
        self.store = StateStore(base)
        self.knobs = load_knobs(base)
        self.implicit_connect = False

    @property
    def command_path(self):
        return "telepresence " + self.command


def check_daemon_versions(state):
    """connect/version_check.go: refuse to talk to daemons of another version (session commands only)."""
    user = state["daemons"].get("user") or {}
    root = state["daemons"].get("root") or {}
    if user.get("running") and user.get("version") != SEMVER:
        raise CLIError("version mismatch. Client %s != user daemon v%s, please run 'telepresence quit -s' "
                       "and reconnect" % (VSEMVER, user.get("version")), progress=True)
    if root.get("running") and root.get("version") != SEMVER:
        raise CLIError("version mismatch. Client %s != Root Daemon v%s, please run 'telepresence quit -s' "
                       "and reconnect" % (VSEMVER, root.get("version")), progress=True)


def resolve_manager_namespace(args, kubeconfig):
    """--manager-namespace > kubeconfig extension > TELEPRESENCE_MANAGER_NAMESPACE > config.yml > ambassador."""
    if args.get("manager-namespace"):
        return args.get("manager-namespace")
    ext_manager = kubeconfig.extension.get("manager") or {}
    if isinstance(ext_manager, dict) and ext_manager.get("namespace"):
        return ext_manager["namespace"]
    if os.environ.get("TELEPRESENCE_MANAGER_NAMESPACE"):
        return os.environ["TELEPRESENCE_MANAGER_NAMESPACE"]
    cluster_cfg = client_config().get("cluster") or {}
    if isinstance(cluster_cfg, dict) and cluster_cfg.get("defaultManagerNamespace"):
        return cluster_cfg["defaultManagerNamespace"]
    return DEFAULT_MANAGER_NAMESPACE


def connect_flag_map(args):
    """The raw flag map the daemon compares on reconnect (facts §4): every connect flag as typed."""
    names = {f.name for f in connect_flags()}
    return {k: v for k, v in sorted(args.given.items()) if k in names}


def manager_version(kube, namespace):
    """Version of the installed traffic-manager, from its Deployment (label, else image tag)."""
    deployment = kube.get(ns_path(namespace, "deployments", "traffic-manager"))
    if not deployment:
        return None
    label = ((deployment.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/version")
    if label:
        return label.lstrip("v")
    for container in deployment["spec"]["template"]["spec"].get("containers") or []:
        if container.get("name") == "traffic-manager" and ":" in container.get("image", ""):
            return container["image"].rsplit(":", 1)[1].lstrip("v")
    return None


def start_daemons(ctx, state, docker):
    """Launch the emulated user daemon, then the root daemon via sudo unless in docker mode."""
    launched = not (state["daemons"].get("user") or {}).get("running")
    if launched and not since(2, 21):
        ctx.output.info("Launching Telepresence User Daemon\n")
    user = daemon_record()
    user["in_docker"] = bool(docker)
    state["daemons"]["user"] = user
    if docker or (state["daemons"].get("root") or {}).get("running"):
        return
    if ctx.knobs.get("sudo") == "missing":
        # `sudo -b -p ...` cannot read a password without a terminal: it fails at once, never waits on stdin
        write_stderr(SUDO_FAILURE)
        raise CLIError("failed to launch the daemon service: exit status 1", progress=True)
    if not since(2, 21):
        ctx.output.info("Launching Telepresence Root Daemon\n")
    state["daemons"]["root"] = daemon_record()


def check_cluster(kube, manager_ns):
    """What the user daemon checks before a session: API reachable, traffic-manager Service present."""
    try:
        kube.get("/version")
        service = kube.get(ns_path(manager_ns, "services", "traffic-manager"))
    except KubeError as exc:
        raise CLIError("connector.Connect: initial cluster check failed: %s" % exc.message, progress=True)
    if not service:
        raise CLIError("connector.Connect: traffic manager not found, if it is not installed, please run "
                       "'telepresence helm install'. If it is installed, try connecting with a "
                       "--manager-namespace to point telepresence to the namespace it's installed in.",
                       progress=True)
    try:
        version = manager_version(kube, manager_ns) or SEMVER
    except KubeError as exc:
        raise CLIError("connector.Connect: %s" % exc.message, progress=True)
    if since(2, 25) and parse_semver(version) and parse_semver(version) < (2, 21, 0):
        raise CLIError("connector.Connect: traffic manager version %s is too old. Minimum supported version "
                       "is 2.21.0, please upgrade" % version, progress=True)
    return version


def ensure_session(ctx, implicit):
    """Connect (explicitly or implicitly) and return the session; mirrors connect/connector.go."""
    args = ctx.args if not implicit else ParsedArgs()
    with ctx.store.transaction() as state:
        check_daemon_versions(state)
        kubeconfig = load_kubeconfig(args.get("kubeconfig"), args.get("context"))
        namespace = args.get("namespace") or kubeconfig.namespace
        session = state.get("session")
        if session:
            if implicit or session_matches(session, kubeconfig, args):
                if not implicit and not since(2, 23):
                    ctx.output.info(connected_message(session))
                return session, False
            raise CLIError("connector.Connect: Cluster configuration changed, please quit telepresence and "
                           "reconnect", progress=True)
        docker = bool(args.get("docker"))
        start_daemons(ctx, state, docker)
        if implicit:
            ctx.implicit_connect = True
            warn_implicit_connect(ctx, namespace)
        kube = Kube(kubeconfig)
        manager_ns = resolve_manager_namespace(args, kubeconfig)
        mgr_version = check_cluster(kube, manager_ns)
        session = {
            "context": kubeconfig.context,
            "server": kubeconfig.server,
            "namespace": namespace,
            "manager_namespace": manager_ns,
            "flags": connect_flag_map(args),
            "docker": docker,
            "name": args.get("name") or "%s-%s" % (kubeconfig.context, namespace),
            "mapped_namespaces": args.get("mapped-namespaces") or [],
            "also_proxy": args.get("also-proxy") or [],
            "never_proxy": args.get("never-proxy") or [],
            "manager_version": mgr_version,
            "kubeconfig": kubeconfig.path,
            "install_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname())),
            "session_id": str(uuid.uuid4()),
        }
        state["session"] = session
        warn_manager_skew(ctx, mgr_version)
        ctx.output.info(connected_message(session))
        return session, True


def session_matches(session, kubeconfig, args):
    return (session.get("context") == kubeconfig.context and session.get("server") == kubeconfig.server
            and session.get("flags") == connect_flag_map(args))


def connected_message(session):
    return "Connected to context %s, namespace %s (%s)\n" % (session["context"], session["namespace"],
                                                             session["server"])


def warn_implicit_connect(ctx, namespace):
    use_line = COMMANDS[ctx.command][1]
    if since(2, 23):
        ctx.output.warn('Warning: You are executing the "%s" command without a preceding "telepresence connect", '
                        'causing an implicit connect to namespace "%s". The implicit connect behavior is '
                        "deprecated and will be removed in a future release.\n" % (use_line, namespace))
    else:
        ctx.output.info('Warning: You are executing the "%s" command without a preceding "telepresence connect", '
                        "causing an implicit connect to take place. The implicit connect behavior is deprecated "
                        "and will be removed in a future release.\n" % use_line)


def warn_manager_skew(ctx, mgr_version):
    manager = parse_semver(mgr_version)
    if manager and abs(manager[1] - VERSION[1]) > 3:
        ctx.output.warn("The Traffic Manager version (v%s) is more than 3 minor versions diff from client "
                        "version (%s), please consider upgrading.\n" % (mgr_version, VSEMVER))


def session_kube(session):
    """A Kube client for the session's cluster, re-read from the kubeconfig the session used."""
    config = load_kubeconfig(session.get("kubeconfig"), session.get("context"))
    return Kube(config)


def require_session(ctx):
    """Session commands: version check, then the existing session or an implicit connect."""
    state = ctx.store.read()
    check_daemon_versions(state)
    if state.get("session"):
        return state["session"]
    session, _started = ensure_session(ctx, implicit=True)
    return session


# ---------------------------------------------------------------------------------------------
# version / status / quit
# ---------------------------------------------------------------------------------------------

def key_value_block(pairs, indent=""):
    width = max(len(k) for k, _value in pairs)
    return "".join("%s%s: %s\n" % (indent, k.ljust(width), v) for k, v in pairs)


def agent_image(version):
    registry = "ghcr.io/telepresenceio" if parse_semver(version) and parse_semver(version) >= (2, 20, 0) \
        else "docker.io/datawire"
    return "%s/tel2:%s" % (registry, version)


def cmd_version(ctx):
    state = ctx.store.read()
    user = state["daemons"].get("user") or {}
    root = state["daemons"].get("root") or {}
    session = state.get("session")
    info = {"client": VSEMVER}
    pairs = [("OSS Client", VSEMVER)]
    if root.get("running"):
        pairs.append(("OSS Root Daemon", "v" + root["version"]))
        info["root_daemon"] = "v" + root["version"]
    elif not user.get("in_docker"):
        pairs.append(("Root Daemon", "not running"))
    if user.get("running"):
        label = "OSS Daemon in container" if user.get("in_docker") else "OSS User Daemon"
        pairs.append((label, "v" + user["version"]))
        info["user_daemon"] = "v" + user["version"]
        if session:
            mgr = session.get("manager_version") or SEMVER
            pairs.append(("OSS Traffic Manager", "v" + mgr))
            pairs.append(("Traffic Agent", agent_image(mgr)))
            info["traffic_manager"] = "v" + mgr
            info["traffic_agent"] = agent_image(mgr)
        else:
            pairs.append(("Traffic Manager", "not connected"))
    else:
        pairs.append(("User Daemon", "not running"))
    if ctx.output.mode == "format":
        ctx.output.object(info)
    else:
        ctx.output.out(key_value_block(pairs))


def mode_of(intercept):
    """intercept, replace or wiretap: what created the record (records older than the mode field are intercepts)."""
    return intercept.get("mode") or "intercept"


def status_engagements(state, knobs):
    """This client's engagements as `status` reports them.

    Facts §2: the 2.27+-era status.go has `intercepts` and, separately, `replacements` and `wiretaps` (same shape)
    and `ingests` (`{"workload","container","mount"}`); whether 2.24 already splits them is UNVERIFIED. Knob
    `status_engagements`: `separate` (default, the 2.27+ shape) or `intercepts` (replaces and wiretaps listed
    among the intercepts; ingests under `ingests`).
    """
    shape = (knobs or {}).get("status_engagements") or "separate"
    keys = {"intercept": "intercepts", "replace": "replacements", "wiretap": "wiretaps"}
    found = {}
    for intercept in state.get("intercepts") or []:
        key = "intercepts" if shape == "intercepts" else keys[mode_of(intercept)]
        found.setdefault(key, []).append({"name": intercept["name"], "client": intercept["client"]})
    ingests = [{"workload": i["workload"], "container": i["container"], "mount": i.get("mount") or ""}
               for i in state.get("ingests") or []]
    if ingests:
        found["ingests"] = [{k: v for k, v in item.items() if v} for item in ingests]
    return found


def user_daemon_status(state, session, knobs=None):
    user = state["daemons"].get("user") or {}
    if not user.get("running"):
        return {}
    status = {"running": True}
    if user.get("in_docker"):
        status["in_docker"] = True
    if session:
        status["name"] = session.get("name")
    # since 2.19 user_daemon.version carries no leading "v" (facts §2)
    status["version"] = user["version"] if since(2, 19) else "v" + user["version"]
    status["executable"] = user.get("executable")
    if session:
        status["install_id"] = session.get("install_id")
        status["status"] = "Connected"
        status["kubernetes_server"] = session["server"]
        status["kubernetes_context"] = session["context"]
        status["namespace"] = session["namespace"]
        status["manager_namespace"] = session["manager_namespace"]
        if session.get("mapped_namespaces"):
            status["mapped_namespaces"] = session["mapped_namespaces"]
        status.update(status_engagements(state, knobs))
    else:
        status["status"] = "Not connected"
    return status


def root_daemon_status(state, session):
    root = state["daemons"].get("root") or {}
    if not root.get("running"):
        return {}
    status = {"running": True, "name": "OSS Root Daemon", "version": "v" + root["version"], "api_version": 3}
    if session:
        status["dns"] = {"local_ip": "127.0.0.1", "remote_ip": "10.96.0.10", "lookup_timeout": 8000000000}
        status["subnets"] = ["10.96.0.0/12", "10.244.0.0/16"]
        if session.get("also_proxy"):
            status["also_proxy_subnets"] = session["also_proxy"]
        if session.get("never_proxy"):
            status["never_proxy_subnets"] = session["never_proxy"]
    return status


def traffic_manager_status(session):
    if not session:
        return {"name": "", "traffic_agent": "", "version": ""}
    mgr = session.get("manager_version") or SEMVER
    return {"name": "OSS Traffic Manager", "traffic_agent": agent_image(mgr), "version": "v" + mgr}


def status_after_quit_shape(ctx, state, session):
    """How a 2.21+ `status` reports a user daemon that runs without a session (facts §9 "`status` after `quit`",
    UNVERIFIED): knob `status_after_quit` = `not_connected` (default), `empty_connected` (`Connected` with no
    context/namespace/manager fields) or `daemon_error` (exit 1 with the daemon's error)."""
    if session or not since(2, 21) or not (state["daemons"].get("user") or {}).get("running"):
        return "not_connected"
    return ctx.knobs.get("status_after_quit") or "not_connected"


def cmd_status(ctx):
    state = ctx.store.read()
    session = state.get("session")
    shape = status_after_quit_shape(ctx, state, session)
    if shape == "daemon_error":
        raise CLIError("connector.Status: rpc error: code = Unavailable desc = no active session")
    user = user_daemon_status(state, session, ctx.knobs)
    if shape == "empty_connected":
        user["status"] = "Connected"
    if user.get("in_docker"):
        obj = {"daemon": user, "traffic_manager": traffic_manager_status(session)}
    else:
        obj = {"root_daemon": root_daemon_status(state, session),
               "traffic_manager": traffic_manager_status(session),
               "user_daemon": user}
    if ctx.args.get("multi-daemon"):
        obj = {"connections": [obj]}
    if ctx.output.structured:
        ctx.output.object(obj, override=True)
        return
    ctx.output.out(status_text(state, session, user))


def status_text(state, session, user):
    prefix = "OSS " if since(2, 21) else ""
    lines = []
    if not user:
        lines.append("%sUser Daemon: Not running\n" % prefix)
    else:
        lines.append("%s: Running\n" % ("OSS Daemon in container" if user.get("in_docker") else "OSS User Daemon"))
        pairs = [("Version", "v" + state["daemons"]["user"]["version"]),
                 ("Executable", user.get("executable")), ("Status", user.get("status"))]
        if session:
            pairs += [("Kubernetes server", session["server"]), ("Kubernetes context", session["context"]),
                      ("Namespace", session["namespace"]), ("Manager namespace", session["manager_namespace"]),
                      ("Intercepts", "%d total" % len(user.get("intercepts") or []))]
        lines.append(key_value_block(pairs, "  "))
        for intercept in user.get("intercepts") or []:
            lines.append("    %s: %s\n" % (intercept["name"], intercept["client"]))
    root = state["daemons"].get("root") or {}
    if not (user and user.get("in_docker")):
        if root.get("running"):
            lines.append("OSS Root Daemon: Running\n")
            lines.append(key_value_block([("Version", "v" + root["version"])], "  "))
        else:
            lines.append("%sRoot Daemon: Not running\n" % prefix)
    if session:
        mgr = traffic_manager_status(session)
        lines.append("OSS Traffic Manager: Connected\n")
        lines.append(key_value_block([("Version", mgr["version"]), ("Traffic Agent", mgr["traffic_agent"])], "  "))
    elif not since(2, 21):
        lines.append("Traffic Manager: Not connected\n")
    return "".join(lines)


def cmd_quit(ctx):
    stop = bool(ctx.args.get("stop-daemons"))
    with ctx.store.transaction() as state:
        had_session = bool(state.get("session"))
        had_daemon = bool((state["daemons"].get("user") or {}).get("running"))
        # ending the session ends its intercepts: traffic goes back to the cluster (agents stay installed)
        state["session"] = None
        state["intercepts"] = []
        state["intercept_extras"] = {}
        state["ingests"] = []
        if stop:
            state["daemons"] = {"user": {"running": False}, "root": {"running": False}}
    if stop:
        if not since(2, 23):
            ctx.output.info("Telepresence Daemons quitting...done\n")
        elif had_daemon:
            ctx.output.info("Quit\n")
        return
    ctx.output.info("Disconnected\n" if had_session else "Not connected\n")


# ---------------------------------------------------------------------------------------------
# connect
# ---------------------------------------------------------------------------------------------

def cmd_connect(ctx):
    session, started = ensure_session(ctx, implicit=False)
    command = ctx.args.after_dash
    if not command:
        return None
    # `connect -- cmd`: run the command while connected, disconnect afterwards if we started the session
    try:
        return subprocess.run(command, check=False).returncode
    except OSError as exc:
        raise CLIError(str(exc))
    finally:
        if started:
            with ctx.store.transaction() as state:
                state["session"] = None
                state["intercepts"] = []
                state["intercept_extras"] = {}
                state["ingests"] = []


# ---------------------------------------------------------------------------------------------
# Workloads, services, the traffic agent
# ---------------------------------------------------------------------------------------------

WORKLOAD_RESOURCES = (("Deployment", "deployments"), ("StatefulSet", "statefulsets"))


def resource_of(workload):
    """The API resource of a Deployment or StatefulSet (list items carry no `kind`: `with_kind` sets it)."""
    return "statefulsets" if workload.get("kind") == "StatefulSet" else "deployments"


def with_kind(workload, kind):
    return dict(workload, kind=kind) if workload else workload


def find_workload(kube, namespace, name):
    """The interceptable Deployment or StatefulSet `name` (facts §5 "No interceptable deployment, replicaset, or
    statefulset"), with its `kind` set; None when neither exists."""
    for kind, resource in WORKLOAD_RESOURCES:
        found = kube.get(ns_path(namespace, resource, name))
        if found:
            return with_kind(found, kind)
    return None


def namespace_workloads(kube, namespace):
    return [with_kind(obj, kind) for kind, resource in WORKLOAD_RESOURCES
            for obj in kube.items(ns_path(namespace, resource))]


def pod_template(deployment):
    return (deployment.get("spec") or {}).get("template") or {}


def template_containers(deployment):
    return (pod_template(deployment).get("spec") or {}).get("containers") or []


def agent_version_in(containers):
    """The tag of the traffic-agent image among `containers`, "" when none of them is the agent."""
    for container in containers:
        if container.get("name") == AGENT_CONTAINER:
            return container.get("image", "").rsplit(":", 1)[-1]
    return ""


def template_agent_version(deployment):
    return agent_version_in(template_containers(deployment))


def evicts_pods(session):
    """Facts §9 "How agents get into pods, by version": from 2.22.0 the traffic-manager keeps no
    telepresence-agents ConfigMap, evicts the workload's pods and lets its mutating webhook inject the agent into
    their replacements; up to 2.21 the ConfigMap holds the agent configuration and the pod template is patched.
    The manager's version picks the path (the manager does the injecting), not the client's."""
    return (parse_semver(session.get("manager_version") or SEMVER) or VERSION) >= (2, 22, 0)


def workload_pods(kube, workload):
    """The live pods of a Deployment or StatefulSet (its selector's matchLabels)."""
    meta = workload["metadata"]
    selector = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not selector:
        return []
    return [pod for pod in kube.items(ns_path(meta["namespace"], "pods"), selector)
            if not (pod.get("metadata") or {}).get("deletionTimestamp")]


def pod_agent_version(kube, workload):
    for pod in workload_pods(kube, workload):
        version = agent_version_in((pod.get("spec") or {}).get("containers") or [])
        if version:
            return version
    return ""


def workload_agent_version(kube, session, workload):
    """Version of the workload's traffic agent, "" without one: read where the manager's path puts it (the pods from
    2.22, the template before; facts §9 "How agents get into pods, by version")."""
    if evicts_pods(session):
        return pod_agent_version(kube, workload)
    return template_agent_version(workload)


def has_agent(kube, session, workload):
    return bool(workload_agent_version(kube, session, workload))


def selecting_services(kube, namespace, deployment):
    labels = (pod_template(deployment).get("metadata") or {}).get("labels") or {}
    services = []
    for service in kube.items(ns_path(namespace, "services")):
        selector = (service.get("spec") or {}).get("selector") or {}
        if selector and labels_match(selector, labels):
            services.append(service)
    return services


def restart_annotation():
    prefix = "telepresence.io" if since(2, 22) else "telepresence.getambassador.io"
    return prefix + "/restartedAt"


def container_for_port(deployment, target_port):
    """The app container serving target_port (a number or a container port name)."""
    containers = [c for c in template_containers(deployment) if c.get("name") != AGENT_CONTAINER]
    for container in containers:
        for port in container.get("ports") or []:
            if target_port in (port.get("containerPort"), port.get("name")):
                return container, port.get("containerPort")
    first = containers[0] if containers else {}
    number = target_port if isinstance(target_port, int) else None
    if number is None:
        ports = first.get("ports") or []
        number = ports[0].get("containerPort") if ports else None
    return first, number


def agent_config_entry(session, deployment, container, intercept_port, mgr_version):
    """The agent configuration the traffic-manager keeps in the telepresence-agents ConfigMap."""
    meta = deployment["metadata"]
    return {
        "agentName": meta["name"],
        "namespace": meta["namespace"],
        "workloadName": meta["name"],
        "workloadKind": deployment.get("kind") or "Deployment",
        "managerHost": "traffic-manager.%s" % session["manager_namespace"],
        "managerPort": 8081,
        "agentImage": agent_image(mgr_version),
        "containers": [{
            "name": container.get("name"),
            "envPrefix": "A_",
            "mountPoint": "/tel_app_mounts/%s" % container.get("name"),
            "intercepts": [intercept_port] if intercept_port else [],
        }],
    }


def agent_container(namespace, name, mgr_version):
    return {
        "name": AGENT_CONTAINER,
        "image": agent_image(mgr_version),
        "args": ["agent"],
        "ports": [{"name": "tm-http", "containerPort": 9900, "protocol": "TCP"}],
        "env": [{"name": "_TEL_AGENT_NAME", "value": name},
                {"name": "_TEL_AGENT_NAMESPACE", "value": namespace}],
        "readinessProbe": {"exec": {"command": ["/bin/stat", "/tmp/agent/ready"]}},
    }


def install_agent(kube, session, deployment, config_entry, mgr_version):
    """Up to 2.21 (facts §9): the telepresence-agents ConfigMap entry, and the traffic-agent container plus a
    restart annotation in the pod template; the cluster's controller rolls it out."""
    meta = deployment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    containers = [c for c in template_containers(deployment) if c.get("name") != AGENT_CONTAINER]
    containers.append(agent_container(namespace, name, mgr_version))
    upsert_agent_config(kube, namespace, name, config_entry)
    stamp = now_rfc3339() + "#" + uuid.uuid4().hex[:8]   # unique: tells this rollout's pods from older ones
    patched = kube.merge_patch(ns_path(namespace, resource_of(deployment), name), {
        "spec": {"template": {
            "metadata": {"annotations": {restart_annotation(): stamp}},
            "spec": {"containers": containers},
        }},
    })
    return patched, stamp


def upsert_agent_config(kube, namespace, name, entry):
    path = ns_path(namespace, "configmaps", AGENTS_CONFIGMAP)
    value = json.dumps(entry, indent=2, sort_keys=True)   # JSON is valid YAML
    if kube.get(path) is None:
        kube.create(ns_path(namespace, "configmaps"), {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": AGENTS_CONFIGMAP, "namespace": namespace,
                         "labels": {"app.kubernetes.io/created-by": "traffic-manager",
                                    "app.kubernetes.io/name": AGENTS_CONFIGMAP}},
            "data": {name: value},
        })
    else:
        kube.merge_patch(path, {"data": {name: value}})


# ---- 2.22+ (facts §9): the manager's memory, pod eviction, the webhook (tests/sandbox/clusterkit/injector.py)

def manager_memory_path():
    """The emulated traffic-manager's memory of agent configurations; the cluster's webhook stand-in reads it."""
    return os.path.join(sandbox_dir(), "traffic-manager.json")


@contextlib.contextmanager
def manager_memory():
    path = manager_memory_path()
    with file_lock(path + ".lock"):
        memory = read_json(path, {}) or {}
        yield memory
        write_json_atomic(path, memory)


def memory_key(workload):
    meta = workload["metadata"]
    return "%s/%s/%s" % (meta["namespace"], workload.get("kind") or "Deployment", meta["name"])


def evict_pods(kube, workload, keep=lambda pod: False):
    """POST pods/<name>/eviction for each live pod of the workload that `keep` does not spare."""
    for pod in workload_pods(kube, workload):
        if keep(pod):
            continue
        meta = pod["metadata"]
        try:
            kube.create(ns_path(meta["namespace"], "pods", meta["name"]) + "/eviction", {
                "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]}})
        except KubeError as exc:
            if exc.status != 404:   # gone already: nothing to evict
                raise


def install_agent_by_eviction(kube, session, workload, config_entry, mgr_version):
    """From 2.22 (facts §9): the configuration stays with the manager (its webhook annotates the pods with it), no
    ConfigMap and no template patch (the sheet: only when a disruption budget blocks eviction; the sandbox has none);
    the pods are evicted so that their replacements get the agent. Returns the annotation the new pods carry."""
    meta = workload["metadata"]
    annotation = json.dumps(config_entry, sort_keys=True)
    with manager_memory() as memory:
        memory.setdefault(session["manager_namespace"], {})[memory_key(workload)] = {
            "container": agent_container(meta["namespace"], meta["name"], mgr_version), "annotation": annotation}
    evict_pods(kube, workload, keep=lambda pod: pod_agent_annotation(pod) == annotation)
    return annotation


def pod_agent_annotation(pod):
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(AGENT_CONFIG_ANNOTATION)


def injected_agent_ready(kube, workload, annotation):
    """A Ready replacement pod that the webhook gave the agent with this configuration (the CLI waits for it)."""
    for pod in workload_pods(kube, workload):
        if pod_agent_annotation(pod) == annotation and pod_ready(pod) \
                and agent_version_in((pod.get("spec") or {}).get("containers") or []):
            return pod
    return None


def remove_agent_by_eviction(kube, session, workload):
    """2.22+: the manager forgets the configuration and evicts the pods that run the agent; the replacements come
    without it. A telepresence-agents ConfigMap left by an older manager is not touched (it names no agent)."""
    with manager_memory() as memory:
        for agents in memory.values():
            agents.pop(memory_key(workload), None)
    evict_pods(kube, workload, keep=lambda pod: not agent_version_in((pod.get("spec") or {}).get("containers") or []))


def forget_manager(namespace):
    """helm uninstall: the manager and its webhook are gone, so is its memory."""
    with manager_memory() as memory:
        memory.pop(namespace, None)


def remove_agent(kube, session, deployment):
    if evicts_pods(session):
        remove_agent_by_eviction(kube, session, deployment)
        return
    meta = deployment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if template_agent_version(deployment):
        containers = [c for c in template_containers(deployment) if c.get("name") != AGENT_CONTAINER]
        kube.merge_patch(ns_path(namespace, resource_of(deployment), name), {
            "spec": {"template": {
                "metadata": {"annotations": {restart_annotation(): now_rfc3339()}},
                "spec": {"containers": containers},
            }},
        })
    config_map = kube.get(ns_path(namespace, "configmaps", AGENTS_CONFIGMAP))
    if config_map and name in (config_map.get("data") or {}):
        kube.merge_patch(ns_path(namespace, "configmaps", AGENTS_CONFIGMAP), {"data": {name: None}})


def agent_ready(kube, namespace, name, generation, stamp, resource="deployments"):
    """The Ready pod running the traffic-agent of this rollout (the real CLI waits for the agent to arrive).

    The pod must carry the restart stamp just written to the template, so that a pod left over from an
    earlier agent installation does not count. Fallback when pods are not visible: the Deployment observed
    this generation and has all replicas updated and available. Returns the pod (or True), else None.
    """
    deployment = kube.get(ns_path(namespace, resource, name))
    if not deployment:
        return None
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    try:
        pods = kube.items(ns_path(namespace, "pods"), selector)
    except KubeError:
        pods = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        containers = (pod.get("spec") or {}).get("containers") or []
        if any(c.get("name") == AGENT_CONTAINER for c in containers) and pod_ready(pod) \
                and (meta.get("annotations") or {}).get(restart_annotation()) == stamp \
                and not meta.get("deletionTimestamp"):
            return pod
    if not pods and deployment_rolled_out(deployment, generation, require_generation=True):
        return True
    return None


def pod_ready(pod):
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def deployment_rolled_out(deployment, generation=None, require_generation=False):
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    generation = generation or meta.get("generation")
    if generation is not None:
        if status.get("observedGeneration") is None or status["observedGeneration"] < generation:
            return False
    elif require_generation:
        return False
    available = any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or [])
    # like `kubectl rollout status`: all replicas updated, no old replicas left, all available
    return (status.get("updatedReplicas", 0) >= wanted and status.get("replicas", 0) <= status.get("updatedReplicas", 0)
            and status.get("availableReplicas", 0) >= wanted and (available or not status.get("conditions")))


# ---------------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------------

def intercept_info_object(intercept, extras, session, knobs=None):
    """manager.InterceptInfo as plain Go JSON (protobuf omitempty tags, integer disposition)."""
    spec = {
        "name": intercept["name"],
        "client": intercept["client"],
        "agent": intercept["workload"],
        "workload_kind": intercept.get("workload_kind") or "Deployment",
        "namespace": intercept["namespace"],
        "mechanism": "tcp",
        "target_host": extras.get("target_host", "127.0.0.1"),
        "target_port": intercept["local_port"],
        "port_identifier": extras.get("port_identifier", ""),
        "service_port_name": intercept.get("service_port_name") or "",
        "service_port": intercept.get("service_port") or 0,
        "service_name": intercept.get("service") or "",
        "service_uid": extras.get("service_uid", ""),
        "protocol": "TCP",
        "container_port": extras.get("container_port") or 0,
        "local_ports": [],
    }
    if (knobs or {}).get("list_engagement_mode", "spec") == "spec":
        # Facts §3: later specs carry `replace` and `wiretap` booleans (UNVERIFIED); knob `list_engagement_mode`
        # `none` drops them, so only the list filter and `status` tell a wiretap from an intercept.
        spec["replace"] = mode_of(intercept) == "replace"
        spec["wiretap"] = mode_of(intercept) == "wiretap"
    spec = {k: v for k, v in spec.items() if v not in ("", 0, [], None, False)}
    modified = extras.get("created", time.time())
    info = {
        "spec": spec,
        "id": intercept["id"],
        "client_session": {"session_id": session.get("session_id", "")},
        "disposition": 1,
        "pod_ip": extras.get("pod_ip", "10.244.0.10"),
        "sftp_port": 0,
        "mechanism_args_desc": "all TCP connections",
        "environment": extras.get("environment") or {},
        "modified_at": {"seconds": int(modified), "nanos": int((modified % 1) * 1e9)},
    }
    return {k: v for k, v in info.items() if v not in ("", 0, [], None, {})}


def workload_info(deployment, intercepts, extras, session, kind="Deployment", agent_version="", ingests=(),
                  knobs=None):
    meta = deployment["metadata"]
    info = {"name": meta["name"], "namespace": meta["namespace"], "workload_resource_type": kind,
            "uid": object_uid(deployment, kind)}
    mine = [i for i in intercepts if i["workload"] == meta["name"] and i["namespace"] == meta["namespace"]]
    infos = [intercept_info_object(i, extras.get(i["name"], {}), session, knobs) for i in mine]
    # Facts §3: `ingest_info` (list of {"workload","container",...}); 2.21 probably `ingest_infos` (UNVERIFIED).
    ingested = [{"workload": i["workload"], "container": i["container"], "mount_point": i.get("mount") or "",
                 "pod_ip": "10.244.0.10"} for i in ingests
                if i["workload"] == meta["name"] and i["namespace"] == meta["namespace"]]
    info["_modes"] = sorted({mode_of(i) for i in mine} | ({"ingest"} if ingested else set()))
    if ingested:
        key = "ingest_info" if since(2, 22) else "ingest_infos"
        info[key] = [{k: v for k, v in item.items() if v} for item in ingested]
    if since(2, 22):
        if agent_version:
            info["agent_version"] = agent_version
        if infos:
            info["intercept_info"] = infos
    else:
        if infos:
            info["intercept_infos"] = infos
        if agent_version:
            info["sidecar"] = {"agentName": meta["name"], "agentImage": agent_image(agent_version),
                               "workloadName": meta["name"], "workloadKind": kind}
    return info


def cmd_list(ctx):
    session = require_session(ctx)
    namespace = ctx.args.get("namespace") or session["namespace"]
    kube = session_kube(session)
    try:
        listed = listed_workloads(kube, namespace)
    except KubeError as exc:
        raise CLIError("connector.List: %s" % exc.message)
    state = ctx.store.read()
    intercepts = state.get("intercepts") or []
    extras = state.get("intercept_extras") or {}
    try:
        workloads = [workload_info(obj, intercepts, extras, session, kind,
                                   workload_agent_version(kube, session, with_kind(obj, kind)) if kind != "ReplicaSet"
                                   else "", state.get("ingests") or [], ctx.knobs) for kind, obj in listed]
    except KubeError as exc:
        raise CLIError("connector.List: %s" % exc.message)
    workloads = filter_workloads(ctx.args, workloads)
    for workload in workloads:
        workload.pop("_modes", None)
    if ctx.output.structured:
        ctx.output.object(workloads, override=ctx.output.mode == "format")
        return
    ctx.output.out(list_text(workloads))


def listed_workloads(kube, namespace):
    """[(kind, object)] sorted by name: Deployments, StatefulSets, and ReplicaSets no Deployment owns.

    Facts §3: `workload_resource_type` is Deployment/ReplicaSet/StatefulSet/Rollout, and the empty text form
    names "Deployments, StatefulSets, ReplicaSets, or Rollouts" (Rollouts need Argo, absent here).
    """
    found = [("Deployment", d) for d in kube.items(ns_path(namespace, "deployments"))]
    found += [("StatefulSet", s) for s in kube.items(ns_path(namespace, "statefulsets"))]
    found += [("ReplicaSet", r) for r in kube.items(ns_path(namespace, "replicasets"))
              if not any(o.get("kind") == "Deployment" for o in (r.get("metadata") or {}).get("ownerReferences") or [])]
    return sorted(found, key=lambda item: (item[1]["metadata"]["name"], item[0]))


FILTER_FLAGS = (("intercepts", "intercept"), ("replacements", "replace"), ("wiretaps", "wiretap"),
                ("ingests", "ingest"))


def filter_workloads(args, workloads):
    """Facts §3: -i/-r/-t/-g are OR-ed into a bitmask (a workload shows when it has an engagement of a chosen kind);
    -a applies only when none of them is given."""
    chosen = {mode for flag, mode in FILTER_FLAGS if args.get(flag)}
    if chosen:
        return [w for w in workloads if chosen & set(w.get("_modes") or ())]
    if args.get("agents"):
        return [w for w in workloads if w.get("agent_version") or w.get("sidecar")]
    return workloads


def list_text(workloads):
    if not workloads:
        return "No Workloads (Deployments, StatefulSets, ReplicaSets, or Rollouts)\n"
    key = "intercept_info" if since(2, 22) else "intercept_infos"
    verb = "engage" if since(2, 22) else "intercept"
    width = max(len(w["name"]) for w in workloads)
    lines = []
    for workload in workloads:
        installed = workload.get("agent_version") or workload.get("sidecar")
        if workload.get(key):
            state = "intercepted"
            for info in workload[key]:
                state += "\n    Intercept name    : %s\n    State             : ACTIVE\n    Workload kind     : " \
                         "Deployment\n    Destination       : 127.0.0.1:%s" % (
                             info["spec"]["name"], info["spec"].get("target_port"))
        else:
            state = "ready to %s (traffic-agent %s)" % (verb, "already installed" if installed else "not yet installed")
        if since(2, 22):
            lines.append("%s %s: %s\n" % (workload["workload_resource_type"].lower(), workload["name"], state))
        else:
            lines.append("%s: %s\n" % (workload["name"].ljust(width), state))
    return "".join(lines)


# ---------------------------------------------------------------------------------------------
# intercept
# ---------------------------------------------------------------------------------------------

def parse_port_specs(specs):
    """--port <local>[:<identifier>] (facts §5); returns [(local_port, identifier or None)]."""
    parsed = []
    for spec in specs or []:
        parts = spec.split(":")
        bad = CLIError('port must be of the format --port <local-port>[:<svcPortIdentifier>], was "%s"' % spec)
        if len(parts) > 3 or not parts[0].isdigit() or not 0 < int(parts[0]) < 65536:
            raise bad
        identifier = parts[-1] if len(parts) > 1 else None
        if identifier == "":
            raise bad
        parsed.append((int(parts[0]), identifier))
    return parsed


def find_service_port(service, identifier):
    ports = (service.get("spec") or {}).get("ports") or []
    if identifier is None:
        return ports[0] if len(ports) == 1 else None
    for port in ports:
        if port.get("name") == identifier:
            return port
    if identifier.isdigit():
        for port in ports:
            if port.get("port") == int(identifier):
                return port
    return None


def resolve_target(kube, namespace, workload, deployment, args, identifier):
    """Pick the Service and its port for the intercept, as the traffic-manager does."""
    services = selecting_services(kube, namespace, deployment)
    if args.get("service"):
        services = [s for s in services if s["metadata"]["name"] == args.get("service")]
        if not services:
            raise CLIError('connector.CreateIntercept: service "%s" not found or does not select workload "%s.%s"'
                           % (args.get("service"), workload, namespace), progress=True)
    if not services:
        return None, None
    if len(services) > 1:
        names = ", ".join(sorted(s["metadata"]["name"] for s in services))
        raise CLIError("connector.CreateIntercept: Found more than one possible match: services %s select "
                       "workload %s.%s; use --service" % (names, workload, namespace), progress=True)
    service = services[0]
    port = find_service_port(service, identifier)
    if port is None:
        if identifier is None:
            raise CLIError("connector.CreateIntercept: service %s.%s has multiple ports; use --port "
                           "<local-port>:<svcPortIdentifier> to select one" % (service["metadata"]["name"], namespace),
                           progress=True)
        raise CLIError('connector.CreateIntercept: service %s.%s has no port named or numbered "%s"'
                       % (service["metadata"]["name"], namespace, identifier), progress=True)
    return service, port


def pod_environment(container):
    env = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
    return env


def write_env_file(path, env, syntax):
    kind, _sep, export = syntax.partition(":")
    lines = []
    for key in sorted(env):
        value = env[key]
        quoted = "'" + value.replace("'", "'\\''") + "'"
        if kind == "docker":
            lines.append("%s=%s" % (key, value))
        elif kind == "compose":
            lines.append("%s=%s" % (key, json.dumps(value) if re.search(r"[\s\"'$#]", value) else value))
        elif kind == "sh":
            lines.append("%s%s=%s" % ("export " if export else "", key, quoted))
        elif kind == "csh":
            lines.append("%s %s %s" % ("setenv" if export else "set", key, quoted))
        elif kind == "cmd":
            lines.append("set %s=%s" % (key, value))
        elif kind == "ps":
            lines.append("$Env:%s='%s'" % (key, value.replace("'", "''")))
    with open(path, "w") as handle:
        if kind == "json":
            json.dump(env, handle, indent=2, sort_keys=True)
        else:
            handle.write("\n".join(lines) + ("\n" if lines else ""))


ENV_SYNTAXES = ("docker", "compose", "sh", "sh:export", "csh", "csh:export", "cmd", "json", "ps", "ps:export")


def validate_intercept_args(ctx):
    args = ctx.args
    if not args.positional:
        raise CLIError("requires at least 1 arg(s), only received 0", flag=True)
    if len(args.positional) > 1:
        raise CLIError("accepts at most 1 arg(s), received %d" % len(args.positional), flag=True)
    if since(2, 20) and args.get("env-syntax", "docker") not in ENV_SYNTAXES:
        raise CLIError('invalid env syntax "%s", must be one of %s' % (args.get("env-syntax"), ", ".join(ENV_SYNTAXES)))
    mount = args.get("mount", "true")
    return parse_port_specs(args.get("port")), mount


def cmd_intercept(ctx, mode="intercept"):
    """intercept, and (facts §5 "Sibling commands") replace <workload> (2.22+) and wiretap <name> (2.23+).

    All three are engagements the traffic-manager keeps as intercepts (list's intercept_info holds intercepts,
    replaces and wiretaps, facts §3), so they share one name space: a second one of any mode with a taken name
    fails with "already exists". What differs is the traffic (tests/sandbox/traffic.py reads `mode`).
    """
    name = None
    ports, mount = validate_intercept_args(ctx)
    name = ctx.args.positional[0]
    session = require_session(ctx)
    # --namespace on intercept/replace/wiretap from 2.28 (facts §0, §5)
    namespace = (ctx.args.get("namespace") if since(2, 28) else None) or session["namespace"]
    workload = name if mode == "replace" else ctx.args.get("workload") or name
    if any(i["name"] == name for i in ctx.store.read().get("intercepts") or []):
        raise CLIError('connector.CreateIntercept: Intercept with name "%s" already exists' % name, progress=True)
    kube = session_kube(session)
    try:
        record, extras, info = create_intercept(ctx, kube, session, name, namespace, workload, ports, mount, mode)
    except KubeError as exc:
        raise CLIError("connector.CreateIntercept: %s" % exc.message, progress=True)
    with ctx.store.transaction() as state:
        if any(i["name"] == name for i in state.get("intercepts") or []):
            raise CLIError('connector.CreateIntercept: Intercept with name "%s" already exists' % name,
                           progress=True)
        state["intercepts"].append(record)
        state["intercept_extras"][name] = extras
    emit_intercept_result(ctx, record, info, deployment_kind=record["workload_kind"])
    if ctx.args.after_dash:
        return run_intercept_command(ctx, name, extras.get("environment") or {})
    return None


def create_intercept(ctx, kube, session, name, namespace, workload, ports, mount, mode="intercept"):
    deployment = find_workload(kube, namespace, workload)
    if not deployment:
        raise CLIError('connector.CreateIntercept: workload "%s.%s" not found' % (workload, namespace),
                       progress=True)
    local_port, identifier = ports[0] if ports else (None, None)
    if mode == "replace":
        service, service_port, target = replace_target(kube, namespace, workload, deployment, identifier)
    else:
        service, service_port = resolve_target(kube, namespace, workload, deployment, ctx.args, identifier)
        target = service_port.get("targetPort", service_port.get("port")) if service_port else None
    if target is None and identifier is not None and identifier.isdigit():
        target = int(identifier)
    container, container_port = container_for_port(deployment, target)
    if local_port is None:
        # 2.21+: the local port defaults to the targeted container port (was 8080)
        local_port = container_port if since(2, 21) and container_port else 8080
    mgr_version = session.get("manager_version") or SEMVER
    port_entry = {
        "containerPortName": service_port.get("name", "") if service_port else "",
        "protocol": "TCP",
        "agentPort": 9900,
        "containerPort": container_port,
        "servicePortName": service_port.get("name", "") if service_port else "",
        "servicePort": service_port.get("port") if service_port else 0,
        "serviceName": service["metadata"]["name"] if service else "",
        "serviceUID": object_uid(service, "Service") if service else "",
        "targetPortNumeric": isinstance(target, int),
    }
    if workload_agent_version(kube, session, deployment) != mgr_version:
        config_entry = agent_config_entry(session, deployment, container, port_entry, mgr_version)
        if evicts_pods(session):
            annotation = install_agent_by_eviction(kube, session, deployment, config_entry, mgr_version)

            def arrived():
                return injected_agent_ready(kube, deployment, annotation)
        else:
            patched, stamp = install_agent(kube, session, deployment, config_entry, mgr_version)
            generation = (patched.get("metadata") or {}).get("generation")

            def arrived():
                return agent_ready(kube, namespace, workload, generation, stamp, resource_of(deployment))
        timeout = config_timeout("intercept", 30.0)
        if not wait_until(arrived, timeout):
            raise CLIError("connector.CreateIntercept: request timed out while waiting for agent %s.%s to arrive"
                           % (workload, namespace), progress=True)
    intercept_id = "%s:%s" % (session.get("session_id"), name)
    env = pod_environment(container)
    mount_point = None if mount == "false" else (mount if mount != "true" else "")
    env.update({
        "TELEPRESENCE_CONTAINER": container.get("name", ""),
        "TELEPRESENCE_INTERCEPT_ID": intercept_id,
        "TELEPRESENCE_MOUNTS": "/tel_app_mounts" if mount_point is not None else "",
        "TELEPRESENCE_ROOT": mount_point or "",
    })
    write_requested_env_files(ctx.args, env)
    port_id = reported_port_identifier(
        ctx.knobs, (service_port.get("name") or str(service_port.get("port"))) if service_port else str(container_port))
    record = {
        "name": name, "namespace": namespace, "workload": workload, "workload_kind": deployment["kind"],
        "service": service["metadata"]["name"] if service else "",
        "service_port_name": service_port.get("name", "") if service_port else "",
        "service_port": service_port.get("port") if service_port else 0,
        "local_port": local_port, "disposition": "ACTIVE", "client": client_identity(),
        "env_names": sorted(env), "mount": False if mount == "false" else mount, "id": intercept_id,
        "mode": mode,
    }
    extras = {
        "environment": env, "container_port": container_port,
        "port_identifier": reported_port_identifier(ctx.knobs, identifier) if identifier else "",
        "service_uid": port_entry["serviceUID"], "target_host": ctx.args.get("address", "127.0.0.1"),
        "created": time.time(), "container": container.get("name", ""),
        "http_filter": ctx.args.get("http-header") or [],
    }
    if mode == "replace":
        # Facts §5: replace's port identifiers are container ports, and so is what it reports.
        port_id = reported_port_identifier(ctx.knobs, identifier) if identifier else str(container_port)
        extras["port_identifier"] = port_id
    info = detailed_info(record, extras, mount, port_id)
    if mode != "intercept":
        # newer detailed output adds replace/wiretap booleans (facts §5, UNVERIFIED); omitempty drops false ones
        info[mode] = True
    return record, extras, info


def container_port_named(deployment, identifier):
    """The app container port `identifier` (a container port name or number) names, or None."""
    for container in template_containers(deployment):
        if container.get("name") == AGENT_CONTAINER:
            continue
        for port in container.get("ports") or []:
            if identifier in (port.get("name"), str(port.get("containerPort"))):
                return port
    return None


def replace_target(kube, namespace, workload, deployment, identifier):
    """replace -p <local>:<container port> (facts §5: identifiers are container ports, default all): the container
    port, and the Service port that sends traffic to it (for the traffic stand-in), if any."""
    if identifier is None:
        port = next((p for c in template_containers(deployment) if c.get("name") != AGENT_CONTAINER
                     for p in c.get("ports") or []), None)
    else:
        port = container_port_named(deployment, identifier)
        if port is None:
            raise CLIError('connector.CreateIntercept: workload %s.%s has no container port named or numbered "%s"'
                           % (workload, namespace, identifier), progress=True)
    number = port.get("containerPort") if port else None
    for service in selecting_services(kube, namespace, deployment):
        for service_port in (service.get("spec") or {}).get("ports") or []:
            target = service_port.get("targetPort", service_port.get("port"))
            if target in (number, port.get("name") if port else None):
                return service, service_port, number
    return None, None, number


def reported_port_identifier(knobs, identifier, protocol="TCP"):
    """The port identifier as `list` (spec.port_identifier) and the detailed output (port_id) report it.

    Facts §3 "The reported port identifier carries the protocol in 2.20.x": up to 2.22 the user daemon rewrites
    it to agentconfig.NewPortIdentifier(protocol, name), printed `<name|number>/<PROTO>` (VERIFIED for 2.20.2,
    same code line in 2.21/2.22); later releases print the bare identifier (UNVERIFIED for 2.24), so knob
    `port_identifier_protocol` (`suffix` | `plain`) overrides the per-version choice.
    """
    choice = knobs.get("port_identifier_protocol") or ("plain" if since(2, 23) else "suffix")
    return "%s/%s" % (identifier, protocol) if choice == "suffix" else identifier


def write_requested_env_files(args, env):
    try:
        if args.get("env-file"):
            write_env_file(args.get("env-file"), env, args.get("env-syntax", "docker"))
        if args.get("env-json"):
            write_env_file(args.get("env-json"), env, "json")
    except OSError as exc:
        raise CLIError("failed to write environment: %s" % exc)


def detailed_info(record, extras, mount, port_id):
    """intercept/info.go Info, as printed by --output json --detailed-output (disposition as a string)."""
    info = {
        "id": record["id"],
        "name": record["name"],
        "disposition": "ACTIVE",
        "workload_kind": record.get("workload_kind") or "Deployment",
        "target_host": extras["target_host"],
        "target_port": record["local_port"],
        "service_uid": extras["service_uid"],
        "service_port_id": port_id,
        "port_id": port_id,
        "container_port": extras["container_port"],
        "environment": extras["environment"],
    }
    if mount != "false":
        info["mount"] = {"error": MOUNT_ERROR}
    elif not since(2, 23):
        # facts §3 "Mount point in 2.20.2 detailed output": the agent always reports its mount point and the
        # manager copies it, so --mount=false still prints a mount with a remote_dir; 2.23+ blanks it.
        info["mount"] = {"remote_dir": "/tmp/telfs-%s" % record["id"].split(":")[0][:8],
                         "pod_ip": extras.get("pod_ip", "10.244.0.10"), "port": 2222}
    if extras.get("http_filter"):
        info["http_filter"] = extras["http_filter"]
    return {k: v for k, v in info.items() if v not in ("", None)}


def emit_intercept_result(ctx, record, info, deployment_kind):
    output = ctx.output
    if output.mode == "format" or (output.mode == "legacy" and ctx.args.get("detailed-output")):
        output.object(info, override=True)
        return
    text = intercept_text(record, info, deployment_kind)
    if output.mode == "legacy":
        if not since(2, 23):
            output.out(text)       # 2.20: the text lands in the envelope's stdout
        return                     # 2.23+: the info goes to the (quiet) progress writer
    output.out(text)


def intercept_text(record, info, kind):
    pairs = [("Intercept name", record["name"]), ("State", "ACTIVE"), ("Workload kind", kind),
             ("Destination", "%s:%s" % (info["target_host"], record["local_port"])),
             ("Service Port Identifier", info.get("port_id", ""))]
    if (info.get("mount") or {}).get("error"):
        pairs.append(("Volume Mount Error", info["mount"]["error"]))
    pairs.append(("Intercepting", "all TCP connections"))
    return "Using %s %s\n%s" % (kind, record["workload"], key_value_block(pairs, "   "))


def run_intercept_command(ctx, name, env):
    """`intercept NAME -- cmd`: run the command with the pod env, then end the intercept."""
    try:
        return subprocess.run(ctx.args.after_dash, env=dict(os.environ, **env), check=False).returncode
    except OSError as exc:
        raise CLIError(str(exc))
    finally:
        remove_intercept(ctx, name)


def remove_intercept(ctx, name, container=None):
    """Leave an intercept/replace/wiretap named `name`, or the ingest of workload `name` (facts §6: leave takes
    "replace, intercept, or ingest" names; an ingest is named after its workload)."""
    with ctx.store.transaction() as state:
        before = len(state["intercepts"]) + len(state["ingests"])
        state["intercepts"] = [i for i in state["intercepts"] if i["name"] != name]
        state["intercept_extras"].pop(name, None)
        state["ingests"] = [i for i in state["ingests"]
                            if not (i["workload"] == name and container in (None, i["container"]))]
        return len(state["intercepts"]) + len(state["ingests"]) != before


def cmd_replace(ctx):
    return cmd_intercept(ctx, "replace")


def cmd_wiretap(ctx):
    return cmd_intercept(ctx, "wiretap")


def cmd_ingest(ctx):
    """ingest <workload> (2.21+, facts §5 "Sibling commands"): the workload's environment and (read-only) mounts,
    no traffic change. The 2.24 flags have no --port and no --detailed-output; --namespace from 2.29.

    Output: with --output json a 2.23+ client's progress is quiet (facts §0 2.23.0), so nothing is printed on
    success; 2.21/2.22 put the text into the envelope. 2.29+ --format json prints the ingest's info object (what
    it holds is UNVERIFIED: workload, container, environment, mount).
    """
    args = ctx.args
    if len(args.positional) != 1:
        raise CLIError("accepts 1 arg(s), received %d" % len(args.positional), flag=True)
    if args.get("env-syntax", "docker") not in ENV_SYNTAXES:
        raise CLIError('invalid env syntax "%s", must be one of %s' % (args.get("env-syntax"), ", ".join(ENV_SYNTAXES)))
    workload = args.positional[0]
    session = require_session(ctx)
    namespace = (args.get("namespace") if since(2, 29) else None) or session["namespace"]
    kube = session_kube(session)
    try:
        deployment = find_workload(kube, namespace, workload)
    except KubeError as exc:
        raise CLIError("connector.Ingest: %s" % exc.message, progress=True)
    if not deployment:
        raise CLIError('connector.Ingest: workload "%s.%s" not found' % (workload, namespace), progress=True)
    containers = [c for c in template_containers(deployment) if c.get("name") != AGENT_CONTAINER]
    container = next((c for c in containers if c.get("name") == args.get("container")), None) \
        if args.get("container") else (containers[0] if containers else {})
    if container is None:
        raise CLIError('connector.Ingest: workload %s.%s has no container named "%s"'
                       % (workload, namespace, args.get("container")), progress=True)
    mount = args.get("mount", "true")
    env = pod_environment(container)
    env.update({"TELEPRESENCE_CONTAINER": container.get("name", ""),
                "TELEPRESENCE_MOUNTS": "/tel_app_mounts" if mount != "false" else "",
                "TELEPRESENCE_ROOT": "" if mount in ("false", "true") else mount})
    record = {"workload": workload, "namespace": namespace, "container": container.get("name", ""),
              "client": client_identity(), "mount": "" if mount == "false" else mount}
    with ctx.store.transaction() as state:
        if any(i["workload"] == workload and i["container"] == record["container"] for i in state["ingests"]):
            # UNVERIFIED wording: the sheet has no text for a second ingest of the same container
            raise CLIError('connector.Ingest: ingest of workload "%s" container "%s" already exists'
                           % (workload, record["container"]), progress=True)
        write_requested_env_files(args, env)
        state["ingests"].append(record)
    output = ctx.output
    if output.mode == "format":
        output.object({"workload": workload, "container": record["container"], "environment": env}, override=True)
    elif output.mode == "text" or not since(2, 23):
        output.out("Using %s %s\n   Ingesting container %s\n" % (deployment["kind"], workload, record["container"]))
    if args.after_dash:
        try:
            return subprocess.run(args.after_dash, env=dict(os.environ, **env), check=False).returncode
        except OSError as exc:
            raise CLIError(str(exc))
        finally:
            remove_intercept(ctx, workload)
    return None


# ---------------------------------------------------------------------------------------------
# leave / detach / uninstall
# ---------------------------------------------------------------------------------------------

def not_found_message(name):
    if since(2, 22):
        return 'Found no replace, intercept, or ingest named "%s"' % name
    if since(2, 21):
        return 'Intercept or ingest named "%s" not found' % name
    return 'Intercept named "%s" not found' % name


def cmd_leave(ctx):
    if ctx.command == "leave" and since(2, 30):
        write_stderr('Command "leave" is deprecated, use "telepresence detach" instead\n')
    if len(ctx.args.positional) != 1:
        raise CLIError("accepts 1 arg(s), received %d" % len(ctx.args.positional), flag=True)
    name = ctx.args.positional[0]
    require_session(ctx)
    if not remove_intercept(ctx, name, ctx.args.get("container")):
        message = not_found_message(name)
        if ctx.args.get("container"):
            message += ' with container "%s"' % ctx.args.get("container")
        raise CLIError(message)


def uninstall_targets(ctx):
    args = ctx.args
    if since(2, 21):
        if args.get("agent"):
            write_stderr("--agent is deprecated (it's the default, so the flag has no effect)\n")
        if args.get("all-agents") and args.positional:
            raise CLIError("--all-agents cannot be used with additional arguments")
        if not args.get("all-agents") and not args.positional:
            raise CLIError("please specify at least one workload or use or --all-agents")
    else:
        if args.get("everything"):
            write_stderr("--everything is deprecated. Please use telepresence helm uninstall\n")
        if args.get("all-agents") and args.positional:
            raise CLIError("--all-agents cannot be used with additional arguments")
        if args.get("agent") and not args.positional:
            raise CLIError("at least one argument (the name of an agent) is expected")
        if not args.get("agent") and not args.get("all-agents") and not args.get("everything"):
            raise CLIError("please specify --agent or --all-agents")
    return None if args.get("all-agents") or args.get("everything") else list(args.positional)


def cmd_uninstall(ctx):
    names = uninstall_targets(ctx)
    session = require_session(ctx)
    namespace = session["namespace"]
    kube = session_kube(session)
    try:
        if names is None:
            # --all-agents carries no namespace: the daemon clears agents in every mapped namespace (all of them
            # when none are mapped), not only in the one the session is connected to.
            targets = [d for d in all_agent_deployments(kube, session.get("mapped_namespaces"))
                       if has_agent(kube, session, d)]
        else:
            by_name = {d["metadata"]["name"]: d for d in namespace_workloads(kube, namespace)}
            targets = []
            for name in names:
                if name not in by_name:
                    raise CLIError('connector.Uninstall: workload "%s.%s" not found' % (name, namespace))
                targets.append(by_name[name])
        removed = set()
        for deployment in targets:
            remove_agent(kube, session, deployment)
            removed.add((deployment["metadata"]["namespace"], deployment["metadata"]["name"]))
    except KubeError as exc:
        raise CLIError("connector.Uninstall: %s" % exc.message)
    with ctx.store.transaction() as state:
        # without its agent an intercept cannot survive
        gone = [i["name"] for i in state["intercepts"] if (i["namespace"], i["workload"]) in removed]
        state["intercepts"] = [i for i in state["intercepts"] if i["name"] not in gone]
        for name in gone:
            state["intercept_extras"].pop(name, None)


def all_agent_deployments(kube, mapped_namespaces):
    """Deployments in the mapped namespaces, or cluster-wide when none are mapped."""
    if mapped_namespaces:
        return [d for ns in mapped_namespaces for d in namespace_workloads(kube, ns)]
    return [with_kind(obj, kind) for kind, resource in WORKLOAD_RESOURCES
            for obj in kube.items("/apis/apps/v1/%s" % resource)]


# ---------------------------------------------------------------------------------------------
# helm install / upgrade / uninstall
# ---------------------------------------------------------------------------------------------

def set_dotted(values, dotted, value):
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def deep_merge(base, extra):
    result = dict(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def user_values(args):
    """Values from -f files (JSON or a YAML subset), then --set/--set-string/--set-json, in Helm's order."""
    values = {}
    for path in args.get("values") or []:
        try:
            loaded = load_structured_file(path) or {}
        except OSError as exc:
            raise CLIError("open %s: %s" % (path, (exc.strerror or str(exc)).lower()))
        except ValueError as exc:
            raise CLIError("failed to parse %s: %s" % (path, exc))
        if not isinstance(loaded, dict):
            raise CLIError("failed to parse %s: values must be a mapping" % path)
        values = deep_merge(values, loaded)
    for kind in ("set", "set-string", "set-json"):
        for item in args.get(kind) or []:
            for assignment in ([item] if kind == "set-json" else item.split(",")):
                key, eq, raw = assignment.partition("=")
                if not eq or not key:
                    raise CLIError('failed parsing --%s data: key "%s" has no value' % (kind, assignment))
                if kind == "set":
                    value = parse_yaml_scalar(raw) if raw else ""
                elif kind == "set-json":
                    try:
                        value = json.loads(raw)
                    except ValueError as exc:
                        raise CLIError("failed parsing --set-json data %s: %s" % (assignment, exc))
                else:
                    value = raw
                set_dotted(values, key, value)
    return values


def injected_values(version):
    """The values the CLI adds to every install/upgrade (facts §8, "Values always merged ... also injects, from").

    `image.registry` (config `images.registry`, default ghcr.io/telepresenceio) and `image.tag` (the chart
    version) always; from config.yml, when set: `agent.image.registry` (images.webhookRegistry),
    `agent.image.name`/`tag` (images.agentImage), `grpc.maxReceiveSize`, `agentInjector.appProtocolStrategy`
    (intercept.appProtocolStrategy) and `telepresenceAPI.port`.
    """
    config = client_config()

    def section(name):
        value = config.get(name)
        return value if isinstance(value, dict) else {}

    images, grpc, intercept, api = section("images"), section("grpc"), section("intercept"), section("telepresenceAPI")
    values = {"image": {"registry": images.get("registry") or "ghcr.io/telepresenceio", "tag": version}}
    if images.get("webhookRegistry"):
        set_dotted(values, "agent.image.registry", images["webhookRegistry"])
    if images.get("agentImage"):
        name, _sep, tag = str(images["agentImage"]).rpartition(":")
        set_dotted(values, "agent.image.name", name or tag)
        if name:
            set_dotted(values, "agent.image.tag", tag)
    if grpc.get("maxReceiveSize"):
        set_dotted(values, "grpc.maxReceiveSize", grpc["maxReceiveSize"])
    if intercept.get("appProtocolStrategy"):
        set_dotted(values, "agentInjector.appProtocolStrategy", intercept["appProtocolStrategy"])
    if api.get("port"):
        set_dotted(values, "telepresenceAPI.port", api["port"])
    return values


def release_config(version, given, previous=None):
    """The user values Helm stores: [previous values (reuse),] then the injected ones, then this call's values.

    The sheet does not say whether a key the user passes (`image.tag`) or the injected one wins; the emulator
    lets this call's values win (see tests/sandbox/README.md, UNVERIFIED choices).
    """
    return deep_merge(deep_merge(previous or {}, injected_values(version)), given)


def chart_version(args):
    requested = args.get("version") if since(2, 21) else None
    if requested:
        match = re.search(r"(\d+\.\d+\.\d+)", requested)
        if not match:
            raise CLIError('invalid version "%s"' % requested)
        return match.group(1)
    return SEMVER


def install_namespace(args):
    return args.get("manager-namespace") or args.get("namespace") or DEFAULT_MANAGER_NAMESPACE


def release_secret_name(revision):
    return "sh.helm.release.v1.%s.v%d" % (RELEASE_NAME, revision)


def encode_release(release):
    """Helm's storage: base64(gzip(json)); the Secret API adds one more base64 layer."""
    helm_blob = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    return base64.b64encode(helm_blob).decode()


def decode_release(secret):
    blob = base64.b64decode((secret.get("data") or {}).get("release", ""))
    return json.loads(gzip.decompress(base64.b64decode(blob)))


def release_history(kube, namespace):
    """[(revision, secret, release)] of the traffic-manager release, oldest first."""
    secrets = kube.items(ns_path(namespace, "secrets"), {"owner": "helm", "name": RELEASE_NAME})
    history = []
    for secret in secrets:
        try:
            release = decode_release(secret)
        except (ValueError, OSError, TypeError):
            continue
        history.append((int(release.get("version") or 0), secret, release))
    return sorted(history, key=lambda item: item[0])


def save_release(kube, namespace, release):
    revision = release["version"]
    labels = {"owner": "helm", "name": RELEASE_NAME, "status": release["info"]["status"],
              "version": str(revision)}
    body = {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": release_secret_name(revision), "namespace": namespace, "labels": labels},
            "data": {"release": encode_release(release)}}
    path = ns_path(namespace, "secrets", release_secret_name(revision))
    if kube.get(path) is None:
        kube.create(ns_path(namespace, "secrets"), body)
    else:
        kube.merge_patch(path, {"metadata": {"labels": labels}, "data": body["data"]})


def set_release_status(kube, namespace, release, status, description=None):
    release["info"]["status"] = status
    if description:
        release["info"]["description"] = description
    save_release(kube, namespace, release)


def chart_values(version, config):
    """The chart defaults merged with the user values (what the templates would see)."""
    defaults = {"image": {"registry": "ghcr.io/telepresenceio", "name": "tel2", "tag": version},
                "replicaCount": 1, "createdBy": "Helm", "labels": {}}
    return deep_merge(defaults, config)


def manager_objects(namespace, version, values):
    """What the telepresence-oss chart renders that matters here: Deployment + Services."""
    image = values.get("image") or {}
    labels = dict(MANAGER_LABELS)
    labels.update({"helm.sh/chart": "%s-%s" % (CHART_NAME, version), "app.kubernetes.io/version": version,
                   "app.kubernetes.io/managed-by": "Helm",
                   "app.kubernetes.io/created-by": str(values.get("createdBy") or "Helm")})
    if since(2, 29) and isinstance(values.get("labels"), dict):
        labels.update({k: str(v) for k, v in values["labels"].items()})
    meta = {"namespace": namespace, "labels": labels,
            "annotations": {"meta.helm.sh/release-name": RELEASE_NAME, "meta.helm.sh/release-namespace": namespace}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": dict(meta, name="traffic-manager"),
        "spec": {
            "replicas": int(values.get("replicaCount") or 1),
            "selector": {"matchLabels": dict(MANAGER_LABELS)},
            "template": {
                "metadata": {"labels": dict(MANAGER_LABELS)},
                "spec": {"serviceAccountName": "traffic-manager", "containers": [{
                    "name": "traffic-manager",
                    "image": "%s/%s:%s" % (image.get("registry"), image.get("name") or "tel2", image.get("tag")),
                    "ports": [{"name": "api", "containerPort": 8081}, {"name": "https", "containerPort": 8443}],
                    "env": [{"name": "MANAGER_NAMESPACE", "value": namespace},
                            {"name": "AGENT_REGISTRY", "value": str(image.get("registry"))}],
                }]},
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": dict(meta, name="traffic-manager"),
               "spec": {"clusterIP": "None", "selector": dict(MANAGER_LABELS),
                        "ports": [{"name": "api", "port": 8081, "targetPort": "api", "protocol": "TCP"}]}}
    injector = {"apiVersion": "v1", "kind": "Service", "metadata": dict(meta, name="agent-injector"),
                "spec": {"selector": dict(MANAGER_LABELS),
                         "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]}}
    return deployment, [service, injector]


def render_manifest(deployment, services):
    return "".join("---\n# Source: %s/templates/%s\n%s" % (CHART_NAME, obj["metadata"]["name"], to_yaml(obj))
                   for obj in [deployment] + services)


def apply_objects(kube, namespace, deployment, services):
    """Create or update (merge patch) the rendered objects; returns the Deployment as stored."""
    for service in services:
        path = ns_path(namespace, "services", service["metadata"]["name"])
        if kube.get(path) is None:
            kube.create(ns_path(namespace, "services"), service)
        else:
            kube.merge_patch(path, {"metadata": {"labels": service["metadata"]["labels"]}, "spec": service["spec"]})
    path = ns_path(namespace, "deployments", "traffic-manager")
    if kube.get(path) is None:
        return kube.create(ns_path(namespace, "deployments"), deployment)
    return kube.merge_patch(path, {"metadata": {"labels": deployment["metadata"]["labels"]},
                                   "spec": deployment["spec"]})


def delete_manager_objects(kube, namespace):
    kube.delete(ns_path(namespace, "deployments", "traffic-manager"))
    for name in ("traffic-manager", "agent-injector"):
        kube.delete(ns_path(namespace, "services", name))


def ensure_namespace(kube, namespace, create):
    if kube.get("/api/v1/namespaces/%s" % namespace) is not None:
        return
    if not create:
        raise CLIError('create: failed to create: namespaces "%s" not found' % namespace)
    try:
        kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": namespace}})
    except KubeError as exc:
        if exc.status != 409:
            raise


def new_release(namespace, revision, version, config, manifest, status, description, first_deployed=None):
    now = now_rfc3339()
    return {
        "name": RELEASE_NAME, "namespace": namespace, "version": revision,
        "info": {"first_deployed": first_deployed or now, "last_deployed": now, "deleted": "",
                 "description": description, "status": status, "notes": ""},
        "chart": {"metadata": {"name": CHART_NAME, "version": version, "appVersion": version, "apiVersion": "v2",
                               "description": "A chart for deploying the server side component of Telepresence",
                               "type": "application"},
                  "lock": None, "templates": [], "values": chart_values(version, {}), "schema": None, "files": []},
        "config": config, "manifest": manifest,
    }


def wait_for_manager(kube, namespace, generation):
    timeout = config_timeout("helm", 30.0)

    def ready():
        deployment = kube.get(ns_path(namespace, "deployments", "traffic-manager"))
        return bool(deployment) and deployment_rolled_out(deployment, generation)
    return wait_until(ready, timeout)


def helm_kube(args):
    config = load_kubeconfig(args.get("kubeconfig"), args.get("context"))
    return Kube(config)


def cmd_helm_install(ctx):
    args = ctx.args
    namespace = install_namespace(args)
    kube = helm_kube(args)
    try:
        history = release_history(kube, namespace)
        latest = history[-1][2] if history else None
        if latest and latest["info"]["status"] in ("deployed", "superseded"):
            if args.get("upgrade"):
                return cmd_helm_upgrade(ctx)
            raise CLIError("traffic-manager version %s is already installed, use 'telepresence helm upgrade' "
                           "instead to replace it" % json.dumps(latest["chart"]["metadata"]["appVersion"]))
        if latest:
            # a release stuck in pending-install/failed is uninstalled and installed again
            uninstall_release(kube, namespace, history)
        ensure_namespace(kube, namespace, args.get("create-namespace", True))
        version = chart_version(args)
        config = release_config(version, user_values(args))
        deploy_release(kube, namespace, 1, version, config, "install", None)
    except KubeError as exc:
        raise CLIError("failed to install traffic-manager: %s" % exc.message)
    ctx.output.out("\nTraffic Manager installed successfully\n")


def deploy_release(kube, namespace, revision, version, config, action, previous):
    """Render, apply, record the release and wait (Atomic + Wait): roll back on timeout."""
    values = chart_values(version, config)
    deployment, services = manager_objects(namespace, version, values)
    manifest = render_manifest(deployment, services)
    first = previous["info"]["first_deployed"] if previous else None
    release = new_release(namespace, revision, version, config, manifest,
                          "pending-install" if action == "install" else "pending-upgrade",
                          "Initial install underway" if action == "install" else "Preparing upgrade", first)
    save_release(kube, namespace, release)
    stored = apply_objects(kube, namespace, deployment, services)
    generation = (stored.get("metadata") or {}).get("generation")
    if wait_for_manager(kube, namespace, generation):
        if previous:
            set_release_status(kube, namespace, previous, "superseded")
        set_release_status(kube, namespace, release, "deployed",
                           "Install complete" if action == "install" else "Upgrade complete")
        return
    if action == "install":
        uninstall_release(kube, namespace, release_history(kube, namespace))
        raise CLIError("failed to install traffic-manager: release traffic-manager failed, and has been "
                       "uninstalled due to atomic being set: timed out waiting for the condition")
    set_release_status(kube, namespace, release, "failed", "Upgrade \"traffic-manager\" failed: timed out "
                       "waiting for the condition")
    rollback(kube, namespace, previous, revision + 1)
    raise CLIError("failed to upgrade traffic-manager: release traffic-manager failed, and has been rolled back "
                   "due to atomic being set: timed out waiting for the condition")


def rollback(kube, namespace, previous, revision):
    version = previous["chart"]["metadata"]["version"]
    values = chart_values(version, previous.get("config") or {})
    deployment, services = manager_objects(namespace, version, values)
    apply_objects(kube, namespace, deployment, services)
    set_release_status(kube, namespace, previous, "superseded")
    release = new_release(namespace, revision, version, previous.get("config") or {}, previous.get("manifest", ""),
                          "deployed", "Rollback to %d" % previous["version"], previous["info"]["first_deployed"])
    save_release(kube, namespace, release)


def uninstall_release(kube, namespace, history):
    delete_manager_objects(kube, namespace)
    for _revision, secret, _release in history:
        kube.delete(ns_path(namespace, "secrets", secret["metadata"]["name"]))


def cmd_helm_upgrade(ctx):
    args = ctx.args
    if args.get("reset-values") and args.get("reuse-values"):
        raise CLIError("--reset-values and --reuse-values are mutually exclusive")
    namespace = install_namespace(args)
    kube = helm_kube(args)
    try:
        history = release_history(kube, namespace)
        deployed = [r for _revision, _secret, r in history if r["info"]["status"] == "deployed"]
        if not history:
            raise CLIError("traffic-manager is not installed, use 'telepresence helm install' to install it")
        if history[-1][2]["info"]["status"].startswith("pending"):
            raise CLIError("failed to upgrade traffic-manager: another operation (install/upgrade/rollback) is "
                           "in progress")
        previous = deployed[-1] if deployed else history[-1][2]
        version = chart_version(args)
        given = user_values(args)
        # facts §8 "No values given includes an empty values file": the CLI tests len(providedVals) > 0 on the
        # merged -f/--set* map, so `-f {}` takes the reuse branch like no flag at all; --reset-values drops them.
        reuse = args.get("reuse-values") or (not given and not args.get("reset-values"))
        config = release_config(version, given, previous.get("config") if reuse else None)
        deploy_release(kube, namespace, history[-1][0] + 1, version, config, "upgrade", previous)
    except KubeError as exc:
        raise CLIError("failed to upgrade traffic-manager: %s" % exc.message)
    ctx.output.out("\nTraffic Manager upgraded successfully\n")


def cmd_helm_uninstall(ctx):
    namespace = install_namespace(ctx.args)
    kube = helm_kube(ctx.args)
    try:
        history = release_history(kube, namespace)
        if history:
            uninstall_release(kube, namespace, history)
            forget_manager(namespace)
    except KubeError as exc:
        raise CLIError("failed to uninstall traffic-manager: %s" % exc.message)
    ctx.output.out("\nTraffic Manager uninstalled successfully\n")


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------

HANDLERS = {
    "version": cmd_version, "status": cmd_status, "connect": cmd_connect, "quit": cmd_quit, "list": cmd_list,
    "intercept": cmd_intercept, "replace": cmd_replace, "wiretap": cmd_wiretap, "ingest": cmd_ingest,
    "leave": cmd_leave, "detach": cmd_leave, "uninstall": cmd_uninstall,
    "helm install": cmd_helm_install, "helm upgrade": cmd_helm_upgrade, "helm uninstall": cmd_helm_uninstall,
}


def help_text(command):
    if command:
        return "Usage:\n  %s\n" % COMMANDS[command][1]
    names = sorted(n for n in COMMANDS if command_available(n) and not (n == "leave" and since(2, 30)))
    return ("Telepresence can connect to a cluster and route all outbound traffic from your workstation to that "
            "cluster so that software running locally can communicate as if it executed remotely.\n\n"
            "Usage:\n  telepresence [command]\n\nAvailable Commands:\n%s" % "".join("  %s\n" % n for n in names))


def resolve_command(argv):
    """Returns (command name or None, remaining tokens); raises CLIError for unknown commands."""
    words, rest = find_command(argv)
    if not words or words[0] == "help":
        return None, rest
    name = words[0]
    if name == "helm":
        if len(words) < 2:
            return "helm", rest
        name = "helm " + words[1]
        if name not in COMMANDS:
            raise CLIError('unknown command "%s" for "telepresence helm"' % words[1], flag=True)
        return name, rest
    if not command_available(name):
        raise CLIError('unknown command "%s" for "telepresence"' % name, flag=True)
    return name, rest


def output_mode(parsed, command_name):
    """Work out the output mode from --output/--format (facts §11)."""
    name = command_name.split()[-1]
    output = parsed.get("output", "default")
    fmt = parsed.get("format", "default")
    if parsed.get("json"):
        output = "json"
    if since(2, 29) and parsed.has("output") and parsed.has("format"):
        raise CLIError("if any flags in the group [format output] are set none of the others can be; "
                       "[format output] were all set", flag=True)
    if fmt != "default":
        if fmt not in ("json", "yaml", "json-stream"):
            raise CLIError('invalid format "%s"' % fmt)
        return Output("format", "yaml" if fmt == "yaml" else "json", name)
    if output != "default":
        if output.lower() not in ("json", "yaml", "json-stream"):
            raise CLIError('invalid output format "%s"' % output)
        return Output("legacy", "yaml" if output.lower() == "yaml" else "json", name)
    return Output("text", cmd_name=name)


def apply_fault(ctx, spec):
    """Apply a `cli` fault from faults.json; returns an exit code, or None to run normally."""
    mode = spec.get("mode")
    message = spec.get("message") or "sandbox fault injected into %s" % ctx.command_path
    if mode in ("error", "flaky"):
        error = CLIError(message)
        if ctx.output.mode == "text":
            print_text_error(ctx.command_path, error)
            return 1
        return ctx.output.finish(error)
    if mode == "malformed":
        write_stdout('{"cmd":"%s","stdout":[{"name":"fresh-app","namespace":"ap' % ctx.command.split()[-1])
        return 0
    return None


def run(argv, base, log):
    """Parse, apply faults, run the command; returns the exit code."""
    try:
        command, rest = resolve_command(argv)
    except CLIError as error:
        write_stderr("telepresence: error: %s\nRun 'telepresence --help' for usage.\n" % error.message)
        return 1
    if command is None or command == "helm":
        write_stdout(help_text(None))
        return 0
    flags = global_flags() + COMMANDS[command][0]()
    try:
        parsed, deprecations = parse_args(rest, flags)
        output = output_mode(parsed, command)
    except CLIError as error:
        write_stderr("telepresence %s: error: %s\n" % (command, error.message))
        return 1
    if parsed.get("help"):
        write_stdout(help_text(command))
        return 0
    ctx = Context(base, command, parsed, output)
    log["ctx"] = ctx
    for text in deprecations:
        write_stderr(text)
    spec = take_cli_fault(base, command)
    if spec and spec.get("mode") == "hang":
        log["hang"] = True
        return None
    if spec:
        code = apply_fault(ctx, spec)
        if code is not None:
            return code
    # facts sheet sections 5 and 8: intercept waits for the agent, helm install for the rollout
    slow = spec if spec and spec.get("mode") in ("slow", "slow_after") else None
    if slow and slow["mode"] == "slow":
        time.sleep(float(slow.get("seconds", 5)))   # a slow cluster before anything lands
    error, code = None, None
    try:
        code = HANDLERS[command](ctx)
    except CLIError as exc:
        error = exc
    except KubeError as exc:
        error = CLIError(exc.message)
    if error is not None and (error.flag or output.mode == "text"):
        print_text_error(ctx.command_path, error)
        return 1
    final = output.finish(error)
    if slow and slow["mode"] == "slow_after":
        # the change has landed and its output is written; the CLI is still waiting (a rollout, a watch)
        sys.stdout.flush()
        time.sleep(float(slow.get("seconds", 5)))
    return code if error is None and code is not None else final


def main():
    base = sandbox_dir()
    started = time.time()
    argv = sys.argv[1:]
    log = {}
    rc = run(argv, base, log)
    ctx = log.get("ctx")
    record = {"ts": started, "version": SEMVER, "argv": argv, "rc": rc,
              "duration": round(time.time() - started, 3),
              "implicit_connect": bool(ctx and ctx.implicit_connect),
              "cmd": ctx.command if ctx else None}
    append_call_log(base, record)
    if log.get("hang"):
        # logged first, then hang far past any timeout: the caller has to kill us
        time.sleep(HANG_SECONDS)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
