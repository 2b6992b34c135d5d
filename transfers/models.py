"""rvweb's tables: teams, farm accounts, manifests, transfer jobs and their items, and the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from transfers.engine.paths import PathMap, PathRefused
from transfers.fields import EncryptedTextField

if TYPE_CHECKING:
    from transfers.progress import JobFigures, JobLive


def validate_path_map(value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationError('path mapping must be an object of strings: {"D:/": "/mnt/studio/D/"}')
    try:
        PathMap(value)
    except PathRefused as exc:
        raise ValidationError(str(exc)) from None


class Team(models.Model):
    """A group of users that owns farm accounts, and through them manifests and jobs (see selectors)."""

    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in a team. What each role may do is decided in one place: transfers.selectors."""

    class Role(models.TextChoices):
        LEAD = "lead", "Lead (manages accounts, manifests and jobs)"
        MEMBER = "member", "Member (starts and controls jobs)"
        VIEWER = "viewer", "Viewer (read-only)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class FarmAccount(models.Model):
    """A team's farm credentials and transport settings. The access key is encrypted and never shown again."""

    class Kind(models.TextChoices):
        LOCAL = "local", "Local farm (a folder on this machine)"
        FOX = "fox", "Fox Renderfarm / Renderbus"
        SFTP = "sftp", "SFTP server (a studio's own farm or storage over SSH)"
        S3 = "s3", "S3-compatible object storage (a bucket and prefix)"

    name = models.CharField(max_length=100, unique=True)
    # Manifests and jobs belong to a team through their account (account__team): no second team column.
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="accounts")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.LOCAL)
    access_id = models.CharField(max_length=200, blank=True)
    access_key = EncryptedTextField(blank=True)
    domain = models.CharField(max_length=200, blank=True, default="task.foxrenderfarm.com")
    platform = models.CharField(max_length=10, blank=True, default="2")
    # Where this worker finds the manifests' local paths: {"D:/": "/mnt/studio/D/"}; longest prefix wins.
    path_map = models.JSONField(default=dict, blank=True, validators=[validate_path_map])
    # The ways to the farm's storage: [{"name": "main", "host": "10.0.0.5", "port": 7300}] (transfers.accounts checks them).
    transfer_lines = models.JSONField(default=list, blank=True)
    # Defaults for the account's transfers, by the SDK's names: {"max_speed": 2048, "pool_size": 8}; a job's own win.
    upload_options = models.JSONField(default=dict, blank=True)
    # Where a storage farm's areas live, by its connector's settings (transfers.farm.*.storage_settings):
    # {"host": "nas", "port": 22, "base_path": "/farm", "host_key": "ssh-ed25519 AAAA..."} for SFTP,
    # {"endpoint_url": "https://s3.example", "bucket": "frames", "prefix": "studio/"} for S3. Never a secret.
    storage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Manifest(models.Model):
    """A list of files to upload: the SDK's upload.json, imported and validated once."""

    class TransmitType(models.TextChoices):
        UPLOAD_JSON = "upload_json", "upload.json"
        UPLOAD_LIST = "upload_list", "upload list"

    class State(models.TextChoices):
        IMPORTING = "importing", "Importing"  # a worker is reading and storing the uploaded file
        READY = "ready", "Ready"
        REFUSED = "refused", "Refused"  # `problems` says why; no entries are kept

    name = models.CharField(max_length=200)
    account = models.ForeignKey(FarmAccount, on_delete=models.PROTECT, related_name="manifests")
    transmit_type = models.CharField(max_length=20, choices=TransmitType.choices, default=TransmitType.UPLOAD_JSON)
    entry_count = models.PositiveIntegerField(default=0)
    total_bytes = models.PositiveBigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.READY)
    entries_stored = models.PositiveIntegerField(default=0)  # import progress, while importing
    problems = models.JSONField(default=list, blank=True)  # a refusal: [{"entry"|"line": N, "reason": ...}], the first 1000
    # A part made by splitting another manifest (cutting_upload): the original it was cut from.
    split_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="parts")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class ManifestEntry(models.Model):
    """One `{local, server}` pair of a manifest; `number` is its 1-based position in the file."""

    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="entries")
    number = models.PositiveIntegerField()
    local = models.TextField()
    server = models.TextField()
    size = models.PositiveBigIntegerField(null=True)  # None: missing or unreadable when imported

    class Meta:
        ordering = ["manifest", "number"]
        constraints = [models.UniqueConstraint(fields=["manifest", "number"], name="entry_number_unique")]

    def __str__(self) -> str:
        return f"entry {self.number}: {self.local}"


