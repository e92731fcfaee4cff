# Mounted read-only into every sde workspace (JUPYTER_CONFIG_PATH). Defence in
# depth only: the airlock is the control on what leaves.
c = get_config()  # type: ignore[name-defined]  # noqa: F821
# No /files/ handler: files are not served for download from the workspace.
c.ContentsManager.files_handler_class = None
c.FileContentsManager.files_handler_class = None
