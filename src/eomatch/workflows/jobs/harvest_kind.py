"""The ``harvest`` kind: one run of a configured harvester as a job (what schedules run).

The harvester is named, not described, in the params: its definition is the ``harvesters:``
entry of the configuration the worker reads (``config``: a YAML file as the worker sees it;
default the worker user's configuration file). Idempotent as the command is: pages are
upserts by id and the high-water mark is stored after each page, so a job retried after a
failure, or run again by a worker that replaced a killed one, resumes where it stopped.
History: actor ``harvest:<name>``, kind ``harvest``, run ``job:<id>:<attempt>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from eomatch.config.harvest import HarvesterConfig
from eomatch.errors import InputError
from eomatch.workflows.jobs.registry import JobContext, JobKind, JobParams, JobResult, register

if TYPE_CHECKING:
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.jobs.inputs import InputPolicy


class HarvestParams(JobParams):
    """Params of a ``harvest`` job."""

    harvester: str = Field(min_length=1, description="name of a configured harvester")
    config: str | None = Field(
        default=None, description="configuration file holding it (default: the user's)"
    )
    dry_run: bool = False


def resolve(params: HarvestParams) -> HarvesterConfig:
    """The harvester the params name, from the configuration the worker reads."""
    from eomatch.config.settings import Settings
    from eomatch.io.config_files import load_config
    from eomatch.workflows.harvest import find_harvester

    path = Path(params.config).expanduser() if params.config else None
    config = load_config(path, Settings().user_config_file)
    return find_harvester(list(config.harvesters), params.harvester)


def _confine(params: HarvestParams, policy: InputPolicy) -> HarvestParams:
    """Over HTTP: only a harvester of the worker's own configuration. A configuration file
    chosen by the caller could send the worker's credentials (``headers_env``) anywhere."""
    del policy
    if params.config is not None:
        raise InputError(
            "params.config is not accepted over HTTP: name a harvester of the worker's "
            "configuration"
        )
    return params


def _precheck(params: HarvestParams, store: PgstacStore) -> None:
    """Refuse an unknown harvester (or an unreadable configuration) before queuing."""
    del store
    resolve(params)


def _cancelled(ctx: JobContext) -> bool:
    ctx.check_cancelled()  # raises JobCancelled: the worker records the job as cancelled
    return False


def run_harvest_job(params: HarvestParams, ctx: JobContext) -> JobResult:
    """Run the harvester with the job's database."""
    from eomatch.workflows.harvest import run_harvest

    h = resolve(params)
    ctx.stage("harvest")
    report = run_harvest(
        h,
        ctx.store,
        dry_run=params.dry_run,
        run_id=f"job:{ctx.job_id}:{ctx.attempt}",
        cancelled=lambda: _cancelled(ctx),
    )
    return JobResult(info={"summary": report.summary(), **report.to_json()})


HARVEST = register(
    JobKind(
        name="harvest",
        params_model=HarvestParams,
        run=run_harvest_job,
        description="run a configured harvester once (eomatch harvest run NAME)",
        precheck=_precheck,
        confine=_confine,
    )
)