class JobGroup(models.Model):
    """The parts of a split manifest run in parallel as one group (the SDK's thread_pool_upload): at most
    `pool_size` of its jobs run at once, the next starting when one ends (transfers.groups). Its figures
    are its jobs' added up, and one control (pause, resume, cancel, retry) applies to all of them. It
    belongs to a team through its account, as its jobs do. `held` is a group pause: its queued jobs wait.
    """

    account = models.ForeignKey(FarmAccount, on_delete=models.PROTECT, related_name="job_groups")
    pool_size = models.PositiveSmallIntegerField(default=10)
    options = models.JSONField(default=dict, blank=True)  # the upload options every job of the group got
    held = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job group {self.pk}"


class ManifestWork(models.Model):
    """Work a worker does on a manifest for a user (transfers.manifest_work): append files and folders
    (append_to_upload), split it into parts (cutting_upload), or a dry run. `done` of `total` is its
    progress; `result` what it found or made; only one work that changes a manifest runs at a time."""

    class Kind(models.TextChoices):
        APPEND = "append", "Append files and folders"
        SPLIT = "split", "Split into parts"
        DRY_RUN = "dry_run", "Dry run"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="works")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    done = models.PositiveBigIntegerField(default=0)
    total = models.PositiveBigIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True)

    ACTIVE = frozenset({State.QUEUED, State.RUNNING})

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} of manifest {self.manifest_id} ({self.state})"


