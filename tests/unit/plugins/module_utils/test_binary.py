# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release artifacts: platform mapping, names, URLs, digests, the streaming download and the folder lock."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import ssl
import urllib.error

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import binary
from ansible_collections.devloop.telepresence.plugins.module_utils.binary import (
    BinaryError,
    DirectoryLock,
    DownloadError,
    Downloader,
    artifact_name,
    artifact_url,
    detect_platform,
    digest_from_checksum_file,
    nearest_existing_folder,
    normalize_version,
    parse_checksum,
    published_digest,
    remove_stale_downloads,
    sha256_of_file,
    url_problem,
)

HEX = "ab" * 32


# --- platform mapping ------------------------------------------------------------------------------

@pytest.mark.parametrize("system, machine, expected", [
    ("Linux", "x86_64", "linux-amd64"),
    ("Linux", "amd64", "linux-amd64"),
    ("Linux", "aarch64", "linux-arm64"),
    ("Linux", "arm64", "linux-arm64"),
    ("Darwin", "x86_64", "darwin-amd64"),
    ("Darwin", "arm64", "darwin-arm64"),
    ("linux", "AMD64", "linux-amd64"),
])
def test_detect_platform(system, machine, expected):
    assert detect_platform(system, machine) == expected


@pytest.mark.parametrize("system, machine", [
    ("Windows", "AMD64"), ("FreeBSD", "amd64"), ("Linux", "armv7l"), ("Linux", "ppc64le"), ("Linux", "i686"),
    ("SunOS", "i86pc"), ("", ""),
])
def test_detect_platform_unsupported_names_what_was_detected(system, machine):
    with pytest.raises(BinaryError) as caught:
        detect_platform(system, machine)
    assert repr(system) in str(caught.value) and repr(machine) in str(caught.value)
    assert "Linux and Darwin" in str(caught.value)


# --- versions, names, URLs -------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2.24.0", "2.24.0"), ("v2.24.0", "2.24.0"), (" v2.25.0 ", "2.25.0"), ("v9.9.9", "9.9.9"), ("10.0.12", "10.0.12"),
])
def test_normalize_version_accepts_releases(text, expected):
    assert normalize_version(text) == expected


@pytest.mark.parametrize("text", [
    "2.24", "latest", "v2.24.0; rm -rf /", "2.24.0-rc.1", "V2.24.0", "vv2.24.0", "2.24.0.1", "", None, "2.24.x",
    "$(id)", "2.24.0 2.25.0",
])
def test_normalize_version_refuses_everything_else(text):
    assert normalize_version(text) is None


def test_artifact_name_and_url():
    assert artifact_name("linux-amd64") == "telepresence-linux-amd64"
    assert artifact_url(binary.GITHUB_RELEASES, "2.24.0", "linux-amd64") == (
        "https://github.com/telepresenceio/telepresence/releases/download/v2.24.0/telepresence-linux-amd64")
    assert artifact_url("https://mirror.example/tp/", "2.25.0", "darwin-arm64") == (
        "https://mirror.example/tp/v2.25.0/telepresence-darwin-arm64")
    assert artifact_url("http://127.0.0.1:8080", "2.20.2", "linux-arm64") == (
        "http://127.0.0.1:8080/v2.20.2/telepresence-linux-arm64")


@pytest.mark.parametrize("url, allow", [
    ("https://github.com/telepresenceio/telepresence/releases/download", False),
    ("https://mirror.example:8443/tp", False),
    ("http://127.0.0.1:8080", True),
    ("HTTPS://mirror.example/x", False),
])
def test_url_problem_accepts(url, allow):
    assert url_problem(url, allow) is None


@pytest.mark.parametrize("url, allow, fragment", [
    ("http://mirror.example", False, "plain http://"),
    ("ftp://mirror.example/x", True, "not an http(s) URL"),
    ("https//mirror.example", False, "not an http(s) URL"),
    ("mirror.example/tp", False, "not an http(s) URL"),
    ("https://", False, "not an http(s) URL"),
    ("https://mirror.example:99999/x", False, "not a valid URL"),
    ("https://mirror example/x", False, "blanks"),
    (" https://mirror.example", False, "blanks"),
    ("https://mirror.example/x?token=1", False, "query string"),
    ("", False, "empty"),
    ("file:///srv/mirror", True, "not an http(s) URL"),
])
def test_url_problem_refuses(url, allow, fragment):
    assert fragment in url_problem(url, allow)


