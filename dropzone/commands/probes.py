"""What ``dropzone check`` tries: everything the daemon will use, contacted the way it will be.

Each probe returns :class:`Finding` values, ``ok`` or what is wrong and what to do, and never
raises for a problem it was asked to find: the command prints one line per finding and exits 1
if any failed. The probes take their parts (clients, buckets, paths) from the caller.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from dropzone import runtime
from dropzone.ark import errors
from dropzone.ark.models import ListJobsRequest
from dropzone.ledger import LedgerError, probe_ledger
from dropzone.runtime import UsageError
from dropzone.sources.base import SourceConfigError, SourceError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from dropzone.ark.client import ArkClient
    from dropzone.config import Settings, WatchRule
    from dropzone.sources.tos import TosBucket


@dataclass(frozen=True)
class Finding:
    subject: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.subject}: {'ok' if self.ok else 'FAILED'}: {self.detail}"


def _held_problem(exc: errors.Held) -> str:
    """What an answer refusing the account says: the clock, the credentials, or the account."""
    if isinstance(exc, errors.AuthError) and exc.code == "InvalidTimestamp":
        skew = f" (this clock is {exc.skew_s:+.0f} s off)" if exc.skew_s is not None else ""
        return f"{exc.describe()}{skew}: set the system clock right (NTP)"
    if isinstance(exc, errors.AuthError):
        return (
            f"the credentials were refused ({exc.describe()}): check the access key and "
            "secret key, and that they belong to the account that owns the bucket"
        )
    if isinstance(exc, errors.EndpointError):
        return f"this is not Ark's management API ({exc.describe()[:160]}): {exc.hint}"
    if isinstance(exc, errors.TrustStoreError):
        return f"nothing was sent: {exc.message}; {exc.hint}"
    return f"the account is refused ({exc.describe()}): {exc.hint}"


def _ark_problem(exc: errors.ArkError, endpoint: str) -> str:
    """What a failed List says about the setup, and what to change."""
    if isinstance(exc, errors.Held):
        return _held_problem(exc)
    if isinstance(exc, errors.Transient) and exc.status is None:
        return f"cannot reach {endpoint} ({exc.describe()}): check [ark] endpoint and the network"
    if isinstance(exc, errors.Throttled):
        return f"throttled ({exc.describe()}): the credentials are not proven yet; check again"
    if isinstance(exc, errors.Transient):
        return f"{endpoint} answered with a server error ({exc.describe()}): try again later"
    return f"refused ({exc.describe()}): check [ark] region, the project and the account"


def ark_findings(client: ArkClient, endpoint: str, projects: Iterable[str]) -> Iterator[Finding]:
    """One signed List (a page of one job) per project: proves endpoint, region, credentials
    and the service's activation, and creates nothing."""
    for project in sorted(set(projects)):
        subject = f"ark {endpoint} project {project!r}"
        try:
            page = client.list_jobs(ListJobsRequest(project_name=project, page_size=1))
        except errors.ArkError as exc:
            yield Finding(subject, ok=False, detail=_ark_problem(exc, endpoint))
            continue
        except ValidationError:
            detail = f"{endpoint} answered, but not as the Ark batch API does: check [ark] endpoint"
            yield Finding(subject, ok=False, detail=detail)
            continue
        yield Finding(subject, ok=True, detail=f"signed List answered ({page.total_count} jobs)")


def bucket_findings(rule: WatchRule, bucket: TosBucket, tos_region: str) -> Iterator[Finding]:
    """HeadBucket (it exists, we may use it, and its region) and the first listing page."""
    subject = f"watch {rule.name}: tos://{rule.bucket}/{rule.prefix}"
    try:
        region = bucket.region()
        page = next(bucket.pages(rule.prefix, page_size=100))
    except SourceConfigError as exc:
        yield Finding(subject, ok=False, detail=f"{exc}: check the bucket name and its access")
        return
    except SourceError as exc:
        yield Finding(subject, ok=False, detail=f"{exc}: check [tos] endpoint and the network")
        return
    if region is not None and region != tos_region:
        detail = f"the bucket is in region {region!r}, [tos] region is {tos_region!r}"
        yield Finding(subject, ok=False, detail=detail)
        return
    more = "" if page.is_last else " or more"
    where = f"region {region}" if region else "region not reported"
    listed = f"{len(page.objects)}{more} objects under the prefix"
    yield Finding(subject, ok=True, detail=f"bucket found ({where}), {listed}")


def _folder_problem(path: Path, *, writable: bool) -> str | None:
    if not path.exists():
        return f"{path} does not exist: create it or fix local_dir"
    if not path.is_dir():
        return f"{path} is not a folder: fix local_dir"
    try:
        next(os.scandir(path), None)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}: give the daemon's user read access"
    if writable and not _can_create_in(path):
        return f"cannot write in {path} (reports go there): give the daemon's user write access"
    return None


def folder_findings(rule: WatchRule) -> Iterator[Finding]:
    if rule.local_dir is None:
        return
    subject = f"watch {rule.name}: folder {rule.local_dir}"
    writable = rule.report and rule.preflight
    problem = _folder_problem(rule.local_dir, writable=writable)
    if problem:
        yield Finding(subject, ok=False, detail=problem)
        return
    yield Finding(subject, ok=True, detail="readable" + (" and writable" if writable else ""))


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made here, tried for real (permission bits do not say it for
    root, read-only mounts or full disks)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".dropzone-check-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    Path(name).unlink()
    return True


