"""A folder watch's results put back beside its inputs: a target of the Completed notice.

When a job of a local-folder watch completes, its result files are fetched from the job's
output folder into ``<local_dir>/<results_dir>`` (``results/<relpath_stem>/`` by default),
each whole under its name or not at all; the notice is settled once they are there, which is
what records it, and a crash before that fetches them again (a file already there whole is
not fetched twice). Ark may write the files a moment after the phase: none there yet is a
failed try, tried again later.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dropzone import plan
from dropzone.jobs.results import fetch_results, job_folder
from dropzone.log import get_logger
from dropzone.notify.targets import DeliveryFailed
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    from dropzone.config import WatchRule
    from dropzone.jobs.results import ResultStore
    from dropzone.ledger.notices import Notice


class ResultsTarget:
    name = "results"

    def __init__(self, rule: WatchRule, store: ResultStore) -> None:
        assert rule.local_dir is not None
        self._rule = rule
        self._store = store

    def wants(self, event: str) -> bool:
        return event == "Completed"

    def deliver(self, notice: Notice) -> None:
        told = json.loads(notice.body)
        rule, key = self._rule, str(told["key"])
        if not told.get("job_id") or not told.get("output_dir"):
            return  # nothing to fetch: no job folder on record
        fields = plan.template_fields(rule, key, notice.happened_at)
        assert rule.local_dir is not None
        into = rule.local_dir / rule.results_dir.format(**fields)
        folder = job_folder(str(told["output_dir"]), str(told["job_id"]))
        try:
            fetched = fetch_results(self._store, str(told["bucket"]), folder, into)
        except (SourceError, OSError) as exc:
            raise DeliveryFailed(f"results of {key}: {exc}") from None
        if not fetched:
            raise DeliveryFailed(
                f"results of {key}: nothing under tos://{told['bucket']}/{folder} yet"
            )
        get_logger().info(
            "results.fetched",
            watch=rule.name,
            key=key,
            job_id=told["job_id"],
            folder=str(into),
            files=[str(item.path.relative_to(into)) for item in fetched],
        )
