"""One hardened workspace container per person x project, after asking the registry.

The named server's name is the project slug. At every start the registry's
`access_decision` is asked at that moment, so a lapse (accreditation,
training, project dates or status, membership) stops the next spawn at once;
a refusal is shown to the person with every reason and audited. A running
workspace is asked again at every poll of the hub (`Spawner.poll_interval`,
`workspaces.access_check_seconds`): once access has lapsed, the poll reports it
stopped, the hub stops it, and the lapse is audited with its reasons. Starts
and stops are audited too.

The container gets the project's provisioned data read-only at /data, a
persistent work volume of its own (person x project, a fixed-size filesystem:
sde.workspaces.workvolumes), the hardening and the
internal (no egress) network of `sde.workspaces`, and a Jupyter configuration
that removes the /files/ handler and the JupyterLab download commands.

With a warm pool (`workspaces.warm_pool`, see sde.workspaces.pool) the
container is one started ahead with the same image, hardening, limits and
network, claimed here: the data and work volume are mounted into it and the
server's environment handed to it. A cold container loses its default route
(sde.workspaces.routes) before `start` returns, a pool container before it can
be claimed; a container that keeps one is never used. Without a ready pool
container, or when the claim fails, the container is created cold as above.
"""

from __future__ import annotations

import asyncio
import re
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from dockerspawner import DockerSpawner
from jupyterhub.utils import url_escape_path, url_path_join
from tornado import web
from traitlets import Unicode, default, validate

from sde.core.errors import AccessDenied, SdeError
from sde.data import DATABASE
from sde.hub import events
from sde.hub.errors import HubError
from sde.hub.origins import origins_for
from sde.hub.store import Store
from sde.registry.access import access_decision
from sde.workspaces import events as workspace_events
from sde.workspaces import hardening, names, pool, routes, workvolumes

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,29}")


