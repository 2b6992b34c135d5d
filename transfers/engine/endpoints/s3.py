"""An S3 bucket (any S3-compatible endpoint URL) under a prefix: a farm account's storage, either end of a run.

Uploads are one multipart upload per file, in parts of `part_size` (send.py sends every file to an
endpoint with a `part_size` in ranges of exactly that size, one part per range):

* The partial file buffers each part's bytes in memory until the part is whole, then uploads it
  (`ContentMD5`, and the ETag the server answers compared with the md5 of what was sent). Parts of
  different ranges upload from their own threads at once.
* The upload id and each finished part (number, ETag, size, md5 and rvweb's xxh3 of its bytes) are
  recorded in a small object beside the file, `.<name>.rvpart`, after every part: a killed worker's
  successor finds them, checks them against the server's ListParts, and sends only the other parts.
  A part begun but not finished when a send stops is kept in `.<name>.rvpart.tail` (it is the piece a
  resume continues; S3 cannot hold a part shorter than the rest in an upload until it is the last).
* `partial_digest` of a finished part is its recorded xxh3 (the server confirmed the part's md5, the
  md5 and the xxh3 were taken of the same bytes); of bytes still held here, their hash. S3 cannot
  read back an unfinished upload: a range that is neither gets an empty digest, which matches
  nothing, so the engine sends it again.
* `read_at` on a partial gives back the bytes held for the part being written (and a part just
  uploaded, until its bytes were read back once): the engine's read-back check then covers the
  buffering; the server's md5 per part covers the wire.
* `finalize` checks the size and the checksum (the ranged xxh3 over the parts' xxh3 digests; a plain
  one for a file held whole here), completes the upload with the parts the server listed, and keeps
  rvweb's checksum as the object's metadata `x-amz-meta-rvweb-xxh3`. A file of one part or less is one
  PutObject (`ContentMD5`, metadata). Nothing is at the final key before that.

One writer per key within a process (PartialBusy); S3 has no lock to keep two machines apart on one
key, which the runner's job locks do. An upload abandoned without its record (`.rvpart` lost) stays
unfinished on the server until a discard of its key aborts it, or the bucket's lifecycle rule does.

Downloads read with ranged GETs, a stream per reader position (ranges read in parallel each get
their own), and `now()` is a HeadObject whose ETag stands for the inode: a rewrite shows.

Errors become OSErrors the engine classifies: unreachable endpoint, timeouts and 5xx are retryable
("S3 endpoint http://... unreachable"), refused credentials are PermissionError ("access denied for key
id AK..."), a missing bucket says so. The secret never appears in a message.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import xxhash

from transfers.engine import hashing
from transfers.engine.endpoints.base import PartialBusy, PartialFile, Stamp, StoredFile, VerifyFailed
from transfers.engine.paths import PARTIAL_SUFFIX, PathRefused, clean_server_path

__all__ = ["UNLIMITED", "ProbeStep", "S3Bucket", "S3Partial", "S3SourceFile", "probe"]

logger = logging.getLogger(__name__)

MIB = 1 << 20
MAX_PARTS = 10_000  # of one multipart upload (S3's limit)
UNLIMITED = 1 << 60  # free_space of a bucket: S3 has no such limit to tell
META_KEY = "rvweb-xxh3"  # x-amz-meta-rvweb-xxh3: rvweb's checksum of the object
_COPY_LIMIT = 5 << 30  # the largest object CopyObject (the metadata's second step of a multipart) takes
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_READ_WINDOW = 64 * MIB  # one ranged GET serves this many bytes of sequential reads


# --- errors ---------------------------------------------------------------------------------------


def _code(exc: Any) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return str(error.get("Code") or status or ""), status


_DENIED = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "403", "InvalidToken", "ExpiredToken"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


class _Failure:
    """Turns botocore's exceptions into OSErrors with messages people can act on (never the secret)."""

    def __init__(self, endpoint_url: str, bucket: str, key_id: str) -> None:
        self.endpoint_url, self.bucket, self.key_id = endpoint_url, bucket, key_id

    def __call__(self, exc: BaseException, what: str = "") -> OSError:
        from botocore import exceptions as bx
        from urllib3 import exceptions as ux

        url = self.endpoint_url
        about = f" ({what})" if what else ""
        if isinstance(exc, bx.ConnectTimeoutError | bx.ReadTimeoutError):
            return TimeoutError(errno.ETIMEDOUT, f"S3 endpoint {url} timed out{about}")
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError | bx.HTTPClientError):
            return ConnectionError(errno.ECONNREFUSED, f"S3 endpoint {url} unreachable{about}")
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return PermissionError(errno.EACCES, f"no S3 credentials for {url}")
        if isinstance(exc, bx.ClientError):
            code, status = _code(exc)
            if code == "NoSuchBucket":  # ENXIO, not ENOENT: "file not found" would say the wrong thing
                return OSError(errno.ENXIO, f"bucket {self.bucket} does not exist on {url}")
            if code == "PreconditionFailed" or status == 412:
                return OSError(errno.ESTALE, f"the object changed on {url} while it was read{about}")
            if code in _DENIED or status == 403:
                return PermissionError(errno.EACCES, f"access denied for key id {self.key_id} on {url} ({code}){about}")
            if code in _MISSING or status == 404:
                return FileNotFoundError(errno.ENOENT, f"not found on {url}{about}")
            if status >= 500 or code in {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}:
                return OSError(errno.EIO, f"S3 endpoint {url} answered {code or status}{about}; try again")
            return OSError(errno.EIO, f"S3 endpoint {url} refused{about}: {code or status}")
        if isinstance(exc, bx.BotoCoreError):
            return OSError(errno.EIO, f"S3 endpoint {url}: {type(exc).__name__}{about}")
        if isinstance(exc, ux.HTTPError):  # a connection broken mid-body: what a retry is for
            return ConnectionError(errno.ECONNRESET, f"S3 endpoint {url}: the connection broke{about}")
        if isinstance(exc, OSError):
            return exc
        return OSError(errno.EIO, f"S3 endpoint {url}: {type(exc).__name__}{about}")