# --- digests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (HEX, HEX), ("sha256:" + HEX, HEX), ("SHA256:" + HEX.upper(), HEX), ("  sha256: %s " % HEX, HEX),
])
def test_parse_checksum_accepts(text, expected):
    assert parse_checksum(text) == expected


@pytest.mark.parametrize("text", [
    "", "abc", "sha512:" + HEX, "md5:" + HEX[:32], HEX[:63], HEX + "0", "g" * 64, "sha256:", "sha256:" + HEX + " x",
])
def test_parse_checksum_refuses(text):
    assert parse_checksum(text) is None


def test_published_digests_are_the_facts_sheet_values():
    assert published_digest("2.24.0", "linux-amd64") == \
        "356f075ee670af4b5a85fc58f548809b6fc683062cf798efc01fcf67b8df2eeb"
    assert published_digest("2.24.0", "darwin-amd64") == \
        "2e4b7e8d55e0e89181327dcef9811b02c60a387c3e313d8fb924ade9fcf2cf18"
    assert published_digest("2.24.0", "darwin-arm64") == \
        "4ad117f14f13dc6160f753e02830d57ad5053ea00827b06e03738a45a1697569"
    assert published_digest("2.24.1", "linux-amd64") == \
        "b7d2d09e30eb85ffb4f6ae0baba377dfa96c8ae028b70ae1cc8b9fdc463e78ba"
    assert published_digest("2.24.1", "darwin-amd64") == \
        "492a252bf131be2431db9506b8a685de2dfd6b22f0ff41897ddd30beb48f2699"
    assert published_digest("2.24.1", "darwin-arm64") == \
        "bf5ebf57365ba8b943a7fdd5ae49400643b8cd508d85798612206346ba300afc"
    assert published_digest("2.24.0", "linux-arm64") is None
    assert published_digest("2.25.0", "linux-amd64") is None
    assert len(binary.PUBLISHED_DIGESTS) == 6


OTHER = "cd" * 32


@pytest.mark.parametrize("text, expected", [
    ("%s  telepresence-linux-amd64\n%s  telepresence-darwin-arm64\n" % (HEX, OTHER), HEX),
    ("%s  telepresence-darwin-arm64\n%s *telepresence-linux-amd64\n" % (OTHER, HEX), HEX),
    ("%s  ./dist/telepresence-linux-amd64\n" % HEX, HEX),
    ("SHA256 (telepresence-linux-amd64) = %s\n" % HEX, HEX),
    ("# generated\n\n%s  telepresence-linux-amd64\n" % HEX.upper(), HEX),
    ("%s\n" % HEX, HEX),
    ("%s  telepresence-linux-amd64-old\n" % OTHER, None),
    ("%s  telepresence-linux-arm64\n%s  telepresence-darwin-amd64\n" % (OTHER, OTHER), None),
    ("<html>Not a checksum file</html>", None),
    ("", None),
    ("%s\n%s\n" % (HEX, OTHER), None),
])
def test_digest_from_checksum_file(text, expected):
    assert digest_from_checksum_file(text, "telepresence-linux-amd64") == expected


def test_sha256_of_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 200000)
    assert sha256_of_file(str(path)) == hashlib.sha256(b"x" * 200000).hexdigest()


# --- the download ----------------------------------------------------------------------------------

class FakeResponse:
    """A streamed HTTP body: read1 hands out at most ``piece`` bytes per call, like a socket."""

    def __init__(self, body, length=None, piece=10000, final_url=None, on_read=None):
        self.stream = io.BytesIO(body)
        self.headers = {"Content-Length": str(len(body) if length is None else length)}
        if length is False:
            self.headers = {}
        self.piece = piece
        self.final_url = final_url
        self.on_read = on_read
        self.reads = []
        self.closed = False

    def read1(self, size):
        self.reads.append(size)
        if self.on_read:
            self.on_read()
        return self.stream.read(min(size, self.piece))

    def geturl(self):
        return self.final_url

    def close(self):
        self.closed = True


