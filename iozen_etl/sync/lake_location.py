"""Where the lake lives: a local folder, or an object store opened by pyarrow's filesystems.

``DataPaths.lake`` is a path or a URI. A URI naming an object store (``s3://bucket/prefix``, or
``gs://``, ``abfs://``) opens with ``pyarrow.fs.FileSystem.from_uri``; its credentials come only
from the provider's own environment variables and credential chain (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance roles), never from
the URI, which is configuration that gets printed. A URI that carries one is refused without
repeating it. A ``file://`` URI is a local folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

# Schemes whose user part (before "@") can only be an access key; with Azure's abfs[s] it names
# the container.
_KEY_IN_USER_PART = frozenset({"s3", "gs", "gcs"})
# A query parameter whose name holds one of these carries a secret (pyarrow rejects most
# unknown ones anyway, but some stores take credentials in the query).
_SECRET_WORDS = ("secret", "password", "token", "key", "sig", "credential")


class LakeLocationError(ValueError):
    """The lake's location cannot be used; the message never repeats a credential."""


@dataclass(frozen=True)
class ObjectStore:
    """The lake's objects: ``<base>/<table>/...`` in ``filesystem`` (``base`` is
    ``bucket/prefix`` for S3, which is also how an object is named in errors)."""

    filesystem: pafs.FileSystem
    base: PurePosixPath
    uri: str  # without credentials (refused), so safe to print

    def path(self, rel_path: str) -> str:
        """An object's path in ``filesystem``, from its path relative to the lake root."""
        return f"{self.base}/{rel_path}"


def locate(location: str) -> Path | ObjectStore:
    """The local folder of ``location``, or the object store it names."""
    if "://" not in location:
        return Path(location)
    _refuse_credentials(location)
    try:
        filesystem, base = pafs.FileSystem.from_uri(location)
    except (OSError, pa.ArrowException) as error:
        reason = str(error).replace(location, "the URI")
        raise LakeLocationError(f"the lake's URI cannot be opened: {reason}") from None
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(base)
    if filesystem.type_name == "hdfs":
        # HDFS shows a file while it is being written: a reader could load half of one.
        raise LakeLocationError(
            "the lake cannot live on HDFS: use a local folder or an object store"
        )
    return ObjectStore(filesystem, PurePosixPath(base.rstrip("/")), location)


def _refuse_credentials(uri: str) -> None:
    parts = urlsplit(uri)
    user_part = "@" in parts.netloc and parts.scheme in _KEY_IN_USER_PART
    secret_query = any(
        word in name.lower() for name, _ in parse_qsl(parts.query) for word in _SECRET_WORDS
    )
    if parts.password is not None or user_part or secret_query:
        raise LakeLocationError(
            f"the lake's URI ({parts.scheme}://...) carries credentials; it must not. Give them "
            "through the store's environment or credential chain instead (for S3: "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)"
        )