def _is_missing(exc: BaseException) -> bool:
    code, status = _code(exc)
    return code in _MISSING or (status == 404 and code != "NoSuchBucket")


def _client_errors() -> tuple[type[BaseException], ...]:
    """What a call may raise: botocore's errors, and a connection broken while botocore reads a body
    (urllib3's ProtocolError, an OSError), which it does not wrap."""
    from botocore import exceptions as bx
    from urllib3 import exceptions as ux

    return (bx.BotoCoreError, bx.ClientError, ux.HTTPError, OSError)


def _make_client(
    endpoint_url: str,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    *,
    connections: int = 16,
    path_style: bool = True,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    retries: int = 2,
) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path" if path_style else "auto"},
        max_pool_connections=connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1 + retries, "mode": "standard"},  # bounded: the engine retries files
        # the md5 of every part is sent and checked; the newer CRC trailers break S3-compatible servers
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
        config=config,
    )


# --- stat results ---------------------------------------------------------------------------------


def _mtime_ns(modified: Any) -> int:
    """LastModified as ns, to the second (a HeadObject's precision: list and head then agree)."""
    return int(calendar.timegm(modified.utctimetuple())) * 10**9


def _info(size: int, mtime_ns: int, etag: str, dev: int) -> os.stat_result:
    inode = int(hashlib.md5(etag.encode(), usedforsecurity=False).hexdigest()[:15], 16)  # a rewrite: another ETag
    seconds = mtime_ns // 10**9
    fields = (0o100644, inode, dev, 1, 0, 0, size, seconds, seconds, seconds)
    return os.stat_result(fields, {"st_mtime_ns": mtime_ns, "st_ctime_ns": mtime_ns})


def _checksum(data: bytes | bytearray | memoryview, *, like: str) -> str:
    range_size = hashing.range_size_of(like)
    if range_size is None:
        return hashing.plain(xxhash.xxh3_128(data).hexdigest())
    view = memoryview(data)
    return hashing.ranged(
        range_size, (xxhash.xxh3_128(view[s : s + range_size]).digest() for s in range(0, len(view), range_size))
    )


# --- the partial file -----------------------------------------------------------------------------


@dataclass
class _Buffer:
    """A part's bytes while it is written: `spans` are the written [start, end) within it, merged."""

    data: bytearray
    spans: list[list[int]]

    def add(self, start: int, end: int) -> None:
        spans = sorted([*self.spans, [start, end]])
        merged: list[list[int]] = []
        for span in spans:
            if merged and span[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], span[1])
            else:
                merged.append(list(span))
        self.spans = merged

    def covers(self, length: int) -> bool:
        return self.spans == [[0, length]] or (length == 0)

    @property
    def end(self) -> int:
        return self.spans[-1][1] if self.spans else 0