class FakeNet:
    """open_url stand-in: answers each call with the next scripted outcome (a response or an exception)."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def __call__(self, url, **kwargs):
        self.calls.append((url, kwargs))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome.final_url is None:
            outcome.final_url = url
        return outcome


def http_error(url, code):
    return urllib.error.HTTPError(url, code, {404: "Not Found", 500: "Internal Server Error"}.get(code, "Error"),
                                  {}, None)


URL = "https://mirror.example/v2.24.0/telepresence-linux-amd64"
BODY = bytes(range(256)) * 1000


def downloader(net, retries=3, timeout=30, clock=None, allow_insecure_http=False):
    sleeps = []
    dl = Downloader(net, timeout, retries, allow_insecure_http=allow_insecure_http, sleep=sleeps.append,
                    clock=clock or (lambda: 0.0))
    return dl, sleeps


def test_fetch_streams_in_bounded_chunks_and_hashes():
    response = FakeResponse(BODY)
    net = FakeNet(response)
    dl, sleeps = downloader(net)
    handle = io.BytesIO()
    assert dl.fetch_to_file(URL, handle) == (hashlib.sha256(BODY).hexdigest(), len(BODY))
    assert handle.getvalue() == BODY
    assert max(response.reads) <= binary.CHUNK_SIZE and len(response.reads) > 10
    assert response.closed and sleeps == []
    url, kwargs = net.calls[0]
    assert url == URL
    assert kwargs["validate_certs"] is True and kwargs["timeout"] == 30 and kwargs["decompress"] is False
    assert kwargs["http_agent"].startswith("devloop.telepresence")


def test_fetch_404_is_never_retried_and_uses_the_given_message():
    net = FakeNet(http_error(URL, 404), FakeResponse(BODY))
    dl, sleeps = downloader(net)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO(), not_found="v9.9.9 has no artifact telepresence-linux-amd64 at " + URL)
    assert caught.value.msg == "v9.9.9 has no artifact telepresence-linux-amd64 at " + URL
    assert caught.value.status == 404 and len(net.calls) == 1 and sleeps == []


@pytest.mark.parametrize("code", [400, 401, 403, 410])
def test_fetch_other_4xx_not_retried(code):
    net = FakeNet(http_error(URL, code))
    dl, sleeps = downloader(net)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO())
    assert "HTTP %d" % code in caught.value.msg and len(net.calls) == 1 and sleeps == []


def test_fetch_500_then_ok_retries_with_backoff_and_restarts_the_file():
    net = FakeNet(http_error(URL, 500), FakeResponse(BODY, length=len(BODY) * 2), FakeResponse(BODY))
    dl, sleeps = downloader(net)
    handle = io.BytesIO()
    digest, size = dl.fetch_to_file(URL, handle)
    assert (digest, size) == (hashlib.sha256(BODY).hexdigest(), len(BODY))
    assert handle.getvalue() == BODY  # the cut-short second attempt left nothing behind
    assert sleeps == [1.0, 2.0] and dl.attempts == 3


def test_fetch_gives_up_after_retries_and_lists_every_failure():
    net = FakeNet(*[http_error(URL, 503)] * 4)
    dl, sleeps = downloader(net, retries=3)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO())
    assert sleeps == [1.0, 2.0, 4.0] and len(net.calls) == 4
    assert "gave up after 4 attempts" in caught.value.msg and "HTTP 503" in caught.value.msg


def test_fetch_backoff_is_capped():
    net = FakeNet(*[http_error(URL, 502)] * 8)
    dl, sleeps = downloader(net, retries=7)
    with pytest.raises(DownloadError):
        dl.fetch_to_file(URL, io.BytesIO())
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_fetch_zero_retries_means_one_attempt():
    net = FakeNet(http_error(URL, 500))
    dl, sleeps = downloader(net, retries=0)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO())
    assert len(net.calls) == 1 and sleeps == [] and "gave up" not in caught.value.msg


def test_fetch_truncated_body_is_an_error():
    net = FakeNet(FakeResponse(BODY[:1000], length=len(BODY)))
    dl, dummy = downloader(net, retries=0)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO())
    assert "cut short: received 1000 of the %d bytes" % len(BODY) in caught.value.msg


def test_fetch_without_content_length_accepts_what_arrives():
    net = FakeNet(FakeResponse(BODY, length=False))
    dl, dummy = downloader(net)
    assert dl.fetch_to_file(URL, io.BytesIO())[1] == len(BODY)


@pytest.mark.parametrize("error", [
    urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
    urllib.error.URLError(socket.timeout("timed out")),
    ConnectionResetError(104, "Connection reset by peer"),
    socket.timeout("timed out"),
])
def test_fetch_connection_problems_are_retried(error):
    net = FakeNet(error, FakeResponse(BODY))
    dl, sleeps = downloader(net)
    assert dl.fetch_to_file(URL, io.BytesIO())[1] == len(BODY)
    assert sleeps == [1.0]


def test_fetch_reset_mid_body_is_retried():
    def reset():
        raise ConnectionResetError(104, "Connection reset by peer")
    net = FakeNet(FakeResponse(BODY, on_read=reset), FakeResponse(BODY))
    dl, sleeps = downloader(net)
    handle = io.BytesIO()
    assert dl.fetch_to_file(URL, handle)[1] == len(BODY) and handle.getvalue() == BODY and sleeps == [1.0]


def test_fetch_certificate_error_is_not_retried():
    error = urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    net = FakeNet(error, FakeResponse(BODY))
    dl, sleeps = downloader(net)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO())
    assert "validate_certs" in caught.value.msg and len(net.calls) == 1 and sleeps == []


def test_fetch_slow_body_stops_at_the_deadline():
    now = [0.0]

    def tick():
        now[0] += 0.5  # every read takes half a second, like the mirror's `slow` fault
    net = FakeNet(FakeResponse(BODY, piece=1024, on_read=tick))
    dl, dummy = downloader(net, retries=0, timeout=3, clock=lambda: now[0])
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO())
    assert "did not finish within the timeout of 3 s" in caught.value.msg and caught.value.retryable
    assert now[0] <= 4.0


def test_fetch_refuses_a_redirect_to_plain_http():
    net = FakeNet(FakeResponse(BODY, final_url="http://evil.example/telepresence"))
    dl, dummy = downloader(net)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_to_file(URL, io.BytesIO())
    assert "redirected to plain http" in caught.value.msg and len(net.calls) == 1


def test_fetch_allows_a_redirect_to_http_when_insecure_is_allowed():
    net = FakeNet(FakeResponse(BODY, final_url="http://mirror.example/telepresence"))
    dl, dummy = downloader(net, allow_insecure_http=True)
    assert dl.fetch_to_file(URL, io.BytesIO())[1] == len(BODY)


def test_fetch_text_reads_a_checksum_file_and_refuses_huge_ones():
    text = "%s  telepresence-linux-amd64\n" % HEX
    dl, dummy = downloader(FakeNet(FakeResponse(text.encode())))
    assert dl.fetch_text("https://m/sums") == text
    dl, dummy = downloader(FakeNet(FakeResponse(b"x" * 5000)), retries=0)
    with pytest.raises(DownloadError) as caught:
        dl.fetch_text("https://m/sums", limit=1000)
    assert "not a checksum file" in caught.value.msg


# --- the folder --------------------------------------------------------------------------------------

def test_directory_lock_excludes_a_second_holder_and_leaves_nothing(tmp_path):
    first = DirectoryLock(str(tmp_path), wait_seconds=5)
    first.acquire()
    now = [0.0]
    second = DirectoryLock(str(tmp_path), wait_seconds=1, sleep=lambda s: now.__setitem__(0, now[0] + s),
                           clock=lambda: now[0])
    with pytest.raises(BinaryError) as caught:
        second.acquire()
    assert "another run has been installing into %s" % tmp_path in str(caught.value)
    assert not second.held
    first.sync()
    first.release()
    second.acquire()
    assert second.held
    second.release()
    assert os.listdir(str(tmp_path)) == []


def test_remove_stale_downloads_only_touches_our_temporary_files(tmp_path):
    for name in (".telepresence-abcd_123.download", ".telepresence-zz9y8x7w.download", "telepresence",
                 ".telepresence-notours", ".telepresence-abcd_123.download.keep"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_downloads(str(tmp_path))
    assert sorted(os.path.basename(path) for path in removed) == [
        ".telepresence-abcd_123.download", ".telepresence-zz9y8x7w.download"]
    assert sorted(os.listdir(str(tmp_path))) == [".telepresence-abcd_123.download.keep", ".telepresence-notours",
                                                 "telepresence"]


def test_nearest_existing_folder(tmp_path):
    assert nearest_existing_folder(str(tmp_path / "a" / "b" / "c")) == str(tmp_path)
    assert nearest_existing_folder(str(tmp_path)) == str(tmp_path)
