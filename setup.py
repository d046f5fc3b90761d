"""Maps the four package roots of DESIGN.md section 1 into one distribution.

setup.cfg holds the metadata; only the multi-root package discovery needs code.
"""

from setuptools import find_packages, setup

ROOTS = {
    "fedchain": "sdk",
    "fedchain_cc": "chaincode",
    "fedchain_mpc": "mpc_nodes",
    "fedchain_devnet": "network/devnet",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for top, root in ROOTS.items():
    package_dir[top] = f"{root}/{top}"
    packages += [p for p in find_packages(root) if p == top or p.startswith(top + ".")]

setup(packages=packages, package_dir=package_dir, include_package_data=True)