class S3Partial:
    """The partial file of one key: parts uploaded as they complete, the rest held in memory."""

    def __init__(self, bucket: S3Bucket, path: str, state: dict[str, Any], length: int, sized: bool) -> None:
        self.bucket, self.path, self.state = bucket, path, state
        self.part_size: int = bucket.part_size
        self.length, self.sized = length, sized
        self.buffers: dict[int, _Buffer] = {}
        self.readback: dict[int, list[Any]] = {}  # index -> [bytes, bytes read back]
        self.lock = threading.RLock()
        self.saving = threading.Lock()
        self.done = False  # finalized or discarded: nothing more to keep
        self.recorded = bool(state.get("recorded"))  # its record (or tail) may be in the bucket: delete at the end
        self.closed = False
        self.running: Any = xxhash.xxh3_128() if not state["parts"] else None  # a plain xxh3, parts in order
        self.running_next = 0

    # geometry

    def part_length(self, index: int) -> int | None:
        """Bytes in part `index` when known (a sized partial's last part is shorter; unsized: not yet)."""
        start = index * self.part_size
        if self.sized:
            return max(0, min(self.part_size, self.length - start))
        return self.part_size

    def multipart(self) -> bool:
        """Whether whole parts go up as they complete (a sized partial of one part is one PutObject)."""
        return not self.sized or self.length > self.part_size

    def finished(self) -> dict[int, dict[str, Any]]:
        return {int(n) - 1: part for n, part in self.state["parts"].items()}

    def consecutive(self) -> int:
        """Bytes from 0 in finished parts, without a gap."""
        parts, index, total = self.finished(), 0, 0
        while index in parts:
            total += int(parts[index]["size"])
            index += 1
        return total

    # writing

    def write_at(self, data: bytes | memoryview, position: int) -> int:
        view = memoryview(data).cast("B")
        size, whole = self.part_size, len(view)
        ready: list[tuple[int, bytearray]] = []
        with self.lock:
            if self.done or self.closed:
                raise OSError(errno.EBADF, f"{self.path}: the partial file was closed")
            offset = 0
            while offset < whole:
                at = position + offset
                index, inner = divmod(at, size)
                count = min(size - inner, whole - offset)
                if self.state["parts"].pop(str(index + 1), None) is not None:
                    self.running = None  # a finished part written again (not trusted on resume): it is sent again
                buffer = self.buffers.get(index)
                if buffer is None:
                    buffer = self.buffers[index] = _Buffer(bytearray(self._buffer_size(index)), [])
                if len(buffer.data) < inner + count:
                    buffer.data.extend(bytes(inner + count - len(buffer.data)))
                buffer.data[inner : inner + count] = view[offset : offset + count]
                buffer.add(inner, inner + count)
                self.length = max(self.length, at + count) if not self.sized else self.length
                length = self.part_length(index)
                if self.multipart() and length and buffer.covers(length):
                    del self.buffers[index]
                    ready.append((index, buffer.data if len(buffer.data) == length else buffer.data[:length]))
                offset += count
        for index, part in ready:
            self._upload(index, part)
        return whole

    def _buffer_size(self, index: int) -> int:
        length = self.part_length(index)
        return length if self.sized and length is not None else 0

    def _upload(self, index: int, data: bytearray) -> None:
        bucket, number = self.bucket, index + 1
        upload_id = self._upload_id()
        md5 = hashlib.md5(data, usedforsecurity=False)
        part_xxh3 = xxhash.xxh3_128(data).hexdigest()
        try:
            reply = bucket.client().upload_part(
                Bucket=bucket.bucket,
                Key=bucket.key(self.path),
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
            )
        except _client_errors() as exc:
            code, status = _code(exc)
            if code == "NotImplemented" or status == 501:
                self._start_over(upload_id)
                raise OSError(
                    errno.EIO,
                    f"S3 endpoint {bucket.endpoint_url} cannot take part {number} of {self.path} again"
                    " in an unfinished upload: the file starts over",
                ) from exc
            raise bucket.failure(exc, f"part {number} of {self.path}") from exc
        etag = str(reply.get("ETag", "")).strip('"')
        if _MD5.match(etag) and etag != md5.hexdigest():
            raise OSError(errno.EIO, f"{self.path}: part {number} arrived as md5 {etag}, {md5.hexdigest()} was sent")
        with self.lock:
            if self.done:
                return
            self.state["parts"][str(number)] = {"etag": etag, "size": len(data), "md5": md5.hexdigest(), "xxh3": part_xxh3}
            self.readback[index] = [data, 0]
            if self.running is not None and index == self.running_next:
                self.running.update(data)
                self.running_next += 1
            else:
                self.running = None
            marked = bool(self.state.get("marker"))
        if not marked:
            self.save()  # with a range marker, its write right after this part's range records the part too

    def _start_over(self, upload_id: str) -> None:
        """Forget the upload (some servers, rclone's, cannot replace a part they streamed on): the next attempt begins anew."""
        with self.lock:
            self.state.update(upload_id=None, parts={}, marker=None)
            self.running = None
        with self.bucket._lock:
            self.bucket._markers.pop(self.path, None)
        self.save()
        with contextlib.suppress(OSError):
            self.bucket._abort(self.path, upload_id)

    def _upload_id(self) -> str:
        with self.lock:
            upload_id = self.state.get("upload_id")
            if upload_id:
                return str(upload_id)
            bucket = self.bucket
            try:
                reply = bucket.client().create_multipart_upload(Bucket=bucket.bucket, Key=bucket.key(self.path))
            except _client_errors() as exc:
                raise bucket.failure(exc, f"starting the upload of {self.path}") from exc
            self.state["upload_id"] = str(reply["UploadId"])
        self.save()
        return str(self.state["upload_id"])

    def save(self, tail: bytes | None = None) -> None:
        """Record the upload id, the finished parts, the range marker (and the tail) beside the file."""
        with self.saving:
            with self.lock:
                if self.done:
                    return
                record = json.dumps({**self.state, "part_size": self.part_size}).encode()
            self.recorded = True
            self.bucket.put_own(self.path, "", record)
            if tail is not None:
                self.bucket.put_own(self.path, ".tail", tail)

    # reading back

    def read_at(self, buffer: memoryview, position: int) -> int:
        with self.lock:
            want = min(len(buffer), max(0, self.length - position))
            done = 0
            while done < want:
                index, inner = divmod(position + done, self.part_size)
                count = min(self.part_size - inner, want - done)
                held = self.buffers.get(index)
                if held is not None:
                    piece = held.data[inner : inner + count]
                    buffer[done : done + len(piece)] = piece
                    if len(piece) < count:
                        buffer[done + len(piece) : done + count] = bytes(count - len(piece))
                elif index in self.readback:
                    record = self.readback[index]
                    buffer[done : done + count] = record[0][inner : inner + count]
                    record[1] += count
                    if record[1] >= len(record[0]):
                        del self.readback[index]  # read back once: let it go
                else:
                    raise OSError(
                        errno.EIO,
                        f"{self.path}: part {index + 1} was uploaded; S3 cannot read it back before the upload completes",
                    )
                done += count
            return done

    def digest(self, start: int, length: int) -> bytes:
        """xxh3-128 of [start, start+length): a finished part's recorded one, or of bytes held here; else b""."""
        with self.lock:
            index, inner = divmod(start, self.part_size)
            part = self.state["parts"].get(str(index + 1))
            if part is not None:
                return bytes.fromhex(part["xxh3"]) if inner == 0 and int(part["size"]) == length else b""
            held = self.buffers.get(index)
            if held is not None and inner + length <= self.part_size:
                data = bytes(held.data[inner : inner + length])
                return xxhash.xxh3_128(data + bytes(max(0, min(length, self.length - start) - len(data)))).digest()
            return b""

    def truncate(self, size: int | None = None, /) -> int:
        with self.lock:
            size = self.length if size is None else size
            self._cut(size)
            self.length = size
            return size

    def _cut(self, size: int) -> None:
        """Drop what lies at or beyond `size` (a part that holds `size` inside it is lost: its bytes are gone)."""
        for number in list(self.state["parts"]):
            if int(number) * self.part_size > size:
                del self.state["parts"][number]
        for index in list(self.buffers):
            start = index * self.part_size
            if start >= size:
                del self.buffers[index]
            elif start + len(self.buffers[index].data) > size:
                held = self.buffers[index]
                del held.data[size - start :]
                held.spans = [[a, min(b, size - start)] for a, b in held.spans if a < size - start]
        self.readback.clear()
        if self.state["parts"]:
            self.running = None

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an S3 upload has no descriptor")

    # the end

    def tail(self) -> tuple[int, bytes] | None:
        """The part right after the consecutive finished ones, as far as it was written (kept on close)."""
        start = self.consecutive()
        index = start // self.part_size
        held = self.buffers.get(index)
        if held is None or start % self.part_size or not held.spans:
            return None
        return start, bytes(held.data[: held.end])  # to its last written byte (a hole before it: zeros)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        try:
            if not self.done:
                # a sized partial of several parts redoes an unfinished range whole: its piece is not kept
                tail = self.tail() if not (self.sized and self.multipart()) else None
                with self.lock:
                    self.state["tail"] = [tail[0], len(tail[1])] if tail else None
                    self.state["length"] = self.length
                    worth = bool(self.state["parts"] or tail or self.state.get("upload_id") or self.state.get("marker"))
                if worth:
                    try:
                        self.save(tail[1] if tail else None)
                    except OSError as exc:  # close() runs in `finally`: it must not hide why the send ended
                        logger.warning("%s: the record of its unfinished upload was not kept: %s", self.path, exc)
        finally:
            self.buffers.clear()
            self.readback.clear()
            self.bucket.let_go(self.path, self)

    def __enter__(self) -> S3Partial:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


