"""Map the `sde` namespace onto the component folders.

Each component folder holds one portion of the `sde` namespace
(`platform/sde/registry`, `accreditation/sde/audit`, ...). The folders
themselves are never importable, so nothing shadows the standard library's
`platform` module.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

COMPONENTS = ("platform", "accreditation", "airlock", "workspace-images")

packages: list[str] = []
package_dir: dict[str, str] = {}
for component in COMPONENTS:
    for package in find_namespace_packages(
        component, include=["sde.*"], exclude=["*.__pycache__", "*.__pycache__.*"]
    ):
        if not (Path(component) / package.replace(".", "/")).is_dir():
            continue
        packages.append(package)
        top = ".".join(package.split(".")[:2])
        package_dir[top] = f"{component}/{top.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
