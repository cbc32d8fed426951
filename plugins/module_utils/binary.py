# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release artifacts of the Telepresence client: names, URLs, known digests, and a verified download.

Everything here is free of AnsibleModule so it can be unit-tested on its own; tp_binary wires it to the
module's options. The URL layout and the digests come from the facts sheet, section 10.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import http.client
import os
import re
import socket
import ssl
import time
import urllib.error
from urllib.parse import urlsplit

from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import (
    parse_release_version,
    version_string,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import Interrupted, controller_gone

GITHUB_RELEASES = "https://github.com/telepresenceio/telepresence/releases/download"
USER_AGENT = "devloop.telepresence-tp_binary/0.1.0"
CHUNK_SIZE = 64 * 1024
# A checksum file is a few lines; anything much bigger is not one, and must not be held in memory.
CHECKSUM_FILE_LIMIT = 1024 * 1024
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
LOCK_POLL_SECONDS = 0.2
# tempfiles.private_file(TEMP_PREFIX, TEMP_SUFFIX) names: prefix, owner pid, "-", 8 random [a-z0-9_], suffix.
# Older releases left prefix + 8 random + suffix: both are this module's leftovers.
TEMP_PREFIX = ".telepresence-"
TEMP_SUFFIX = ".download"
TEMP_NAME_RE = re.compile(r"^\.telepresence-(\d+-)?[a-z0-9_]{8}\.download$")

SUPPORTED_SYSTEMS = {"linux": "linux", "darwin": "darwin"}
SUPPORTED_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

# SHA-256 of the published standalone binaries, from the official Homebrew tap (facts sheet section 10:
# BREW @ ac7355b8 for v2.24.0, @ 4a19ba7 for v2.24.1). linux-arm64 is not in the formula, so not here.
PUBLISHED_DIGESTS = {
    ("2.24.0", "darwin-amd64"): "2e4b7e8d55e0e89181327dcef9811b02c60a387c3e313d8fb924ade9fcf2cf18",
    ("2.24.0", "darwin-arm64"): "4ad117f14f13dc6160f753e02830d57ad5053ea00827b06e03738a45a1697569",
    ("2.24.0", "linux-amd64"): "356f075ee670af4b5a85fc58f548809b6fc683062cf798efc01fcf67b8df2eeb",
    ("2.24.1", "darwin-amd64"): "492a252bf131be2431db9506b8a685de2dfd6b22f0ff41897ddd30beb48f2699",
    ("2.24.1", "darwin-arm64"): "bf5ebf57365ba8b943a7fdd5ae49400643b8cd508d85798612206346ba300afc",
    ("2.24.1", "linux-amd64"): "b7d2d09e30eb85ffb4f6ae0baba377dfa96c8ae028b70ae1cc8b9fdc463e78ba",
}

HEX_DIGEST_RE = re.compile(r"^[0-9a-fA-F]{64}\Z")
# GNU coreutils: "<hex>  <name>" (text mode) or "<hex> *<name>" (binary mode).
GNU_SUM_LINE_RE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S.*)\Z")
# BSD / openssl: "SHA256 (<name>) = <hex>".
BSD_SUM_LINE_RE = re.compile(r"^SHA256\s*\((.+)\)\s*=\s*([0-9a-fA-F]{64})\Z", re.IGNORECASE)


class BinaryError(Exception):
    """A problem with the platform, an option value, or a download; the message is for the user."""


class DownloadError(BinaryError):
    """A failed download. ``retryable`` tells whether another attempt may succeed."""

    def __init__(self, msg, url=None, status=None, retryable=False):
        super().__init__(msg)
        self.msg = msg
        self.url = url
        self.status = status
        self.retryable = retryable


# --- platform, version, names -------------------------------------------------------------------

def detect_platform(system, machine):
    """``linux-amd64`` from ``platform.system()`` and ``platform.machine()``; BinaryError when unsupported."""
    os_name = SUPPORTED_SYSTEMS.get(str(system or "").lower())
    arch = SUPPORTED_MACHINES.get(str(machine or "").lower())
    if not os_name or not arch:
        raise BinaryError(
            "tp_binary installs the Telepresence client on Linux and Darwin (macOS) with an x86_64/amd64 or "
            "aarch64/arm64 CPU; this host reports system %r and machine %r. Install the client by hand and point "
            "the other modules' binary_path at it" % (system, machine))
    return "%s-%s" % (os_name, arch)


def normalize_version(text):
    """``2.24.0`` for ``2.24.0`` or ``v2.24.0`` (surrounding blanks ignored); None for anything else."""
    parsed = parse_release_version(text)
    return version_string(parsed) if parsed else None


def artifact_name(platform_name):
    return "telepresence-%s" % platform_name


def artifact_url(base_url, version, platform_name):
    """``<base_url>/v<X.Y.Z>/telepresence-<os>-<arch>`` (GitHub's release layout, and any mirror of it)."""
    return "%s/v%s/%s" % (base_url.rstrip("/"), version, artifact_name(platform_name))