# --- reading a stored object ----------------------------------------------------------------------


class S3SourceFile:
    """An object opened for reading: ranged GETs, one stream per reader's position (ranges in parallel)."""

    def __init__(self, bucket: S3Bucket, path: str, info: os.stat_result, etag: str = "") -> None:
        self.bucket, self.path, self.info, self.etag = bucket, path, info, etag
        self._streams: dict[int, tuple[Any, int]] = {}  # next position -> (body, end)
        self._lock = threading.Lock()
        self._closed = False

    def read_at(self, buffer: memoryview, position: int) -> int:
        size = self.info.st_size
        want = min(len(buffer), max(0, size - position))
        if want == 0:
            return 0
        with self._lock:
            stream = self._streams.pop(position, None)
        if stream is None:
            end = min(size, position + max(want, _READ_WINDOW))
            stream = (self.bucket.get_range(self.path, position, end, self.etag), end)
        body, end = stream
        done = 0
        try:
            while done < want:
                chunk = body.read(min(want - done, end - position - done))
                if not chunk:
                    break
                buffer[done : done + len(chunk)] = chunk
                done += len(chunk)
        except Exception as exc:  # a timeout, a connection broken mid-body (urllib3's own errors too)
            body.close()
            raise self.bucket.failure(exc, f"reading {self.path}") from exc
        if position + done < end and done == want:
            with self._lock:
                if not self._closed:
                    self._streams[position + done] = (body, end)
                    return done
        body.close()
        return done

    def now(self) -> os.stat_result:
        return self.bucket.stat_source(self.path)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an S3 object has no descriptor")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            streams, self._streams = list(self._streams.values()), {}
        for body, _ in streams:
            with contextlib.suppress(Exception):
                body.close()


# --- the endpoint ---------------------------------------------------------------------------------