class SpawnRefused(AccessDenied):
    """A spawn the registry does not allow; its message is what the person sees.

    Raised to the hub as `HubError(refused)`: a 403 with this message.
    """

    def __init__(self, project: str, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(f"Workspace for project {project} refused: " + "; ".join(reasons) + ".")


class WorkspaceSpawner(DockerSpawner):
    """DockerSpawner that asks the registry first and mounts the project's data."""

    projects_dir = Unicode(
        "", config=True, help="Host directory of provisioned projects; empty: the sde setting."
    )

    _data_build = ""
    _warm: pool.Claimed | None = None
    _data_dir: Path | None = None
    _ingress_dir: Path | None = None
    _lapsed: list[str] | None = None
    _work: workvolumes.Mounted | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.name:
            # Served on a host of its own, not the hub's (sde.hub.origins).
            site = origins_for(self.store.settings)
            path = url_path_join(self.user.base_url, url_escape_path(self.name), "/")
            self.proxy_spec = site.workspace_spec(self.user.name, self.name, path)
            self.public_url = site.workspace_url(self.user.name, self.name) + path

    @cached_property
    def store(self) -> Store:
        return Store()

    @property
    def project(self) -> str:
        return str(self.name or "")

    # Names from (person, project) through sde.workspaces.names: unambiguous, and
    # saying nothing of whose they are to a workspace that sees them in DNS.
    @default("object_name")
    def _object_name_default(self) -> str:
        if not self.project:
            return str(super()._object_name_default())
        return names.container_name(self.store.settings, self.user.name, self.project)

    @validate("oauth_client_id")
    def _keyed_oauth_client_id(self, proposal: Any) -> str:
        # JupyterHub's own `jupyterhub-user-{user}-{server}` collides like the old names.
        if not self.project:
            return str(proposal.value)
        return names.oauth_client_id(self.store.settings, self.user.name, self.project)

    def _decide(self) -> list[str]:
        """Reasons to refuse this spawn now (empty when allowed); a refusal is audited."""
        username, project = self.user.name, self.project
        if not project:
            return [
                "a workspace belongs to a project: start a named server whose name is the "
                "project's short name (slug)"
            ]
        if not SLUG.fullmatch(project):
            return [f"{project[:40]!r} is not a project short name (a-z, 0-9, -)"]
        with self.store.read() as s:
            decision = access_decision(s, username, project)
        if not decision.allowed:
            with self.store.write() as s:
                events.record_refusal(s, username, project, decision.reasons)
            return decision.reasons
        return []

    async def poll(self) -> int | None:
        """None while the container runs and access still holds; else an exit status."""
        status: int | None = await super().poll()
        if status is not None or not self.project:
            return status
        if self._lapsed is None:
            reasons = await asyncio.to_thread(self._lapse_reasons)
            if not reasons:
                return None
            self._lapsed = reasons
            self.log.warning(
                "Stopping %s: access to project %s lapsed: %s",
                self._log_name,
                self.project,
                "; ".join(reasons),
            )
            # The hub does not stop a server whose poll says it has stopped: stop it
            # here, then report it stopped so that the hub forgets it.
            await self.stop(now=True)
        return 1

    def _lapse_reasons(self) -> list[str]:
        with self.store.read() as s:
            decision = access_decision(s, self.user.name, self.project)
        if decision.allowed:
            return []
        with self.store.write() as s:
            events.record_lapse(s, self.user.name, self.project, decision.reasons)
        return decision.reasons

    def _project_data(self) -> Path:
        root = Path(self.projects_dir or self.store.settings.projects_dir)
        # `data` is a symlink swapped atomically by provisioning: mount the build it
        # names now, so a running workspace keeps one consistent version.
        data = (root / self.project / "data").resolve()
        if not (data / DATABASE).is_file():
            with self.store.write() as s:
                events.record_refusal(
                    s, self.user.name, self.project, ["project data is not provisioned"]
                )
            raise web.HTTPError(
                409,
                f"Project {self.project} has no provisioned data yet: an operator runs "
                f"`sde projects provision {self.project}`.",
            )
        return data

    async def start(self) -> Any:
        reasons = await asyncio.to_thread(self._decide)
        if reasons:
            raise HubError(SpawnRefused(self.project or "(none)", reasons))
        data = await asyncio.to_thread(self._project_data)
        self._data_build = data.name
        self._data_dir = data
        self._warm = None
        self._lapsed = None
        self._work = await asyncio.to_thread(self._mount_work)
        self._ingress_dir = await asyncio.to_thread(
            hardening.ensure_ingress_dir, self.store.settings, self.project
        )
        self._apply(
            hardening.workspace_options(
                data, str(self._work.path), self.store.settings, ingress=self._ingress_dir
            )
        )
        ip, port = await super().start()
        await self._wait_listening(ip, port)
        await asyncio.to_thread(self._audit_spawn)
        return ip, port

    def _mount_work(self) -> workvolumes.Mounted:
        """The person's work volume for this project, mounted on the host (created if new)."""
        settings, username, project = self.store.settings, self.user.name, self.project

        def claimants(legacy: str) -> list[tuple[str, str]]:
            with self.store.read() as s:
                return workvolumes.legacy_claimants(s, settings, legacy)

        try:
            mounted = workvolumes.mount(self._docker_client, settings, username, project, claimants)
        except SdeError as exc:
            # The operator's message may name other people and projects: the log and
            # the audit log get it, the researcher does not.
            self.log.error("Work volume of %s not mounted: %s", self._log_name, exc)
            with self.store.write() as s:
                events.record_refusal(s, username, project, [f"work volume: {exc}"])
            raise web.HTTPError(
                409,
                f"Workspace for project {project} cannot start: its work volume needs an "
                "operator (the reason is in the hub's log).",
            ) from None
        if mounted.carried_from:
            with self.store.write() as s:
                workspace_events.record_work_carried(
                    s, "sde:hub", username, project, mounted.carried_from, mounted.volume
                )
        return mounted

    async def _wait_listening(self, ip: str, port: int) -> None:
        """Poll the new server briefly and often until it answers.

        The hub's own wait backs off exponentially (0.2 s doubling, with jitter),
        which adds seconds to a start that takes about two; answering here first
        lets its first check succeed. A container that exits meanwhile fails the
        start at once instead of after the hub's http_timeout.
        """
        url = f"http://{ip}:{port}{self.server.base_url}api"
        deadline = time.monotonic() + self.http_timeout
        checks = 0
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                try:
                    await client.get(url)
                    return
                except httpx.HTTPError:
                    await asyncio.sleep(0.01 if self._warm else 0.05)
                checks += 1
                if checks % 50 == 0 and await self.poll() is not None:
                    raise web.HTTPError(
                        500, f"Workspace for project {self.project} exited while starting."
                    )

    # ------------------------------------------------------------ warm pool

    @cached_property
    def _docker_client(self) -> Any:
        from sde.workspaces.engine import docker_client

        return docker_client()

    async def create_object(self) -> dict[str, Any]:
        settings = self.store.settings
        if settings.workspaces.warm_pool > 0 and self._data_dir and self._work:
            argv = await self.get_command()
            if Path(str(argv[0])).name == "jupyterhub-singleuser":
                image_id = (await self.docker("inspect_image", self.image))["Id"]
                server = {"env": self.get_env(), "argv": argv, "cwd": hardening.WORK_DIR}
                self._warm = await asyncio.to_thread(
                    pool.claim,
                    self._docker_client,
                    settings,
                    image_id,
                    self.container_name,
                    self._data_dir,
                    self._work.path,
                    server,
                    {"user": self.user.name, "project": self.project, "work": self._work.work_id},
                    self._ingress_dir,
                )
                if self._warm is not None:
                    return {"Id": self._warm.container_id}
                self.log.info("No warm workspace ready for %s: starting one cold", self._log_name)
        result: dict[str, Any] = await super().create_object()
        return result

    async def start_object(self) -> None:
        if self._warm is not None:
            return  # started by the pool, its default route already removed
        await super().start_object()
        try:
            # Before the server can serve anyone's code (sde.workspaces.routes).
            await asyncio.to_thread(
                routes.remove_default_route, self._docker_client, self.object_id
            )
        except routes.RouteError as exc:
            # Never a workspace with a route out: kill it now, the hub's stop removes it.
            await self.docker("kill", self.object_id)
            raise web.HTTPError(
                500, f"Workspace for project {self.project} not started: {exc}"
            ) from None

    def _apply(self, options: dict[str, Any]) -> None:
        """Hardening, limits, network and mounts of this person x project workspace."""
        self.network_name = options["network_name"]
        self.extra_host_config = options["extra_host_config"]
        self.extra_create_kwargs = {
            **options["extra_create_kwargs"],
            "labels": names.labels(self.store.settings, self.user.name, self.project),
        }
        self.volumes = options["volumes"]
        self.read_only_volumes = {
            **options["read_only_volumes"],
            str(hardening.jupyter_config_dir(self.store.settings)): hardening.JUPYTER_CONFIG_MOUNT,
        }
        self.mem_limit = options["mem_limit"]
        self.cpu_limit = options["cpu_limit"]

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        # The server's token may not report activity (the hub goes by its proxy):
        # without the URL jupyterhub-singleuser does not try, and logs no refusals.
        env.pop("JUPYTERHUB_ACTIVITY_URL", None)
        env.update(
            {
                "SDE_PROJECT": self.project,
                "SDE_DATA_DIR": hardening.DATA_DIR,
                # The workspace's airlock client (sde.outputs) calls here with its own token.
                "SDE_AIRLOCK_URL": hardening.airlock_url(self.store.settings),
                "JUPYTER_CONFIG_PATH": hardening.JUPYTER_CONFIG_MOUNT,
            }
        )
        return env

    def _audit_spawn(self) -> None:
        with self.store.write() as s:
            events.record_spawn(
                s,
                self.user.name,
                self.project,
                {
                    "image": self.image,
                    "container": (self.object_id or "")[:12],
                    "data_build": self._data_build,
                    "work_volume": self._work.volume if self._work else "",
                    "warm": self._warm is not None,
                },
            )

    async def stop(self, now: bool = False) -> None:
        container = (self.object_id or "")[:12]
        if not container:
            # A refused or failed start made no container: nothing to stop or audit.
            await self._release_work()
            self.clear_state()
            return
        slot = await self._slot()
        await super().stop(now=now)
        if slot:
            try:
                await asyncio.to_thread(pool.release, self.store.settings, slot)
            except Exception:
                # The stop itself succeeded; the pool's sweep retries the slot.
                self.log.exception("Releasing warm-pool slot %s failed", slot)
        await self._release_work()
        if self.project:
            await asyncio.to_thread(self._audit_stop, container)

    async def _release_work(self) -> None:
        """Unmount the work volume's filesystem once its workspace is gone."""
        if not self.project:
            return
        work_id = names.workspace_id(self.store.settings, self.user.name, self.project)
        try:
            await asyncio.to_thread(workvolumes.release, self.store.settings, work_id)
        except Exception:
            # The hub's next start releases it (workvolumes.sweep).
            self.log.exception("Unmounting the work volume of %s failed", self._log_name)

    async def _slot(self) -> str:
        """The warm-pool slot of this workspace's container (empty for a cold one)."""
        import docker

        try:
            info = await self.docker("inspect_container", self.object_id)
        except docker.errors.NotFound:
            return ""
        return str((info["Config"].get("Labels") or {}).get(pool.SLOT_LABEL, ""))

    def _audit_stop(self, container: str) -> None:
        details: dict[str, Any] = {"container": container}
        if self._lapsed:
            details["reason"] = "access lapsed"
        with self.store.write() as s:
            events.record_stop(s, "sde:hub", self.user.name, self.project, details)
