"""Project data for workspace tests, made the way the platform makes it.

Synthesise a small population, ingest it, grant it to the project and
provision the project (`sde.demo.data.build_demo_data`, the chain `sde demo`
runs), so a workspace sees exactly what `sde projects provision` produces.
"""

from __future__ import annotations

from sde.hub.client import HubClient
from tests.support.hub import HubSite

PERSONS = 300
# What the workspace runs; `expected_counts` runs the same on the host.
COUNT_BY_SEX = "SELECT sex, count(*) FROM person GROUP BY sex ORDER BY sex"
QUERY = f"""
import json, sde.data
con = sde.data.connect()
print(json.dumps(dict(con.sql({COUNT_BY_SEX!r}).fetchall())))
"""


def provision_project(site: HubSite, slug: str) -> None:
    from sde.demo.data import build_demo_data

    build_demo_data(site.settings, site.engine, slug, persons=PERSONS, actor="test:operator")


def expected_counts(site: HubSite, slug: str) -> dict[str, int]:
    import sde.data

    con = sde.data.connect(site.settings.projects_dir / slug / "data")
    try:
        return dict(con.sql(COUNT_BY_SEX).fetchall())
    finally:
        con.close()


def query_counts(client: HubClient, server: str) -> dict[str, int]:
    import json

    return dict(json.loads(client.execute(server, QUERY)))
