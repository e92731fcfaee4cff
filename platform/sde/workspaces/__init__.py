"""Safe settings for researcher workspaces: container hardening and network isolation.

- `hardening`: the Docker options of one workspace container (non-root, no
  capabilities, no privilege gain, read-only root, limits, data read-only at /data).
- `network`: the internal workspace network (no route out, no traffic between
  workspaces) and its DNS policy.
- `firewall`: host rules so that a workspace reaches only the hub API and the
  airlock API on the bridge address.
- `engine`: the one way to a Docker client (and a listing that survives containers
  removed meanwhile).
- `pool`: the warm pool of containers started ahead of need (a package: `mounts`,
  `slots`, `containers`, `filler`).

See docs/workspace-isolation.md for what is guaranteed and how it is tested.
"""