class TransferJob(models.Model):
    """One upload or download, owned by this table (Celery's result backend is not the source of truth).

    Statuses and the only transitions allowed between them (each a conditional UPDATE, see
    services.job_transition, so a redelivered or duplicated task changes nothing):

        queued                         -> running | cancelled
        running                        -> completed | completed_with_errors | failed | cancelled | paused
        running                        -> running (a run whose worker died is taken over by the next
                                          holder of the job's lease, see transfers.locks; the new
                                          run_token fences the old run off)
        paused                         -> queued (resume) | cancelled
        completed_with_errors | failed -> queued (retry the failed and the unsent items) | cancelled

    completed: every item arrived. completed_with_errors: some items failed, every other one arrived.
    failed: nothing arrived, or the run stopped by itself (a full destination...) with files not sent
    yet, or the job as a whole could not run (the error says why).
    paused: the worker stopped between chunks; partial files are kept and resume at their offset.
    cancelled: stopped for good; partial files are removed, finished files stay. A failed job can be
    cancelled too, to remove the partial files it left.
    A user's pause or cancel is a transition made by the web process; the worker notices it within a
    second and stops, and its own final transition (from running) then changes nothing. A job cancelled
    while running has no finished_at until its worker has stopped and stored its last counters: only
    then is it `settled` (the page stops listening then, with the final figures).

    What a user may do in each status is ACTIONS (each one a transition above); pages, their script and the
    API read `actions` / `can()` / `as_live()`, never a copy of these rules.
    """

    class Kind(models.TextChoices):
        # Each is a module in transfers/kinds (what it does lives there, not here).
        UPLOAD_ASSET = "upload_asset", "Upload assets"
        UPLOAD_CONFIG = "upload_config", "Upload task configuration"
        UPLOAD = "upload", "Upload configuration and assets"
        DOWNLOAD = "download", "Download"
        AUTO_DOWNLOAD = "auto_download", "Auto download (each frame as it finishes)"
        AUTO_DOWNLOAD_AFTER_TASK_COMPLETED = "auto_download_after_task_completed", "Auto download after the task ends"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        PAUSED = "paused", "Paused"

    ACTIVE = frozenset({Status.QUEUED, Status.RUNNING, Status.PAUSED})
    TERMINAL = frozenset({Status.COMPLETED, Status.COMPLETED_WITH_ERRORS, Status.FAILED, Status.CANCELLED})
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
        Status.RUNNING: frozenset(
            {Status.COMPLETED, Status.COMPLETED_WITH_ERRORS, Status.FAILED, Status.CANCELLED, Status.PAUSED}
        ),
        Status.PAUSED: frozenset({Status.QUEUED, Status.CANCELLED}),
        Status.COMPLETED_WITH_ERRORS: frozenset({Status.QUEUED, Status.CANCELLED}),
        Status.FAILED: frozenset({Status.QUEUED, Status.CANCELLED}),
    }
    # A user's action -> its target status and the statuses it may be taken from (each pair is in
    # TRANSITIONS: checked below). Resume and retry both queue the job again, from different statuses.
    ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
        "pause": (Status.PAUSED, frozenset({Status.RUNNING})),
        "resume": (Status.QUEUED, frozenset({Status.PAUSED})),
        "cancel": (
            Status.CANCELLED,
            frozenset({Status.QUEUED, Status.RUNNING, Status.PAUSED, Status.COMPLETED_WITH_ERRORS, Status.FAILED}),
        ),
        "retry": (Status.QUEUED, frozenset({Status.COMPLETED_WITH_ERRORS, Status.FAILED})),
    }

    kind = models.CharField(max_length=40, choices=Kind.choices, default=Kind.UPLOAD_ASSET)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.QUEUED, db_index=True)
    account = models.ForeignKey(FarmAccount, on_delete=models.PROTECT, related_name="jobs")
    manifest = models.ForeignKey(Manifest, null=True, on_delete=models.SET_NULL, related_name="jobs")
    options = models.JSONField(default=dict, blank=True)  # max_speed, pool_size, ... (never secrets)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0)
    files_failed = models.PositiveIntegerField(default=0)
    files_skipped = models.PositiveIntegerField(default=0)  # counted in files_done too
    bytes_total = models.PositiveBigIntegerField(default=0)
    bytes_done = models.PositiveBigIntegerField(default=0)
    bytes_sent = models.PositiveBigIntegerField(default=0)  # really moved, all runs: not skipped, not resumed
    # When the counters were measured (the worker's tracker snapshot they come from): the page keeps the
    # newest figures it has seen, whether they came from the worker live or from this row.
    figures_at = models.DateTimeField(null=True)
    error = models.TextField(blank=True)
    # False until the worker has made the job's items from its manifest (and, on a retry, set its
    # failed items pending again): the web request only records the job, in well under a second.
    prepared = models.BooleanField(default=True)
    items_prepared = models.PositiveIntegerField(default=0)  # the last manifest entry number made into an item
    # A download watcher's last news for the page (progress.WatchState): each task's status and frames, the next poll.
    watch = models.JSONField(null=True, blank=True)
    # The thread_pool_upload group the job is a part of (None: a job of its own).
    group = models.ForeignKey(JobGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    # The run that owns the job now (services.job_start sets a new one at each start or takeover). A run
    # writes its items, counters and end only while this is still its own: a run that lost its lease
    # and is still stopping when the next one took over (a Redis restart) can no longer write.
    run_token = models.CharField(max_length=32, blank=True, default="")
    # How the last run reaches the farm's storage, for the page (farm.base.Route): the transport, the line
    # chosen and why, each line's measured connect time. None: the farm's storage is a local folder.
    route = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.get_kind_display()}, {self.status})"

    @classmethod
    def actions_in(cls, status: str) -> list[str]:
        """The user actions allowed in `status`, in a stable order."""
        return [action for action, (_, sources) in cls.ACTIONS.items() if status in sources]

    @property
    def actions(self) -> list[str]:
        return self.actions_in(self.status)

    def can(self, action: str) -> bool:
        return action in self.actions

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def label(self) -> str:
        return str(self.Status(self.status).label) if self.status in self.Status.values else self.status

    @property
    def settled(self) -> bool:
        """Terminal, and no run is still stopping: the figures are final."""
        return self.is_terminal and self.finished_at is not None

    @property
    def files_not_sent(self) -> int:
        """Files neither arrived nor failed: still to send (or, once the job is terminal, never sent)."""
        return max(0, self.files_total - self.files_done - self.files_failed)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, for a finished job."""
        if self.started_at and self.finished_at:
            return max(0.0, (self.finished_at - self.started_at).total_seconds())
        return None

    @property
    def average_speed(self) -> float | None:
        """Bytes actually sent per second, for a finished job; None when nothing was sent (all unchanged,
        say): bytes skipped or resumed from an earlier partial were never moved and prove no speed."""
        duration = self.duration
        return self.bytes_sent / duration if duration and self.bytes_sent else None

    def figures(self) -> JobFigures:
        """The counters as the page shows them; a live progress message carries the same."""
        return {
            "percent": self.percent,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "files_skipped": self.files_skipped,
            "files_failed": self.files_failed,
            "files_not_sent": self.files_not_sent,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "bytes_sent": self.bytes_sent,
            "figures_at": self.figures_at.timestamp() if self.figures_at else None,
        }

    def as_live(self) -> JobLive:
        """Everything the live page shows, from this row: rendered by the template (json_script), served
        by the API and sent with every state message, so the script decides nothing on its own."""
        return {
            **self.figures(),
            "status": self.status,
            "label": self.label,
            "actions": self.actions,
            "running": self.is_running,
            "waiting": self.status == self.Status.QUEUED,
            "terminal": self.is_terminal,
            "settled": self.settled,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration": self.duration,
            "average_speed": self.average_speed,
            "error": self.error,
            "preparing": not self.prepared and not self.is_terminal,
            "items_prepared": self.items_prepared,
            "watch": self.watch,
        }

    @property
    def percent(self) -> int:
        if self.bytes_total:
            return min(100, int(self.bytes_done * 100 / self.bytes_total))
        files = self.files_done + self.files_failed
        return int(files * 100 / self.files_total) if self.files_total else (100 if self.is_terminal else 0)


class TransferItem(models.Model):
    """One file of a job: its state, the bytes moved, its checksum and, when it failed, why."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped (unchanged)"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(TransferJob, on_delete=models.CASCADE, related_name="items")
    number = models.PositiveIntegerField()  # the manifest entry number
    local = models.TextField()
    server = models.TextField()
    size = models.PositiveBigIntegerField(null=True)
    area = models.CharField(max_length=10, default="input")  # the farm storage area `server` is in
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    bytes_done = models.PositiveBigIntegerField(default=0)
    checksum = models.CharField(max_length=80, blank=True)  # see engine.hashing for the format
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=30, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "number"]
        # With the id: a worker reads a job's pending items in id order, a page at a time (on
        # PostgreSQL an index of (job, state) alone would sort every remaining item for each page).
        # The job page's per-file table pages by number, whole or one state at a time (failed only...).
        indexes = [
            models.Index(fields=["job", "state", "id"], name="item_job_state_id"),
            models.Index(fields=["job", "state", "number"], name="item_job_state_number"),
        ]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="item_number_unique")]

    def __str__(self) -> str:
        return f"item {self.number} of job {self.job_id} ({self.state})"


