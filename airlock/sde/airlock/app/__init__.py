"""The airlock's web service: a JSON API and server-rendered pages over `sde.airlock.service`.

It runs as the JupyterHub-managed service `airlock` (`sde.airlock.app.server`),
on the workspace bridge address at `workspaces.airlock_port` (the one port
besides the gate the workspace firewall opens), and browsers reach it through
the proxy on its own host, `airlock--service.<hub host>` (sde.hub.origins).
Everything here is thin: identify the caller (`auth`), parse, call the
service, render. Who may do what is `sde.airlock.permissions`, in which state
`sde.airlock.policies`, what each person sees `sde.airlock.visibility`.
"""