class S3Bucket:
    """A bucket of an S3-compatible endpoint, under `prefix`: an Endpoint (both ends of a run).

    Settings: `endpoint_url` (http(s)://host:port), `bucket`, `prefix` (a folder in it; nothing outside
    it is ever touched), the key pair, `region`. Tuning: `part_size` (bytes of each multipart part,
    at least 5 MiB on AWS), `connections` (the HTTP pool), `path_style`, `connect_timeout`,
    `read_timeout` (seconds), `retries` (botocore's own, per request; the engine retries files),
    `checksum_metadata` (keep rvweb's checksum as metadata of a multipart object too: known only at
    its end, it costs a CopyObject of the object onto itself, server-side; a PutObject carries it free).
    """

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        prefix: str = "",
        region: str = "us-east-1",
        label: str = "the S3 bucket",
        where: str = "the S3 bucket",
        part_size: int = 16 * MIB,
        connections: int = 16,
        path_style: bool = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retries: int = 2,
        checksum_metadata: bool = True,
    ) -> None:
        if not re.match(r"^https?://[^/\s]+", endpoint_url or ""):
            raise ValueError(f"S3 endpoint URL must be http(s)://host[:port], not {endpoint_url!r}")
        if not bucket or "/" in bucket:
            raise ValueError(f"S3 bucket name {bucket!r} is not a bucket name")
        if part_size < 1:
            raise ValueError("part_size must be positive")
        self.endpoint_url, self.bucket, self.region = endpoint_url.rstrip("/"), bucket, region
        self.prefix = clean_server_path(prefix) if prefix.strip("/\\") else ""
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self.label, self.where = label, where
        self.part_size = part_size
        self.checksum_metadata = checksum_metadata
        self._tuning: dict[str, Any] = {
            "connections": connections,
            "path_style": path_style,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": retries,
        }
        self.failure = _Failure(self.endpoint_url, bucket, access_key_id)
        self._client: Any = None
        self._lock = threading.Lock()
        self._writers: dict[str, S3Partial] = {}
        self._markers: dict[str, bytes] = {}
        self._bucket_seen = False
        self._dev = int(hashlib.md5(f"{self.endpoint_url}/{bucket}".encode(), usedforsecurity=False).hexdigest()[:7], 16)

    def __repr__(self) -> str:
        return f"S3Bucket({self.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"  # never the secret

    # plumbing

    def client(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = _make_client(self.endpoint_url, self.access_key_id, self._secret, self.region, **self._tuning)
                client = self._client
        return client

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _own(self, path: str, suffix: str) -> str:
        folder, _, name = path.rpartition("/")
        own = f".{name}{PARTIAL_SUFFIX}{suffix}"
        return self.key(f"{folder}/{own}" if folder else own)

    def put_own(self, path: str, suffix: str, data: bytes) -> None:
        try:
            self.client().put_object(Bucket=self.bucket, Key=self._own(path, suffix), Body=data)
        except _client_errors() as exc:
            raise self.failure(exc, f"recording the upload of {path}") from exc

    def _get_own(self, path: str, suffix: str) -> bytes | None:
        try:
            reply = self.client().get_object(Bucket=self.bucket, Key=self._own(path, suffix))
            return bytes(reply["Body"].read())
        except _client_errors() as exc:
            if _is_missing(exc):
                return None
            raise self.failure(exc, f"reading the record of {path}") from exc

    def _delete(self, key: str) -> None:
        try:
            self.client().delete_object(Bucket=self.bucket, Key=key)
        except _client_errors() as exc:
            if not _is_missing(exc):
                raise self.failure(exc, f"deleting {key}") from exc

    def _head(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self.client().head_object(Bucket=self.bucket, Key=self.key(path)))
        except _client_errors() as exc:
            if not _is_missing(exc):
                raise self.failure(exc, path) from exc
        self._bucket_exists()  # a HEAD's 404 has no body: a missing bucket looks like a missing file
        return None

    def _bucket_exists(self) -> None:
        if self._bucket_seen:
            return
        try:
            self.client().list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        except _client_errors() as exc:
            raise self.failure(exc, "looking for the bucket") from exc
        self._bucket_seen = True

    def get_range(self, path: str, start: int, end: int, etag: str = "") -> Any:
        """The body of [start, end) of the object; `etag`: only while it is still that version (412 else)."""
        more = {"IfMatch": etag} if etag else {}
        try:
            reply = self.client().get_object(Bucket=self.bucket, Key=self.key(path), Range=f"bytes={start}-{end - 1}", **more)
        except _client_errors() as exc:
            if _is_missing(exc):
                raise FileNotFoundError(errno.ENOENT, f"file not found on {self.where}", path) from exc
            raise self.failure(exc, f"reading {path}") from exc
        return reply["Body"]

    def let_go(self, path: str, handle: S3Partial) -> None:
        with self._lock:
            if self._writers.get(path) is handle:
                del self._writers[path]

    # destination: what is stored

    def stat(self, path: str) -> StoredFile | None:
        key = clean_server_path(path)
        head = self._head(key)
        return StoredFile(key, int(head["ContentLength"]), _mtime_ns(head["LastModified"])) if head else None

    def has(self, path: str) -> bool:
        return self.stat(path) is not None

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            arguments["Delimiter"] = delimiter
        try:
            yield from self.client().get_paginator("list_objects_v2").paginate(**arguments)
        except _client_errors() as exc:
            raise self.failure(exc, f"listing {prefix or '/'}") from exc

    def names(self, folder: str) -> set[str]:
        base = clean_server_path(folder) if folder.strip("/\\") else ""
        start = f"{self.key(base)}/" if base else (f"{self.prefix}/" if self.prefix else "")
        found = set()
        for page in self._pages(start, "/"):
            for item in page.get("Contents") or ():
                name = str(item["Key"])[len(start) :]
                if name and PARTIAL_SUFFIX not in name:
                    found.add(name)
        return found

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        base = clean_server_path(prefix) if prefix.strip("/\\") else ""
        root = f"{self.prefix}/" if self.prefix else ""
        start = f"{self.key(base)}/" if base else root
        for page in self._pages(start):
            for item in page.get("Contents") or ():
                path = str(item["Key"])[len(root) :]
                if PARTIAL_SUFFIX in path or path.endswith("/"):
                    continue
                yield StoredFile(path, int(item["Size"]), _mtime_ns(item["LastModified"]))

    def remove(self, path: str) -> None:
        self._delete(self.key(clean_server_path(path)))

    def free_space(self) -> int:
        return UNLIMITED

    def sync(self) -> None:
        pass  # an object is durable once S3 said so

    def native_path(self, path: str) -> Path | None:
        clean_server_path(path)
        return None

    # destination: partial files

    def _state(self, path: str) -> dict[str, Any]:
        raw = self._get_own(path, "")
        try:
            state = json.loads(raw) if raw is not None else {}
        except ValueError:
            state = {}
        recorded = raw is not None
        if not isinstance(state, dict) or state.get("part_size") != self.part_size or not isinstance(state.get("parts"), dict):
            if state.get("upload_id") if isinstance(state, dict) else None:
                self._abort(path, str(state["upload_id"]))
            state = {}
        state.setdefault("parts", {})
        state["recorded"] = recorded
        return state

    def partial_size(self, path: str) -> int:
        key = clean_server_path(path)
        with self._lock:
            live = self._writers.get(key)
        if live is not None:
            return live.length
        state = self._state(key)
        probe = S3Partial(self, key, state, 0, False)
        done = probe.consecutive()
        tail = state.get("tail")
        return done + int(tail[1]) if tail and int(tail[0]) == done else done

    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> S3Partial:
        """The partial upload of `path`, for this writer: cut to `offset`, or sized for ranges (`size`).

        A resume keeps the finished parts the server still lists with their recorded ETag and size.
        """
        key = clean_server_path(path)
        with self._lock:
            if key in self._writers:
                raise PartialBusy(errno.EBUSY, f"{path} is being written by another transfer")
            self._writers[key] = handle = S3Partial(self, key, {"parts": {}}, 0, size is not None)
        try:
            if size is not None and size > MAX_PARTS * self.part_size:
                raise OSError(
                    errno.EFBIG,
                    f"{path}: {size} bytes need more than {MAX_PARTS} parts of {self.part_size} bytes (S3's limit);"
                    " a larger part size takes it",
                )
            state = self._state(key)
            self._confirm(key, state)
            tail = state.pop("tail", None)
            length = size if size is not None else offset
            handle.state, handle.length, handle.recorded = state, length, bool(state.pop("recorded", False))
            if size is not None:
                for number, part in list(state["parts"].items()):
                    index = int(number) - 1
                    if int(part["size"]) != handle.part_length(index) or not handle.multipart():
                        del state["parts"][number]
            else:
                handle._cut(offset)
            handle.running = xxhash.xxh3_128() if not state["parts"] else None  # a plain xxh3 only from byte 0
            # the piece a stream resumes from (a sized partial of several parts redoes an unfinished range whole)
            resumable = size is None or not handle.multipart()
            if (
                resumable
                and tail
                and int(tail[1])
                and int(tail[0]) < length
                and str(int(tail[0]) // self.part_size + 1) not in state["parts"]
            ):
                data = self._get_own(key, ".tail") or b""
                if len(data) == int(tail[1]):
                    keep = min(len(data), length - int(tail[0]))
                    handle.write_at(data[:keep], int(tail[0]))
            if size is None and offset > handle.consecutive() + sum(len(b.data) for b in handle.buffers.values()):
                raise OSError(errno.EINVAL, f"{path}: cannot resume at byte {offset}, S3 kept only {handle.consecutive()}")
        except BaseException:
            handle.done = True
            handle.close()
            raise
        return handle

    def _confirm(self, path: str, state: dict[str, Any]) -> None:
        """Keep only the recorded parts the server lists with the same ETag and size (the upload may be gone)."""
        upload_id = state.get("upload_id")
        if not upload_id:
            state["parts"] = {}
            return
        listed: dict[str, tuple[str, int]] = {}
        try:
            pages = self.client().get_paginator("list_parts").paginate(Bucket=self.bucket, Key=self.key(path), UploadId=upload_id)
            for page in pages:
                for part in page.get("Parts") or ():
                    listed[str(part["PartNumber"])] = (str(part["ETag"]).strip('"'), int(part["Size"]))
        except _client_errors() as exc:
            code, _ = _code(exc)
            if code != "NoSuchUpload":
                raise self.failure(exc, f"listing the parts of {path}") from exc
            state["upload_id"], state["parts"] = None, {}
            return
        state["parts"] = {n: p for n, p in state["parts"].items() if listed.get(n) == (p["etag"], int(p["size"]))}

    def partial_digest(self, path: str, start: int, length: int) -> bytes:
        key = clean_server_path(path)
        with self._lock:
            live = self._writers.get(key)
        if live is not None:
            return live.digest(start, length)
        state = self._state(key)
        tail = state.get("tail")
        probe = S3Partial(self, key, state, int(state.get("length") or 0), False)
        if tail and int(tail[0]) <= start and start + length <= int(tail[0]) + self.part_size:
            data = self._get_own(key, ".tail") or b""
            begin = start - int(tail[0])
            piece = data[begin : begin + length]
            there = min(length, int(state.get("length") or 0) - start)  # a sized partial: zeros up to its size
            return xxhash.xxh3_128(piece + bytes(max(0, there - len(piece)))).digest()
        return probe.digest(start, length)

    def finalize(self, path: str, *, size: int, checksum: str, handle: PartialFile, verified: Stamp | None = None) -> None:
        """Verify the size and checksum of what arrived, then complete the upload (the commit)."""
        key = clean_server_path(path)
        with self._lock:
            live = self._writers.get(key)
        if not isinstance(handle, S3Partial) or live is not handle or handle.done:
            raise VerifyFailed(f"{path}: the partial upload was replaced while it was being written")
        if handle.length != size:
            self.discard_partial(path)
            raise VerifyFailed(f"{path}: {handle.length} bytes arrived, {size} were sent")
        if not handle.state["parts"] and (size <= self.part_size or not handle.multipart()):
            self._put_whole(key, size, checksum, handle)
            if handle.state.get("upload_id"):
                self._abort(key, str(handle.state["upload_id"]))  # begun by an attempt of another shape
        else:
            self._complete(key, size, checksum, handle)
        with handle.lock:
            handle.done = True
        self._markers.pop(key, None)
        if handle.recorded:
            self._clean(key, None)

    def _put_whole(self, key: str, size: int, checksum: str, handle: S3Partial) -> None:
        held = handle.buffers.get(0)
        data = bytes(held.data[:size]) if held is not None else b""
        data += bytes(size - len(data))
        if (held is None and size) or (held is not None and held.spans != [[0, size]] and size):
            self.discard_partial(key)
            raise VerifyFailed(f"{key}: {held.end if held else 0} bytes arrived, {size} were sent")
        self._verify(key, _checksum(data, like=checksum), checksum)
        md5 = hashlib.md5(data, usedforsecurity=False)
        try:
            reply = self.client().put_object(
                Bucket=self.bucket,
                Key=self.key(key),
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
                Metadata={META_KEY: checksum},
            )
        except _client_errors() as exc:
            raise self.failure(exc, f"storing {key}") from exc
        etag = str(reply.get("ETag", "")).strip('"')
        if _MD5.match(etag) and etag != md5.hexdigest():
            self.remove(key)
            raise VerifyFailed(f"{key}: arrived as md5 {etag}, {md5.hexdigest()} was sent")

    def _verify(self, key: str, arrived: str, checksum: str) -> None:
        if arrived != checksum:
            self.discard_partial(key)
            raise VerifyFailed(f"{key}: checksum at the destination {arrived} differs from the sent {checksum}")

    def _complete(self, key: str, size: int, checksum: str, handle: S3Partial) -> None:
        last = (size - 1) // self.part_size
        held = handle.buffers.pop(last, None)
        if held is not None and str(last + 1) not in handle.state["parts"]:
            length = size - last * self.part_size
            if held.spans != [[0, length]]:
                self.discard_partial(key)
                raise VerifyFailed(f"{key}: part {last + 1} did not arrive whole")
            handle._upload(last, held.data[:length])
        parts = handle.finished()
        sizes = [int(parts[i]["size"]) if i in parts else -1 for i in range(last + 1)]
        expected = [min(self.part_size, size - i * self.part_size) for i in range(last + 1)]
        if sizes != expected or len(parts) != last + 1:
            self.discard_partial(key)
            missing = [i + 1 for i, (a, b) in enumerate(zip(sizes, expected, strict=True)) if a != b]
            raise VerifyFailed(
                f"{key}: parts {missing[:5]} did not arrive whole ({sum(max(0, s) for s in sizes)} of {size} bytes)"
            )
        range_size = hashing.range_size_of(checksum)
        digests = [bytes.fromhex(parts[i]["xxh3"]) for i in range(last + 1)]
        if range_size == self.part_size:
            arrived = hashing.ranged(range_size, digests)
        elif range_size is None and handle.running is not None and handle.running_next == last + 1:
            arrived = hashing.plain(handle.running.hexdigest())
        else:
            self.discard_partial(key)
            raise VerifyFailed(f"{key}: its checksum {checksum} cannot be checked from parts of {self.part_size} bytes")
        self._verify(key, arrived, checksum)
        state = dict(handle.state)
        self._confirm(key, state)  # what the server holds: the same ETags and sizes, every part
        if len(state["parts"]) != last + 1:
            self.discard_partial(key)
            raise VerifyFailed(f"{key}: the server lists {len(state['parts'])} of its {last + 1} parts")
        listing = [{"PartNumber": i + 1, "ETag": f'"{parts[i]["etag"]}"'} for i in range(last + 1)]
        try:
            self.client().complete_multipart_upload(
                Bucket=self.bucket, Key=self.key(key), UploadId=state["upload_id"], MultipartUpload={"Parts": listing}
            )
        except _client_errors() as exc:
            raise self.failure(exc, f"completing the upload of {key}") from exc
        if self.checksum_metadata and size <= _COPY_LIMIT:
            try:  # the checksum is known only now: the metadata comes by a copy onto itself
                self.client().copy_object(
                    Bucket=self.bucket,
                    Key=self.key(key),
                    CopySource={"Bucket": self.bucket, "Key": self.key(key)},
                    Metadata={META_KEY: checksum},
                    MetadataDirective="REPLACE",
                )
            except _client_errors() as exc:
                logger.warning("%s stored without its rvweb checksum metadata: %s", key, self.failure(exc))

    def _abort(self, path: str, upload_id: str) -> None:
        try:
            self.client().abort_multipart_upload(Bucket=self.bucket, Key=self.key(path), UploadId=upload_id)
        except _client_errors() as exc:
            if _code(exc)[0] not in {"NoSuchUpload", *_MISSING}:
                raise self.failure(exc, f"aborting the upload of {path}") from exc

    def _clean(self, key: str, upload_id: str | None) -> None:
        if upload_id:
            self._abort(key, upload_id)
        for suffix in ("", ".tail"):
            self._delete(self._own(key, suffix))

    def discard_partial(self, path: str) -> None:
        """Drop the partial upload: abort it (and any other unfinished upload of this key), forget its parts."""
        key = clean_server_path(path)
        with self._lock:
            live = self._writers.get(key)
            self._markers.pop(key, None)
        ids = set()
        if live is not None:
            with live.lock:
                live.done = True
                live.buffers.clear()
                live.readback.clear()
                ids.add(live.state.get("upload_id"))
        raw = self._get_own(key, "")
        with contextlib.suppress(ValueError, AttributeError):
            ids.add(json.loads(raw or b"{}").get("upload_id"))
        try:
            for page in self.client().get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.key(key)):
                ids.update(str(u["UploadId"]) for u in page.get("Uploads") or () if u.get("Key") == self.key(key))
        except _client_errors() as exc:
            logger.info("could not list the unfinished uploads of %s: %s", key, self.failure(exc))
        for upload_id in ids - {None}:
            self._abort(key, str(upload_id))
        self._clean(key, None)

    def read_marker(self, path: str) -> bytes | None:
        key = clean_server_path(path)
        with self._lock:
            live = self._writers.get(key)
            if key in self._markers:
                return self._markers[key]
        marker = live.state.get("marker") if live is not None else self._state(key).get("marker")
        return marker.encode() if isinstance(marker, str) else None

    def write_marker(self, path: str, data: bytes) -> None:
        """Kept with the upload's record (written with it, and now when the upload has parts already)."""
        key = clean_server_path(path)
        with self._lock:
            self._markers[key] = data
            live = self._writers.get(key)
        if live is not None:
            with live.lock:
                live.state["marker"] = data.decode()
                worth = bool(live.state.get("upload_id"))
            if worth:
                live.save()

    # source

    def _stat_result(self, path: str) -> os.stat_result | None:
        found = self._stat_etag(path)
        return found[0] if found else None

    def _stat_etag(self, path: str) -> tuple[os.stat_result, str] | None:
        head = self._head(path)
        if head is None:
            return None
        etag = str(head.get("ETag", ""))
        return _info(int(head["ContentLength"]), _mtime_ns(head["LastModified"]), etag, self._dev), etag

    def locate(self, path: str) -> tuple[str, os.stat_result | None]:
        key = clean_server_path(path)
        try:
            return key, self._stat_result(key)
        except OSError:
            return key, None  # unreachable, refused: the send meets it and says what it is

    def open_source(self, located: str) -> S3SourceFile:
        key = clean_server_path(located)
        found = self._stat_etag(key)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, f"file not found on {self.where}", located)
        return S3SourceFile(self, key, *found)

    def stat_source(self, located: str) -> os.stat_result:
        key = clean_server_path(located)
        info = self._stat_result(key)
        if info is None:
            raise FileNotFoundError(errno.ENOENT, f"file not found on {self.where}", located)
        return info

    def checksum(self, path: str) -> str | None:
        """rvweb's checksum kept in the object's metadata, when it has one."""
        head = self._head(clean_server_path(path))
        if head is None:
            return None
        found = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
        return found.get(META_KEY)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