class JobSample(models.Model):
    """A job's speed at one moment, for the chart on its page: written by its worker at most every
    SAMPLE_EVERY seconds (transfers.samples), thinned so a job keeps at most samples.MAX_SAMPLES rows,
    deleted with the job."""

    job = models.ForeignKey(TransferJob, on_delete=models.CASCADE, related_name="samples")
    # Epoch seconds, as the progress messages carry them: a page reads up to 1,500 of these, and the
    # database's datetime conversion cost more than the rest of the job page.
    at = models.FloatField()
    speed = models.FloatField()  # bytes per second, as the progress message said
    bytes_done = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["job", "at"]
        indexes = [models.Index(fields=["job", "at"], name="sample_job_at")]

    def __str__(self) -> str:
        return f"job {self.job_id} at {self.at:.0f}: {self.speed:.0f} B/s"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Bulk changes bypass Model.save/delete: refuse them too."""

    def update(self, **kwargs: object) -> int:
        raise ValueError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValueError("audit events are append-only")


class AuditEvent(models.Model):
    """Append-only record of who did what, when, from where, and how it ended. Rows are never changed."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150, default="system")  # kept when the user is deleted
    # The team the target belongs to (services.audit_record finds it), for the audit page's team filter.
    # No database constraint and nothing done on delete: a deleted team's rows keep its id.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )  # indexed with the id below
    action = models.CharField(max_length=60)
    target_type = models.CharField(max_length=60)
    target_id = models.CharField(max_length=60)
    request_id = models.CharField(max_length=64, blank=True)
    remote_addr = models.GenericIPAddressField(null=True)
    before = models.JSONField(null=True)
    after = models.JSONField(null=True)
    outcome = models.CharField(max_length=30, default="ok")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        # The audit page reads newest first by id (keyset pages, see transfers.audit): each filter has an
        # index that ends in the id, so a filtered page is an index range scan whatever the table's size.
        indexes = [
            models.Index(fields=["action", "id"], name="audit_action_id"),
            models.Index(fields=["actor_name", "id"], name="audit_actor_id"),
            models.Index(fields=["team", "id"], name="audit_team_id"),
            models.Index(fields=["target_type", "target_id", "id"], name="audit_target_id"),
            models.Index(fields=["outcome", "id"], name="audit_outcome_id"),
            models.Index(fields=["request_id"], name="audit_request"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type} {self.target_id} ({self.outcome})"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("audit events are append-only")


class UploadRecord(models.Model):
    """The upload ledger (the SDK's `is_db`): the last upload of each storage path of an account.

    A file whose size and mtime still match is not sent again, whatever manifest names it.
    """

    account = models.ForeignKey(FarmAccount, on_delete=models.CASCADE, related_name="+")
    area = models.CharField(max_length=10)  # input, output, config
    server = models.TextField()  # storage-relative, as engine.paths.clean_server_path gives it
    local = models.TextField()
    size = models.PositiveBigIntegerField()
    mtime_ns = models.BigIntegerField()
    checksum = models.CharField(max_length=80)
    uploaded_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "area", "server"], name="upload_record_unique")]

    def __str__(self) -> str:
        return f"{self.area}/{self.server} ({self.size} bytes)"


