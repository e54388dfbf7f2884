"""completer.storage.gcs: byte-capped reads of one generation, and the one error table."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage import Client

from completer.errors import InternalError, InvalidRequest
from completer.events.gcs import GcsObject
from completer.storage.gcs import (
    GcsReader,
    ObjectGone,
    ObjectUnreadable,
    StorageUnavailable,
    translate_gcs_error,
)
from tests.support.gcs import PROJECT, GcsEmulator, gcs_emulator
from tests.support.services import free_port

URI = "gs://b/n#1"


@pytest.mark.parametrize(
    ("raised", "expected", "transient"),
    [
        (gexc.NotFound("no such object"), ObjectGone, False),
        (gexc.Forbidden("denied"), StorageUnavailable, True),
        (gexc.Unauthorized("who"), StorageUnavailable, True),
        (gexc.ServiceUnavailable("busy"), StorageUnavailable, True),
        (gexc.InternalServerError("oops"), StorageUnavailable, True),
        (gexc.TooManyRequests("slow down"), StorageUnavailable, True),
        (gexc.RetryError("gave up", cause=None), StorageUnavailable, True),
        (requests.ConnectionError("refused"), StorageUnavailable, True),
        (requests.Timeout("slow"), StorageUnavailable, True),
        (gexc.BadRequest("bad"), ObjectUnreadable, False),
        (RuntimeError("bug"), InternalError, True),
    ],
)
def test_error_table(raised: Exception, expected: type, transient: bool):
    translated = translate_gcs_error(raised, URI)
    assert type(translated) is expected
    assert translated.transient is transient
    assert isinstance(translated, InvalidRequest) is not transient


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


def test_reads_at_most_one_byte_over_the_limit(gcs: GcsEmulator):
    blob = gcs.bucket().blob("big.json")
    blob.upload_from_string(b"x" * 1000)
    obj = GcsObject(
        bucket=blob.bucket.name, name="big.json", generation=str(blob.generation), size=1000
    )
    reader = GcsReader(gcs.client)
    assert reader.read(obj, 10) == b"x" * 11
    assert reader.read(obj, 5000) == b"x" * 1000


def test_an_unreachable_storage_is_transient():
    dead = Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{free_port()}"),
    )
    obj = GcsObject(bucket="b", name="n.json", generation="1", size=5)
    with pytest.raises(StorageUnavailable) as info:
        GcsReader(dead, deadline=1.0).read(obj, 10)
    assert info.value.transient


def test_the_read_names_the_generation_and_a_range_on_the_wire():
    """The emulator ignores ``generation``; a recording server shows what the reader asks for."""
    seen: list[tuple[str, str | None]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Range")))
            body = b"0123456789A"
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-10/{len(body) + 100}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{server.server_port}"),
        )
        obj = GcsObject(bucket="b", name="in/a b.json", generation="1764321011123456", size=111)
        assert GcsReader(client).read(obj, 10) == b"0123456789A"
    finally:
        server.shutdown()
        server.server_close()
    # google-cloud-storage may also fetch the bucket's metadata in the background (its
    # observability cache); the object itself is read once.
    [(path, range_header)] = [(p, r) for p, r in seen if p.startswith("/download/")]
    query = parse_qs(urlsplit(path).query)
    assert urlsplit(path).path.endswith("/b/b/o/in%2Fa%20b.json")
    assert query["generation"] == ["1764321011123456"]
    assert range_header == "bytes=0-10"
