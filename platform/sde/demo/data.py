"""Demo data for `sde demo`: synthesise, ingest, grant and provision, each step only once.

The workspace tests make their projects' data the same way (tests/support/hub_data.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, select

from sde.audit import audited_transaction
from sde.core.config import Settings
from sde.core.db import transaction
from sde.demo import DEMO_ACTOR
from sde.registry import service
from sde.registry.enums import Classification
from sde.registry.models import Dataset, Grant

DEMO_DATASET = "synthetic_ehr"
DEMO_SEED = 2026

ProgressHook = Callable[[str, int | None], Callable[[int], None]]


def build_demo_data(
    settings: Settings,
    engine: Engine,
    project_slug: str,
    persons: int = 10_000,
    actor: str = DEMO_ACTOR,
    progress: ProgressHook | None = None,
) -> list[str]:
    """Make sure the demo project has provisioned data; returns what was done."""
    from sde.ingest.pipeline import IngestOptions, ingest
    from sde.provision.build import DATABASE, data_dir, provision
    from sde.synth.write import synthesize

    done: list[str] = []
    source = settings.home / "demo-source"
    if not source.is_dir():
        summary = synthesize(persons, source, seed=DEMO_SEED)
        done.append(f"synthesised {summary.persons:,} persons ({summary.total_rows:,} rows)")

    with transaction(engine) as session:
        dataset = session.get(Dataset, DEMO_DATASET)
        has_version = bool(dataset and dataset.versions)
    if not has_version:
        result = ingest(
            settings,
            engine,
            source,
            DEMO_DATASET,
            actor,
            IngestOptions(
                suppress_to_k=settings.data.k_anonymity_target,
                description="Synthetic primary and secondary care records (OMOP-like).",
                classification=Classification.SYNTHETIC,
            ),
            progress,
        )
        done.append(f"ingested {DEMO_DATASET}@{result.version}")

    with audited_transaction(engine, settings) as session:
        dv = service.get_dataset_version(session, DEMO_DATASET)
        granted = session.scalar(
            select(Grant).where(
                Grant.project_slug == project_slug, Grant.dataset_version_id == dv.id
            )
        )
        if granted is None:
            service.grant_access(
                session,
                actor,
                slug=project_slug,
                dataset=DEMO_DATASET,
                version=dv.version,
                columns=[f"{table}.*" for table in dv.tables],
            )
            done.append(f"granted {project_slug} every table of {dv.label}")

    if granted is None or not (data_dir(settings, project_slug) / DATABASE).is_file():
        provision(settings, engine, project_slug, actor, progress)
        done.append(f"provisioned {project_slug}")
    return done