class FarmTask(models.Model):
    """A render task of a farm account: the SDK's task (reference/sdk-spec.md §6).

    `task_id` is the farm's own id (unique per account); `status` is the farm's status code (§6.1, read
    through transfers.farm.status: a code it does not know is kept and treated as not finished). A
    parent ("shell") task holds child tasks (render layers, passes); its own status is not what tells
    whether it ended, its leaves' are. `output_folder` is where its frames are, relative to the
    account's output area: `<task_id>_<scene>` (a layer of a parent: a sub-folder of the parent's).
    """

    account = models.ForeignKey(FarmAccount, on_delete=models.CASCADE, related_name="farm_tasks")
    task_id = models.PositiveBigIntegerField()
    scene = models.CharField(max_length=200)
    layer = models.CharField(max_length=100, blank=True)
    output_folder = models.CharField(max_length=400)
    status = models.IntegerField(default=0)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    frames_expected = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-task_id"]
        constraints = [models.UniqueConstraint(fields=["account", "task_id"], name="farm_task_id_unique")]

    def __str__(self) -> str:
        return f"task {self.task_id} ({self.scene})"


class FarmFrame(models.Model):
    """One output file of a farm task: its path relative to the account's output area, its size, and when
    it was announced finished (None: seen in the output area, not announced yet; it may be half-written)."""

    task = models.ForeignKey(FarmTask, on_delete=models.CASCADE, related_name="frames")
    path = models.CharField(max_length=1000)
    size = models.PositiveBigIntegerField()
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["task", "path"]
        constraints = [models.UniqueConstraint(fields=["task", "path"], name="farm_frame_path_unique")]

    def __str__(self) -> str:
        return f"{self.path} ({self.size} bytes)"


