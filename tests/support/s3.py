"""A real S3-compatible server for the object-lake tests: moto's, in a process of its own on a
free loopback port, with fake credentials given the way a deployment gives real ones (the AWS
environment variables)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.fs as pafs
import pytest

from iozen_etl.api import IozenClient
from iozen_etl.settings import DataPaths
from tests.support.children import _output_to
from tests.support.receiver import free_port
from tests.support.variants import run_pipeline

REGION = "us-east-1"
# moto accepts any credentials; these stand for real ones and must never be printed.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "iozen-test-access-key",
    "AWS_SECRET_ACCESS_KEY": "iozen-test-secret-access-key",
    # No instance-metadata lookups: the credentials above are the whole chain.
    "AWS_EC2_METADATA_DISABLED": "true",
}
START_TIMEOUT_S = 30.0
_S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass
class S3Server:
    """moto's server on ``endpoint`` (``127.0.0.1:<port>``)."""

    endpoint: str
    process: subprocess.Popen[bytes]

    def lake_uri(self, bucket: str, prefix: str = "lake") -> str:
        """The lake URI a deployment would set as ``IOZEN_LAKE_URI`` for this server."""
        return (
            f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http&region={REGION}"
        )

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=self.endpoint,
            scheme="http",
            region=REGION,
            allow_bucket_creation=True,
        )

    def create_bucket(self, bucket: str) -> None:
        self.filesystem().create_dir(bucket)

    def uploads_in_progress(self, bucket: str) -> set[str]:
        """Ids of the multipart uploads started and neither completed nor aborted (S3's
        ListMultipartUploads; moto answers it unsigned)."""
        response = httpx.get(f"http://{self.endpoint}/{bucket}?uploads", timeout=10)
        response.raise_for_status()
        root = ET.fromstring(response.content)
        return {str(upload.text) for upload in root.iter(f"{_S3_XML}UploadId")}

    def upload_starts(self, bucket: str) -> Callable[[], bool]:
        """A moment (``tests.support.crashes``): an upload started since this call is in
        progress."""
        before = self.uploads_in_progress(bucket)
        return lambda: bool(self.uploads_in_progress(bucket) - before)


@contextmanager
def serve_s3(log: Path) -> Iterator[S3Server]:
    """moto's server until the block ends; its request log goes to ``log``."""
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(f"127.0.0.1:{port}", process)
    try:
        _wait_until_it_answers(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_it_answers(server: S3Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"moto's server exited with {server.process.returncode}")
        try:
            httpx.get(f"http://{server.endpoint}/", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def s3_lake(server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on ``server``, the fake credentials in the environment for the test, and
    the lake URI for it."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server.create_bucket(bucket)
    return server.lake_uri(bucket)


def object_sync_child(
    output: str, data_dir: str, lake_uri: str, base_url: str, api_key: str, *credentials: str
) -> None:
    """``sync_child`` with the lake in an object store: bots, submissions and webhooks into
    ``lake_uri``, then the load. The credentials come as ``NAME=value`` arguments over the fork
    server's pipe, as the API key does, and go into this process's environment only."""
    _output_to(output)
    for item in credentials:
        name, _, value = item.partition("=")
        os.environ[name] = value
    paths = DataPaths(Path(data_dir), lake_uri=lake_uri)
    with IozenClient(api_key, base_url) as client:
        report = run_pipeline(client, paths)
    print(f"sync: loaded {report.load.load_id}, published {report.load.published}")
