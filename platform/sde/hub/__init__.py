"""The researchers' front door: JupyterHub configured from the sde settings.

`credentials` keeps sign-in secrets (argon2 password hashes, encrypted TOTP
secrets, lockout state), `authenticator` checks them at the hub's login page,
`spawner` starts one hardened workspace per person x project after asking the
registry, and `config` turns the sde settings into a JupyterHub configuration.
"""