def feed_secret_findings(settings: Settings) -> Iterator[Finding]:
    """The event feeds' secret files read as the daemon reads them at its start."""
    named = {rule.feed for rule in settings.watches if rule.feed is not None}
    events = settings.events
    wanted = [
        ("http", "[events] http_secret_file", events.http_secret_file),
        ("kafka", "[events] kafka_password_file", events.kafka_password_file),
    ]
    for feed, setting, path in wanted:
        if feed not in named or path is None:
            continue
        try:
            runtime.read_secret(path, setting)
        except UsageError as exc:
            yield Finding(f"{feed} feed", ok=False, detail=str(exc))
            continue
        yield Finding(f"{feed} feed", ok=True, detail=f"{setting} readable")


def notify_findings(settings: Settings) -> Iterator[Finding]:
    """Each watch's notification targets as the daemon makes them at its start: the webhook's
    secret read and usable, the command's program found. Nothing is sent."""
    for rule in settings.watches:
        notify = rule.notify
        if notify is None:
            continue
        subject = f"watch {rule.name!r} notify"
        if notify.url is not None and notify.secret_file is not None:
            # Only where a watch has a webhook: the routes import httpx.
            from dropzone.config.notify import shown_url  # noqa: PLC0415
            from dropzone.notify.routes import signer_from  # noqa: PLC0415

            setting = f"watch {rule.name!r} notify.secret_file"
            try:
                signer_from(runtime.read_secret(notify.secret_file, setting), setting)
            except UsageError as exc:
                yield Finding(subject, ok=False, detail=str(exc))
            else:
                yield Finding(subject, ok=True, detail=f"webhook {shown_url(notify.url)} signed")
        if notify.command is not None:
            program = notify.command[0]
            found = shutil.which(program)
            if found is None:
                detail = f"command {program!r} not found or not executable: give its full path"
                yield Finding(subject, ok=False, detail=detail)
            else:
                yield Finding(subject, ok=True, detail=f"command {found} found")


def kafka_finding(settings: Settings) -> Iterator[Finding]:
    """The brokers asked for the topic, by a consumer made as the daemon makes its own."""
    if not any(rule.feed == "kafka" for rule in settings.watches):
        return
    from dropzone.events import kafka_client  # noqa: PLC0415 - librdkafka only where needed

    try:
        ok, detail = kafka_client.topic_problem(settings.events)
    except UsageError as exc:
        ok, detail = False, str(exc)
    yield Finding("kafka feed", ok=ok, detail=detail)


def postgres_ledger_finding(settings: Settings, url: str) -> Finding:
    """The database reached and a transaction begun and rolled back; before the first run,
    whether the user may create the ledger's tables."""
    from dropzone.ledger.postgres import described, probe_postgres  # noqa: PLC0415 - see runtime

    subject = f"ledger {described(url)}"
    try:
        detail = probe_postgres(url, runtime.ledger_password(settings))
    except (LedgerError, UsageError) as exc:
        return Finding(subject, ok=False, detail=str(exc))
    return Finding(subject, ok=True, detail=detail)


def ledger_finding(path: Path) -> Finding:
    """The ledger opened for writing (a transaction begun and rolled back), or, before the
    first run, its folders and file made as the daemon would make them, then removed."""
    subject = f"ledger {path}"
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long, say: stat cannot even look
        return Finding(subject, ok=False, detail=f"{exc.strerror}: fix [ledger] path")
    if exists:
        try:
            detail = probe_ledger(path)
        except LedgerError as exc:
            return Finding(subject, ok=False, detail=str(exc))
        return Finding(subject, ok=True, detail=detail)
    return _new_ledger_finding(subject, path)


def _new_ledger_finding(subject: str, path: Path) -> Finding:
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is None or not existing.is_dir():
        return Finding(subject, ok=False, detail=f"{existing} is not a folder: fix [ledger] path")
    if not _can_create_in(existing):
        detail = f"cannot create files in {existing}: fix [ledger] path or the folder's access"
        return Finding(subject, ok=False, detail=detail)
    problem = _try_to_create(path, existing)
    if problem is not None:
        detail = f"cannot create {problem.filename}: {problem.strerror}: fix [ledger] path"
        return Finding(subject, ok=False, detail=detail)
    return Finding(subject, ok=True, detail=f"not there yet; {existing} takes new files")


def _try_to_create(path: Path, existing: Path) -> OSError | None:
    """Make the missing folders and the file as the daemon would, in a scratch folder of
    this check's own inside ``existing`` (the deepest folder there), then remove it all; what
    stood in the way, if anything. Tried for real: permission bits do not say it for root,
    read-only mounts, full disks or names too long. The real names, not the real places: two
    checks at once (or a daemon starting) would find each other's folders half made."""
    missing = path.relative_to(existing)
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".dropzone-check-", dir=existing))
    except OSError as exc:
        return exc
    try:
        trial = scratch / missing
        trial.parent.mkdir(parents=True, exist_ok=True)  # scratch itself, for a ledger beside it
        os.close(os.open(trial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as exc:
        return _as_for(exc, scratch, existing)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


def _as_for(exc: OSError, scratch: Path, existing: Path) -> OSError:
    """The error as the real path would have it: the scratch folder's name taken out."""
    if exc.filename is not None:
        name = os.fsdecode(exc.filename).replace(str(scratch), str(existing), 1)
        return OSError(exc.errno, exc.strerror, name)
    return exc