def url_problem(url, allow_insecure_http):
    """None when ``url`` is an acceptable https (or allowed http) URL, else what is wrong with it."""
    if not isinstance(url, str) or not url.strip():
        return "is empty"
    if url != url.strip() or re.search(r"[\s\x00-\x1f\x7f]", url):
        return "contains blanks or control characters"
    try:
        parts = urlsplit(url)
        _port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        return "is not a valid URL (%s)" % exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        return "is not an http(s) URL with a host name (expected https://host/path)"
    if scheme == "http" and not allow_insecure_http:
        return ("uses plain http://, which lets anyone on the network replace the binary; use https://, or set "
                "allow_insecure_http: true for a trusted internal mirror")
    if parts.query or parts.fragment:
        return "must not carry a query string or fragment"
    return None


# --- digests -------------------------------------------------------------------------------------

def parse_checksum(text):
    """The lower-case hex digest of ``sha256:<hex>`` or bare ``<hex>``; None when it is neither."""
    value = str(text or "").strip()
    if value.lower().startswith("sha256:"):
        value = value[len("sha256:"):].strip()
    return value.lower() if HEX_DIGEST_RE.match(value) else None


def published_digest(version, platform_name):
    """The built-in digest of the official artifact, or None when the table does not know it."""
    return PUBLISHED_DIGESTS.get((version, platform_name))


def digest_from_checksum_file(text, artifact):
    """The digest listed for ``artifact`` in a sha256sum-style file, or None.

    Accepts GNU lines (``<hex>  <name>``, ``<hex> *<name>``), BSD lines (``SHA256 (<name>) = <hex>``), names
    with a leading directory (``./dist/<name>``), and a file that holds one bare digest and nothing else.
    """
    lines = [line.strip() for line in (text or "").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    for line in lines:
        match = GNU_SUM_LINE_RE.match(line)
        if match:
            digest, name = match.group(1), match.group(2)
        else:
            match = BSD_SUM_LINE_RE.match(line)
            if not match:
                continue
            name, digest = match.group(1), match.group(2)
        if os.path.basename(name.strip()) == artifact:
            return digest.lower()
    if len(lines) == 1 and HEX_DIGEST_RE.match(lines[0]):
        return lines[0].lower()
    return None


def sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- download ------------------------------------------------------------------------------------

class Downloader:
    """Streams URLs with a deadline per attempt and retries with exponential backoff.

    ``open_url`` is ``ansible.module_utils.urls.open_url`` (injected so tests can replace the network).
    ``timeout`` bounds one attempt from request to last byte; ``retries`` is how many more attempts follow
    a retryable failure (5xx, 408, 429, reset or refused connections, timeouts, cut-short bodies). A 404 or
    any other 4xx, a certificate problem and a redirect to plain http are never retried.
    """

    def __init__(self, open_url, timeout, retries, validate_certs=True, allow_insecure_http=False,
                 sleep=None, clock=None):
        self.open_url = open_url
        self.timeout = timeout
        self.retries = retries
        self.validate_certs = validate_certs
        self.allow_insecure_http = allow_insecure_http
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.attempts = 0

    def fetch_to_file(self, url, handle, not_found=None):
        """Write the body of ``url`` into the binary file object ``handle``; return ``(sha256 hex, size)``.

        ``handle`` is rewound and truncated before every attempt, so a retry never appends to a partial body.
        """
        def attempt():
            handle.seek(0)
            handle.truncate()
            digest = hashlib.sha256()
            size = self._stream(url, not_found, lambda chunk: (digest.update(chunk), handle.write(chunk)))
            handle.flush()
            return digest.hexdigest(), size
        return self._with_retries(url, attempt)

    def fetch_text(self, url, not_found=None, limit=CHECKSUM_FILE_LIMIT):
        """The body of a small text file (a checksum list), refused when it exceeds ``limit`` bytes."""
        def attempt():
            parts = []

            def keep(chunk):
                parts.append(chunk)
                if sum(len(part) for part in parts) > limit:
                    raise DownloadError("%s is larger than %d bytes, which is not a checksum file" % (url, limit),
                                        url=url)
            self._stream(url, not_found, keep)
            return b"".join(parts).decode("utf-8", errors="replace")
        return self._with_retries(url, attempt)

    def _with_retries(self, url, attempt):
        failures = []
        for number in range(self.retries + 1):
            if number:
                self.sleep(min(BACKOFF_FIRST_SECONDS * 2 ** (number - 1), BACKOFF_MAX_SECONDS))
            self.attempts += 1
            try:
                return attempt()
            except DownloadError as exc:
                if not exc.retryable:
                    raise
                failures.append(exc.msg)
        if len(failures) == 1:
            raise DownloadError(failures[0], url=url, retryable=True)
        raise DownloadError("%s (gave up after %d attempts; earlier: %s)" % (
            failures[-1], len(failures), "; ".join(failures[:-1])), url=url, retryable=True)

    def _stream(self, url, not_found, sink):
        """One attempt: request, then pass every chunk to ``sink``; return the number of bytes received."""
        deadline = self.clock() + self.timeout
        response = self._open(url, not_found)
        try:
            self._check_final_url(url, response)
            expected = _content_length(response)
            read = getattr(response, "read1", None) or response.read
            received = 0
            while True:
                if self.clock() > deadline:
                    raise DownloadError("download of %s did not finish within the timeout of %s s (%d bytes "
                                        "received); raise timeout for a slow link" % (url, self.timeout, received),
                                        url=url, retryable=True)
                try:
                    chunk = read(CHUNK_SIZE)
                except (socket.timeout, TimeoutError):
                    raise DownloadError("download of %s stalled: no data for %s s" % (url, self.timeout),
                                        url=url, retryable=True)
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError("download of %s was interrupted after %d bytes: %s" % (
                        url, received, _reason(exc)), url=url, retryable=True)
                if not chunk:
                    break
                if controller_gone():
                    # Ctrl-C of ansible-playbook: nobody will read the result, so stop downloading (see cli)
                    raise Interrupted("the controller stopped reading this module's result")
                received += len(chunk)
                sink(chunk)
            if expected is not None and received != expected:
                raise DownloadError("download of %s was cut short: received %d of the %d bytes announced by "
                                    "Content-Length" % (url, received, expected), url=url, retryable=True)
            return received
        finally:
            response.close()

    def _open(self, url, not_found):
        try:
            return self.open_url(url, method="GET", timeout=self.timeout, validate_certs=self.validate_certs,
                                 http_agent=USER_AGENT, decompress=False, follow_redirects="safe")
        except urllib.error.HTTPError as exc:
            raise _http_error(url, exc.code, exc.reason, not_found)
        except urllib.error.URLError as exc:
            raise _connection_error(url, exc.reason)
        except (socket.timeout, TimeoutError):
            raise DownloadError("no answer from %s within %s s" % (url, self.timeout), url=url, retryable=True)
        except ssl.SSLError as exc:
            raise _connection_error(url, exc)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError("cannot download %s: %s" % (url, _reason(exc)), url=url, retryable=True)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # urls' SSLValidationError, ConnectionError
            raise _connection_error(url, exc)

    def _check_final_url(self, url, response):
        """A redirect from https to plain http would undo the transport security the user asked for."""
        final = getattr(response, "geturl", lambda: url)() or url
        if urlsplit(url).scheme == "https" and urlsplit(final).scheme == "http" and not self.allow_insecure_http:
            raise DownloadError("%s redirected to plain http (%s); refusing the insecure download (set "
                                "allow_insecure_http: true to accept it)" % (url, final), url=url)


def _content_length(response):
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _http_error(url, code, reason, not_found):
    if code == 404:
        return DownloadError(not_found or "%s does not exist (HTTP 404)" % url, url=url, status=404)
    retryable = code >= 500 or code in (408, 429)
    return DownloadError("%s answered HTTP %s %s" % (url, code, reason or ""), url=url, status=code,
                         retryable=retryable)


def _connection_error(url, reason):
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason) \
            or type(reason).__name__ in ("SSLValidationError", "NoSSLError"):
        return DownloadError("cannot verify the TLS certificate of %s: %s; fix the CA bundle, or set "
                             "validate_certs: false for a mirror you trust" % (url, _reason(reason)), url=url)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return DownloadError("no answer from %s in time: %s" % (url, _reason(reason)), url=url, retryable=True)
    return DownloadError("cannot reach %s: %s" % (url, _reason(reason)), url=url, retryable=True)


