"""Send one file from a source endpoint into a destination endpoint: resumable, rate-limited, hashed while sending, verified.

* Resume: a partial file left by a crash is kept; its prefix is verified against the source's first
  bytes before sending continues from there (a mismatch restarts the file).
* Large files go in parallel ranges; each range's digest is recorded beside the partial as it
  completes, so a resume skips the ranges already there (after re-verifying them).
* Without a speed limit and with both ends on this machine (both give a descriptor), the bytes move by
  copy_file_range in the kernel; the source is hashed from the page cache right behind it. Otherwise
  they go through the endpoints' `read_at` / `write_at`.
* The source's size and mtime are compared before and after: a file changed during the copy is sent
  again (retryable), never stored half old, half new.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import xxhash

from transfers.engine import hashing
from transfers.engine.endpoints.base import (
    Destination,
    EndpointRefused,
    PartialBusy,
    PartialFile,
    Source,
    SourceFile,
    Stamp,
    VerifyFailed,
    descriptor,
    feed,
    stamp,
)
from transfers.engine.endpoints.files import PathSource
from transfers.engine.localfs import NotAFile
from transfers.engine.ratelimit import TokenBucket

OnBytes = Callable[[int, bool], None]  # (count, resumed): resumed bytes were verified, not sent
SourcePath = str | Path
FARM = "the farm storage"  # how a destination is named in messages when it does not say


@dataclass(frozen=True)
class SendOptions:
    chunk: int = 1 << 20  # 1 MiB reads are ~2.6x faster than 8 KiB on cached data
    kernel_chunk: int = 4 << 20  # measured: 4 MiB beat 16 MiB by ~20% on a cold 2 GiB copy (cache-sized pieces)
    range_size: int = 64 << 20
    range_threshold: int = 256 << 20  # files at least this big are sent in parallel ranges
    ranges_in_parallel: int = 4
    kernel_copy: bool = True
    # bytes per write + read-back round with an end that asks for bigger ones (SFTP's preferred_chunk: its
    # round trips paid less often); None: what that end asks
    remote_chunk: int | None = None


@dataclass(frozen=True)
class Sent:
    size: int
    checksum: str
    mtime_ns: int  # the source's, as read before sending
    resumed_from: int = 0


class Stopped(Exception):
    """The run was asked to stop (pause or cancel); the partial file is kept for a resume."""


class SendFailed(Exception):
    """One file could not be sent. `code` is short and stable; the message is for people."""

    def __init__(self, code: str, message: str, *, retryable: bool = False, stops_run: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.stops_run = stops_run


def source_error(exc: OSError, src: SourcePath, where: str | None = None) -> SendFailed:
    """`where` None: a local file of the user's ("local file not found: /x"); else the endpoint's name."""
    if isinstance(exc, EndpointRefused):
        return SendFailed("refused", f"{where or 'the source'} refuses this run: {exc}", stops_run=True)
    if isinstance(exc, FileNotFoundError | NotADirectoryError):  # the latter: a folder on the way is a file
        return SendFailed(
            "missing_source", f"local file not found: {src}" if where is None else f"file not found on {where}: {src}"
        )
    if isinstance(exc, PermissionError):
        return SendFailed("permission", f"permission denied reading {src}" + (f" on {where}" if where else ""))
    if isinstance(exc, IsADirectoryError):
        return SendFailed("not_a_file", f"{'local ' if where is None else ''}path is a folder, not a file: {src}")
    return SendFailed("read_error", f"cannot read {src}: {exc.strerror or exc}", retryable=True)


def dest_error(exc: OSError, server: str, where: str = FARM) -> SendFailed:
    if isinstance(exc, EndpointRefused):
        return SendFailed("refused", f"{where} refuses this run: {exc}", stops_run=True)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SendFailed("disk_full", f"no space left on {where} writing {server}", stops_run=True)
    if isinstance(exc, PermissionError):
        return SendFailed("permission", f"permission denied writing {server} on {where}")
    return SendFailed("write_error", f"cannot write {server}: {exc.strerror or exc}", retryable=True)


def open_source(src: SourcePath, source: Source) -> SourceFile:
    """The regular file at `src`, as the source endpoint opens it safely.

    Raises SendFailed for what fails this file, PathRefused from the source as it is.
    """
    try:
        return source.open_source(str(src))
    except NotAFile as exc:
        raise SendFailed("not_a_file", str(exc)) from exc
    except OSError as exc:
        raise source_error(exc, src, source.where) from exc


@dataclass
class _Span:
    """Copy [start, start+length) from `source` to `dest` at the same offsets, hashing into `digest`.

    `kernel`: both have descriptors (src_fd, dst_fd) and no speed limit applies: copy_file_range.
    """

    src: SourcePath
    server: str
    source: SourceFile
    dest: PartialFile
    src_fd: int
    dst_fd: int
    src_where: str | None
    dst_where: str
    bucket: TokenBucket
    stop: threading.Event
    on_bytes: OnBytes
    options: SendOptions
    kernel: bool
    abort: threading.Event | None = None  # set when a sibling range of the same file failed
    chunk: int = 0  # bytes per read/write/read-back round: options.chunk, or more when an end asks (preferred_chunk)

    def __post_init__(self) -> None:
        forced = self.options.remote_chunk
        self.chunk = forced if self.chunk and forced else max(self.chunk, self.options.chunk)

    def copy(self, start: int, length: int, digest: xxhash.xxh3_128, arrived: xxhash.xxh3_128) -> None:
        """Copy, hashing the source into `digest` and the bytes read back from the destination into
        `arrived`, chunk by chunk while they are still in the page cache (the destination check)."""
        position, end = start, start + length
        size = min(length, max(self.options.kernel_chunk, self.chunk) if self.kernel else self.chunk)
        source, back = bytearray(size), bytearray(size)  # reused: allocating per chunk costs ~20%
        while position < end:
            if self.stop.is_set() or (self.abort is not None and self.abort.is_set()):
                raise Stopped()
            if self.kernel and self.bucket.rate:
                self.kernel = False  # a limit was set mid-file: the kernel path cannot honour it
            count = min(self.options.kernel_chunk if self.kernel else self._chunk(), end - position, size)
            if self.kernel:
                count = self._kernel(position, count)
                data = self._read(source, position, count)  # from the page cache the copy just filled
            else:
                data = self._read(source, position, count)
                if not data:
                    break
                if not self.bucket.take(len(data), self.stop):
                    raise Stopped()
                self._write(data, position)
                count = len(data)
            if count == 0:
                break  # the source shrank: caught by the size check after the copy
            digest.update(data)
            arrived.update(self._read_back(back, position, count))
            position += count
            self.on_bytes(count, False)

    def _chunk(self) -> int:
        """Under a speed limit, chunks of ~0.1 s of allowance: a new limit applies within that time."""
        rate = self.bucket.rate
        return self.chunk if not rate else max(4096, min(self.chunk, int(rate / 10)))

    def _read(self, buffer: bytearray, position: int, count: int) -> memoryview:
        try:
            got = _read_again(self.source, memoryview(buffer)[:count], position, self.stop)
        except OSError as exc:
            raise source_error(exc, self.src, self.src_where) from exc
        return memoryview(buffer)[:got]

    def _read_back(self, buffer: bytearray, position: int, count: int) -> memoryview:
        try:
            got = _read_again(self.dest, memoryview(buffer)[:count], position, self.stop)
        except OSError as exc:
            raise dest_error(exc, self.server, self.dst_where) from exc
        return memoryview(buffer)[:got]

    def _write(self, data: memoryview, position: int) -> None:
        view = data
        while view:
            try:
                written = self.dest.write_at(view, position)
            except OSError as exc:
                raise dest_error(exc, self.server, self.dst_where) from exc
            view, position = view[written:], position + written

    def _kernel(self, position: int, count: int) -> int:
        done = 0
        while done < count:
            try:
                moved = os.copy_file_range(self.src_fd, self.dst_fd, count - done, position + done, position + done)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) and done == 0:
                    self.kernel = False  # not supported between these two: fall back to read/write
                    data = self._read(bytearray(count), position, count)
                    self._write(data, position)
                    return len(data)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM):
                    raise dest_error(exc, self.server, self.dst_where) from exc
                raise source_error(exc, self.src, self.src_where) from exc
            if moved == 0:
                break
            done += moved
        return done


def _preferred_chunk(handle: SourceFile | PartialFile) -> int:
    """What a remote end asks to be written and read back in (SFTP: one round trip per chunk each way,
    pipelined inside it, so a bigger chunk pays the round trips less often); 0: no wish."""
    wish = getattr(handle, "preferred_chunk", 0)
    return wish if isinstance(wish, int) and wish > 0 else 0


def _parallel_ranges(endpoint: object) -> int:
    """How many ranges of one file an endpoint can carry at once (SFTP: one per connection); 0: no wish."""
    wish = getattr(endpoint, "parallel_ranges", 0)
    return wish if isinstance(wish, int) and wish > 0 else 0


READ_AGAIN = 3  # times a remote read that failed on a lost connection is repeated before the file fails


def _read_again(file: SourceFile | PartialFile, buffer: memoryview, position: int, stop: threading.Event) -> int:
    """`file.read_at`, repeated (a read at an offset is harmless to repeat) when a remote endpoint's
    connection broke under it: an S3 GET cut mid-body is asked again from `position` on a new
    connection, instead of failing the range and sending it again from its start on the next attempt."""
    for attempt in range(READ_AGAIN + 1):
        try:
            return file.read_at(buffer, position)
        except OSError as exc:
            transient = isinstance(exc, ConnectionError | TimeoutError) or exc.errno == errno.EIO
            if attempt == READ_AGAIN or not transient or descriptor(file) is not None or stop.is_set():
                raise
            if stop.wait(min(0.05 * 2**attempt, 1.0)):  # a pause or cancel does not wait out the backoff
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _File:
    src: SourcePath
    file: SourceFile
    info: os.stat_result
    source: Source
    storage: Destination
    server: str
    bucket: TokenBucket
    stop: threading.Event
    on_bytes: OnBytes
    options: SendOptions
    kernel: bool

    def span(self, dest: PartialFile, abort: threading.Event | None = None) -> _Span:
        dst_fd = descriptor(dest) if self.kernel else None
        src_fd = descriptor(self.file) if dst_fd is not None else None
        kernel = src_fd is not None and dst_fd is not None
        return _Span(
            self.src,
            self.server,
            self.file,
            dest,
            src_fd if src_fd is not None else -1,
            dst_fd if dst_fd is not None else -1,
            self.source.where,
            self.where,
            self.bucket,
            self.stop,
            self.on_bytes,
            self.options,
            kernel,
            abort,
            max(_preferred_chunk(dest), _preferred_chunk(self.file)),
        )

    @property
    def where(self) -> str:
        return getattr(self.storage, "where", FARM)


_PATHS = PathSource()


def send_file(
    src: SourcePath,
    storage: Destination,
    server: str,
    *,
    bucket: TokenBucket,
    stop: threading.Event,
    on_bytes: OnBytes,
    options: SendOptions = SendOptions(),
    source: Source | None = None,
) -> Sent:
    """Send `src` (as `source` located it) to `server` in `storage`, resuming a partial file when there is one.

    Without `source`, `src` is a local path opened as it is. The partial file is held under an
    exclusive lock from opening to renaming: a second transfer to the same path (another job, a
    duplicate run) fails with a retryable "busy" instead of interleaving its bytes.
    """
    source = source or _PATHS
    file = open_source(src, source)
    before = file.info
    dest: PartialFile | None = None
    try:
        # Both ends on this machine (descriptors, see _File.span): the kernel may copy, unless a speed limit is set.
        kernel = options.kernel_copy and bucket.rate is None and storage.native_path(server) is not None
        job = _File(src, file, before, source, storage, server, bucket, stop, on_bytes, options, kernel)
        # An object store (S3) takes a file in parts: every file goes in ranges of exactly one part,
        # each verified and resumable on its own (it cannot read back, nor hash, an unfinished upload).
        part_size = getattr(storage, "part_size", None)
        if part_size or (before.st_size >= options.range_threshold and options.ranges_in_parallel > 1):
            dest, checksum, resumed = _send_ranges(job, part_size or options.range_size)
        else:
            dest, checksum, resumed = _send_stream(job)
        try:
            written = _stamp(dest)  # after this, any write to the partial moves its ctime
        except OSError as exc:  # a remote handle asks its server
            raise dest_error(exc, server, job.where) from exc
        if _changed(source, src, file, before):
            storage.discard_partial(server)
            changed = "local file changed" if source.where is None else f"file on {source.where} changed"
            raise SendFailed("source_changed", f"{changed} while it was being sent: {src}", retryable=True)
        try:
            # Every byte was read back from the partial file and checked while it was sent.
            storage.finalize(server, size=before.st_size, checksum=checksum, handle=dest, verified=written)
        except VerifyFailed as exc:
            raise SendFailed("verify_failed", str(exc), retryable=True) from exc
        except OSError as exc:
            raise dest_error(exc, server, job.where) from exc
        return Sent(size=before.st_size, checksum=checksum, mtime_ns=before.st_mtime_ns, resumed_from=resumed)
    finally:
        if dest is not None:
            dest.close()
        file.close()


def _stamp(dest: PartialFile) -> Stamp | None:
    """The partial's stamp (finalize then skips its re-hash if nothing moved): from its descriptor, or
    from the handle's own `stamp()` when a remote transport's handle offers one (SFTP)."""
    fd = descriptor(dest)
    if fd is not None:
        return stamp(os.fstat(fd))
    remote = getattr(dest, "stamp", None)
    return remote() if callable(remote) else None


def _changed(source: Source, src: SourcePath, file: SourceFile, before: os.stat_result) -> bool:
    """Written to while we read it (size, mtime), or replaced at its path (a save by rename)."""
    try:
        after = file.now()
    except OSError as exc:  # a remote source asks its server: a lost connection fails this attempt, retryably
        raise source_error(exc, src, source.where) from exc
    try:
        now = source.stat_source(str(src))
    except OSError:
        return True
    return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or (now.st_dev, now.st_ino) != (
        before.st_dev,
        before.st_ino,
    )


def _open_dest(f: _File, offset: int, size: int | None = None) -> PartialFile:
    try:
        return f.storage.open_partial(f.server, offset, size=size)
    except PartialBusy as exc:
        raise SendFailed("busy", f"another transfer is writing {f.server} right now", retryable=True) from exc
    except OSError as exc:
        raise dest_error(exc, f.server, f.where) from exc


def _send_stream(f: _File) -> tuple[PartialFile, str, int]:
    storage, server, on_bytes = f.storage, f.server, f.on_bytes
    size = f.info.st_size
    try:  # a remote destination may have lost its connection since the last file: a retryable error
        offset = storage.partial_size(server)
        if offset and (offset > size or storage.read_marker(server) is not None):
            offset = 0  # a partial from another shape of send: start over
    except OSError as exc:
        raise dest_error(exc, server, f.where) from exc
    dest = _open_dest(f, offset)  # locked, cut to `offset`
    try:
        digest, arrived = xxhash.xxh3_128(), xxhash.xxh3_128()
        if offset:
            # The kept prefix must be the source's first bytes before sending goes on from there.
            feed(digest, f.file, 0, offset)
            feed(arrived, dest, 0, offset)
            if digest.digest() == arrived.digest():
                on_bytes(offset, True)
            else:
                dest.truncate(0)
                offset, digest, arrived = 0, xxhash.xxh3_128(), xxhash.xxh3_128()
        f.span(dest).copy(offset, size - offset, digest, arrived)
        _check_arrived(f, digest, arrived)
    except BaseException:
        dest.close()
        raise
    return dest, hashing.plain(digest.hexdigest()), offset


def _check_arrived(f: _File, digest: xxhash.xxh3_128, arrived: xxhash.xxh3_128) -> None:
    if digest.digest() != arrived.digest():
        f.storage.discard_partial(f.server)
        raise SendFailed(
            "verify_failed", f"{f.server}: the bytes read back from {f.where} differ from the sent ones", retryable=True
        )


def _send_ranges(f: _File, range_size: int) -> tuple[PartialFile, str, int]:
    info = f.info
    size = info.st_size
    starts = list(range(0, size, range_size))
    identity = {"size": size, "mtime_ns": info.st_mtime_ns, "range_size": range_size}
    dest = _open_dest(f, 0, size=size)
    try:
        try:
            done = _verified_ranges(f, starts, identity)
        except OSError as exc:  # a remote destination's dropped connection: retryable
            raise dest_error(exc, f.server, f.where) from exc
        if not done:
            _write_marker(f, {**identity, "done": {}})  # replaces a stale one
        resumed = sum(min(range_size, size - starts[i]) for i in done)
        if resumed:
            f.on_bytes(resumed, True)
        _copy_ranges(f, dest, starts, [i for i in range(len(starts)) if i not in done], done, identity)
    except BaseException:
        dest.close()
        raise
    return dest, hashing.ranged(range_size, (bytes.fromhex(done[i]) for i in range(len(starts)))), resumed


def _write_marker(f: _File, record: dict[str, object]) -> None:
    try:
        f.storage.write_marker(f.server, json.dumps(record).encode())
    except OSError as exc:  # a full disk shows here too: it must stop the run, not look like a bug
        raise dest_error(exc, f.server, f.where) from exc


def _verified_ranges(f: _File, starts: list[int], identity: dict[str, int]) -> dict[int, str]:
    """Ranges an earlier attempt finished, each re-hashed at the destination before it is trusted."""
    marker = f.storage.read_marker(f.server)
    try:
        recorded = json.loads(marker) if marker is not None else {}
    except ValueError:
        recorded = {}
    if not isinstance(recorded, dict) or {k: recorded.get(k) for k in identity} != identity:
        return {}
    size, range_size = identity["size"], identity["range_size"]
    # A store that keeps digests of its parts, not readable bytes (S3): each is also checked against the
    # source's bytes now, which the record's size and mtime alone cannot vouch for.
    rehash = getattr(f.storage, "part_size", None) is not None
    done = {}
    for index, hexdigest in (recorded.get("done") or {}).items():
        start = starts[int(index)]
        length = min(range_size, size - start)
        if f.storage.partial_digest(f.server, start, length).hex() != hexdigest:
            continue
        if rehash and _source_digest(f, start, length) != hexdigest:
            continue
        done[int(index)] = hexdigest
    return done


def _source_digest(f: _File, start: int, length: int) -> str:
    digest = xxhash.xxh3_128()
    try:
        feed(digest, f.file, start, length)
    except OSError as exc:
        raise source_error(exc, f.src, f.source.where) from exc
    return digest.hexdigest()


def _copy_ranges(
    f: _File, dest: PartialFile, starts: list[int], todo: list[int], done: dict[int, str], identity: dict[str, int]
) -> None:
    size, range_size = identity["size"], identity["range_size"]
    lock, abort = threading.Lock(), threading.Event()

    def one(index: int) -> None:
        if abort.is_set():
            raise Stopped()  # a sibling failed while this range waited for a thread: never start it
        start = starts[index]
        digest, arrived = xxhash.xxh3_128(), xxhash.xxh3_128()
        try:
            f.span(dest, abort).copy(start, min(range_size, size - start), digest, arrived)
            _check_arrived(f, digest, arrived)
        except BaseException:
            abort.set()  # here, not when the caller's thread gets to it: the pool would start every other range first
            raise
        with lock:
            done[index] = digest.hexdigest()
            _write_marker(f, {**identity, "done": done})

    failure: BaseException | None = None
    workers = f.options.ranges_in_parallel
    if workers > 1:  # 1 asks for the ranges in order; otherwise a remote end may ask for more (one per connection)
        workers = max(workers, _parallel_ranges(f.storage), _parallel_ranges(f.source))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rvweb-range") as pool:
        futures = [pool.submit(one, index) for index in todo]
        for future in as_completed(futures):
            if future.cancelled() or (error := future.exception()) is None:
                continue
            for other in futures:
                other.cancel()
            # The range that failed says why; the siblings it stopped only say "stopped".
            if failure is None or (isinstance(failure, Stopped) and not isinstance(error, Stopped)):
                failure = error
    if failure is not None:
        raise failure
