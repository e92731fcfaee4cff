"""`python -m sde.workspaces.pool`: the filler, as the hub's managed service runs it."""

from sde.workspaces.pool.filler import main

if __name__ == "__main__":
    main()