def _reason(exc):
    text = str(exc).strip()
    return text or type(exc).__name__


# --- the destination folder ----------------------------------------------------------------------

class DirectoryLock:
    """An exclusive flock on a directory's own descriptor: serialises installs into one folder.

    Locking the folder rather than a lock file leaves nothing behind, and the kernel drops the lock when the
    process dies, so a killed run never blocks the next one.
    """

    def __init__(self, path, wait_seconds, sleep=None, clock=None):
        self.path = path
        self.wait_seconds = wait_seconds
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.fd = None

    @property
    def held(self):
        return self.fd is not None

    def acquire(self):
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        deadline = self.clock() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if self.clock() >= deadline:
                os.close(fd)
                raise BinaryError("another run has been installing into %s for more than %d s; try again when it "
                                  "has finished" % (self.path, self.wait_seconds))
            self.sleep(LOCK_POLL_SECONDS)

    def sync(self):
        """Make a rename in the folder durable (best effort: some file systems refuse fsync on folders)."""
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            except OSError:
                pass

    def release(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def remove_stale_downloads(folder):
    """Delete temporary files left by a run that was killed mid-download; call only while holding the lock.

    Every run that downloads into ``folder`` holds the folder lock, so while we hold it any download file there
    belongs to a run that is gone (its owner lock, see tempfiles, is free too).
    """
    removed = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if TEMP_NAME_RE.match(name) and os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def nearest_existing_folder(path):
    """``path`` or its closest existing ancestor (the folder whose permissions decide whether it can be created)."""
    current = path
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current