class FarmEventToken(models.Model):
    """The farm events token of an account, as a SHA-256 digest: the token itself is shown once, when a
    lead generates it, and never stored. Deleting the row revokes it."""

    account = models.OneToOneField(FarmAccount, on_delete=models.CASCADE, related_name="event_token")
    digest = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"events token of account {self.account_id}"


class ApiToken(models.Model):
    """A user's API key for scripts (`Authorization: Token <key>`), stored as a SHA-256 digest only: the key
    is shown once, when it is made (transfers.api_tokens), and never stored. `prefix` (its first characters)
    tells the user's keys apart; a revoked token stays listed, refused."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"API token {self.prefix}… ({self.name}) of {self.user_id}"


class NotificationSettings(models.Model):
    """What a user wants to hear about, and how: an email to their address and/or a signed webhook."""

    class Event(models.TextChoices):
        JOB_COMPLETED = "job_completed", "A job completed"
        JOB_FAILED = "job_failed", "A job failed, completed with errors or was cancelled"
        TASK_ENDED = "task_ended", "A farm task an auto download watches ended"
        TASK_FAILED = "task_failed", "A farm task an auto download watches failed"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings")
    email = models.BooleanField(default=False)
    webhook_url = models.URLField(max_length=500, blank=True)
    # The HMAC-SHA256 key of the webhook's X-Rvweb-Signature: shown once when made, stored encrypted.
    webhook_secret = EncryptedTextField(blank=True)
    events = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"notifications of {self.user}"


class NotificationDelivery(models.Model):
    """One attempt at sending one notification (a row per attempt): what its user sees on the settings page."""

    class Status(models.TextChoices):
        SENT = "sent", "Sent"
        RETRYING = "retrying", "Failed, will retry"
        FAILED = "failed", "Failed (no more tries)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_deliveries")
    channel = models.CharField(max_length=10)  # email, webhook
    event = models.CharField(max_length=20, choices=NotificationSettings.Event.choices)
    job = models.ForeignKey(TransferJob, null=True, on_delete=models.SET_NULL, related_name="+")
    task_id = models.BigIntegerField(null=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} to {self.user_id}: {self.status} (try {self.attempt})"


class Kiosk(models.Model):
    """A read-only dashboard link for one team's studio screen, made by a lead (see transfers.kiosks).

    The link's token is signed (django.core.signing) and shown once; only its SHA-256 digest is kept, so
    a leaked database holds no working link. Revoking closes the screens that use it at once."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="kiosks")
    name = models.CharField(max_length=100)  # where the screen hangs: "render room wall"
    digest = models.CharField(max_length=64, unique=True)
    revoked = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"kiosk {self.name} of {self.team}" + (" (revoked)" if self.revoked else "")


class BandwidthBudget(models.Model):
    """A speed limit shared by every job it covers, on every worker (transfers.budget): the whole studio,
    one farm account, or one transfer line of an account. In KB/s, the SDK's unit for max_speed."""

    class Scope(models.TextChoices):
        STUDIO = "studio", "The whole studio"
        ACCOUNT = "account", "A farm account"
        LINE = "line", "A transfer line of a farm account"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    account = models.ForeignKey(FarmAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    line = models.CharField(max_length=60, blank=True)
    max_speed = models.PositiveIntegerField()  # KB/s
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "account", "line"], name="budget_unique"),
            models.UniqueConstraint(fields=["scope"], condition=models.Q(scope="studio"), name="budget_one_studio"),
            models.CheckConstraint(
                condition=(
                    models.Q(scope="studio", account__isnull=True, line="")
                    | models.Q(scope="account", account__isnull=False, line="")
                    | (models.Q(scope="line", account__isnull=False) & ~models.Q(line=""))
                ),
                name="budget_scope_fields",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.max_speed} KB/s"

    @property
    def label(self) -> str:
        if self.scope == self.Scope.STUDIO:
            return "the studio"
        if self.scope == self.Scope.ACCOUNT:
            return f"account {self.account}"
        return f"line {self.line} of account {self.account}"