# --- the account page's "test connection" ---------------------------------------------------------


def _say(error: OSError) -> str:
    return str(error.strerror or error)


@dataclass(frozen=True)
class ProbeStep:
    step: str  # reachable, credentials, bucket, write
    ok: bool
    message: str


def probe(
    endpoint_url: str,
    bucket: str,
    prefix: str,
    access_key_id: str,
    secret_access_key: str,
    region: str = "us-east-1",
    *,
    timeout: float = 10.0,
) -> list[ProbeStep]:
    """Reach the endpoint, have the key pair accepted, find the bucket, write and delete a test object
    under the prefix. Stops at the first step that fails; every message is safe to show (no secret)."""
    steps: list[ProbeStep] = []
    try:
        endpoint = S3Bucket(
            endpoint_url=endpoint_url,
            bucket=bucket,
            prefix=prefix,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            region=region,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries=0,
        )
    except (ValueError, PathRefused) as exc:
        return [ProbeStep("settings", False, str(exc))]
    url = endpoint.endpoint_url
    try:
        client = endpoint.client()
        try:
            client.list_objects_v2(Bucket=bucket, Prefix=endpoint.key("") if endpoint.prefix else "", MaxKeys=1)
        except _client_errors() as exc:
            error = endpoint.failure(exc)
            if isinstance(error, ConnectionError | TimeoutError):
                return [ProbeStep("reachable", False, _say(error))]
            steps.append(ProbeStep("reachable", True, f"S3 endpoint {url} answers"))
            if isinstance(error, PermissionError):
                return [*steps, ProbeStep("credentials", False, _say(error))]
            steps.append(ProbeStep("credentials", True, f"key id {access_key_id} accepted"))
            return [*steps, ProbeStep("bucket", False, _say(error))]
        steps += [
            ProbeStep("reachable", True, f"S3 endpoint {url} answers"),
            ProbeStep("credentials", True, f"key id {access_key_id} accepted"),
            ProbeStep("bucket", True, f"bucket {bucket} found"),
        ]
        test = endpoint.key(f".rvweb-probe-{secrets.token_hex(6)}{PARTIAL_SUFFIX}")
        try:
            client.put_object(Bucket=bucket, Key=test, Body=b"rvweb connection test")
            client.delete_object(Bucket=bucket, Key=test)
        except _client_errors() as exc:
            place = f"{bucket}/{endpoint.prefix}" if endpoint.prefix else bucket
            return [*steps, ProbeStep("write", False, f"cannot write and delete under {place}: {_say(endpoint.failure(exc))}")]
        steps.append(ProbeStep("write", True, f"wrote and deleted a test object under {endpoint.key('') or '/'}"))
        return steps
    finally:
        endpoint.close()
