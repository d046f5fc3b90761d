"""DESIGN.md §1's dependency rules, checked on every import in the tree.

The rules (arrows only downwards):
- `fedchain_cc` imports only the standard library, `google.protobuf`, `grpc`, `cryptography`, the Fabric
  protos (`fabric_protos`, the import name of setup.cfg's hyperledger-fabric-protos) and itself: it is deployed
  alone. In particular never `fedchain`, `fedchain_mpc` or torch.
- `fedchain_devnet` never imports `fedchain_cc`: it drives the chaincode over the chaincode gRPC protocol.
- `fedchain` never imports `fedchain_mpc` or `fedchain_devnet`, except in the CLI layer (`fedchain.cli`) that
  starts them. No other exception.

(DESIGN.md says nothing about torch in the MPC party program, so that is not a rule here.)
Inside fedchain, ONE_WAY lists arrows that were cycles once and must stay one-way (demo/simulation,
netctl.embedded/embedded_configs).

Every import counts: module level, inside functions, under TYPE_CHECKING, relative ones (resolved against the
file's package), and `importlib.import_module("...")` / `__import__("...")` with a string literal. Processes
started by module name (`python -m fedchain_devnet`) are not imports: talking to a process is allowed.
The checker is plain functions over source text, so the self-tests below can show that it fails.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CLI_LAYER = "fedchain.cli"
# arrows inside fedchain that go one way only: (importer, never imported, why)
ONE_WAY = (
    ("fedchain.demo", "fedchain.simulation",
     "simulation -> demo only: the simulation is the demo's plaintext twin (its defaults, its report format)"),
    ("fedchain.netctl.embedded_configs", "fedchain.netctl.embedded",
     "embedded -> embedded_configs only: the config writers take a ConfigPlan of plain values"),
)
CC_ALLOWED = frozenset(sys.stdlib_module_names) | {"google.protobuf", "grpc", "cryptography", "fabric_protos",
                                                    "fedchain_cc"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.imported}: {self.why}"


def package_roots(repo: Path = REPO) -> dict[str, str]:
    """Import name -> folder, read from setup.py's ROOTS (the one place that maps the four roots)."""
    tree = ast.parse((repo / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ROOTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no ROOTS mapping")


def module_name(path: Path, top: str, root: Path) -> tuple[str, bool]:
    """(dotted module name, is a package __init__) of a file below `root`/`top`."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a relative import `from .<level> target` in `module`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, *([target] if target else [])])


def _literal_import(call: ast.Call) -> str | None:
    """The module named by importlib.import_module("x") / import_module("x") / __import__("x"), if a literal."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, wherever it stands."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            # `from pkg import sub` may import the submodule pkg.sub: both names are checked
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call):
            name = _literal_import(node)
            if name is not None:
                if name.startswith("."):
                    level = len(name) - len(name.lstrip("."))
                    name = _resolve(module, is_package, level, name.lstrip(".") or None)
                found.append((node.lineno, name))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _allowed_in_chaincode(name: str) -> bool:
    return any(_within(name, allowed) for allowed in CC_ALLOWED)


def check_source(source: str, top: str, module: str, path: str, is_package: bool = False) -> list[Violation]:
    """The rule violations of one file of package `top` (fedchain, fedchain_cc, fedchain_mpc, fedchain_devnet)."""
    out: list[Violation] = []
    seen: set[tuple[int, str]] = set()
    for line, name in imports_of(source, module, is_package):
        head = name.split(".")[0]
        why = None
        if top == "fedchain_cc":
            if head in ("fedchain", "fedchain_mpc", "fedchain_devnet", "torch"):
                why = "fedchain_cc is deployed alone: never fedchain, fedchain_mpc, fedchain_devnet or torch"
            elif not _allowed_in_chaincode(name):
                why = ("fedchain_cc may import only the stdlib, google.protobuf, grpc, cryptography, fabric_protos "
                       "and itself")
        elif top == "fedchain_devnet" and head == "fedchain_cc":
            why = "fedchain_devnet talks to the chaincode over the chaincode gRPC protocol, never by import"
        elif top == "fedchain" and head in ("fedchain_mpc", "fedchain_devnet") and not _within(module, CLI_LAYER):
            why = f"fedchain imports {head} only in the CLI layer ({CLI_LAYER})"
        else:
            why = next((w for src, dst, w in ONE_WAY if _within(module, src) and _within(name, dst)), None)
        if why and (line, head) not in seen:
            seen.add((line, head))
            out.append(Violation(path, line, name, why))
    return out


def check_tree(repo: Path = REPO) -> list[Violation]:
    out: list[Violation] = []
    for top, folder in package_roots(repo).items():
        root = repo / folder
        for path in sorted((root / top).rglob("*.py")):
            module, is_package = module_name(path, top, root)
            out += check_source(path.read_text(), top, module, str(path.relative_to(repo)), is_package)
    return out


# --- the tree ----------------------------------------------------------------------------------------------------
def test_the_tree_follows_the_dependency_rules() -> None:
    violations = check_tree()
    assert not violations, "DESIGN.md §1 dependency rules broken:\n" + "\n".join(map(str, violations))


def test_every_package_root_is_checked() -> None:
    roots = package_roots()
    assert set(roots) == {"fedchain", "fedchain_cc", "fedchain_mpc", "fedchain_devnet"}
    for top, folder in roots.items():
        assert (REPO / folder / top / "__init__.py").is_file(), (top, folder)


# --- the checker can fail ----------------------------------------------------------------------------------------
BAD_SDK = '''\
import json
from fedchain.identity import Consortium


def verdicts():
    from fedchain_mpc import plaintext
    return plaintext


def devnet():
    import importlib
    return importlib.import_module("fedchain_devnet.config")
'''


def test_checker_reports_function_level_and_import_module_in_the_sdk() -> None:
    found = check_source(BAD_SDK, "fedchain", "fedchain.simulation.loop", "sdk/fedchain/simulation/loop.py")
    assert [(v.path, v.line, v.imported) for v in found] == [
        ("sdk/fedchain/simulation/loop.py", 6, "fedchain_mpc"),
        ("sdk/fedchain/simulation/loop.py", 12, "fedchain_devnet.config"),
    ]
    assert str(found[0]) == ("sdk/fedchain/simulation/loop.py:6: imports fedchain_mpc: fedchain imports fedchain_mpc "
                             "only in the CLI layer (fedchain.cli)")


def test_checker_exempts_only_the_cli_layer() -> None:
    assert check_source(BAD_SDK, "fedchain", "fedchain.cli.simulate", "sdk/fedchain/cli/simulate.py") == []
    assert check_source(BAD_SDK, "fedchain", "fedchain.cli", "sdk/fedchain/cli/__init__.py", is_package=True) == []
    # a name that merely starts like the CLI layer is not in it
    assert len(check_source(BAD_SDK, "fedchain", "fedchain.client", "sdk/fedchain/client.py")) == 2


def test_checker_resolves_relative_imports() -> None:
    assert imports_of("from ..demo.report import RoundRecord\n", "fedchain.simulation.loop") == [
        (1, "fedchain.demo.report"), (1, "fedchain.demo.report.RoundRecord")]
    assert imports_of("from . import loop\n", "fedchain.simulation", is_package=True) == [
        (1, "fedchain.simulation"), (1, "fedchain.simulation.loop")]
    assert imports_of("from .. import plaintext\n", "fedchain_mpc.checks.cosine") == [
        (1, "fedchain_mpc"), (1, "fedchain_mpc.plaintext")]
    found = check_source("import importlib\nimportlib.import_module('..demo', 'x')\n", "fedchain",
                         "fedchain.simulation.loop", "loop.py")
    assert found == [] and imports_of("importlib.import_module('..demo')\n", "fedchain.simulation.loop") == [
        (1, "fedchain.demo")]


def test_checker_holds_the_chaincode_to_its_allow_list() -> None:
    src = ("import json\nimport grpc\nfrom google.protobuf.message import DecodeError\nimport google.cloud\n"
           "from fabric_protos.peer import proposal_pb2\nfrom cryptography import x509\nimport numpy\n"
           "from fedchain_cc.fl import keys\n\n\ndef f():\n    import torch\n    from fedchain.canonical import x\n")
    found = check_source(src, "fedchain_cc", "fedchain_cc.fl.tx", "chaincode/fedchain_cc/fl/tx.py")
    assert [(v.line, v.imported) for v in found] == [(4, "google.cloud"), (7, "numpy"), (12, "torch"),
                                                      (13, "fedchain.canonical")]


def test_checker_keeps_the_one_way_arrows() -> None:
    src = "from fedchain.simulation.config import SimConfig\nfrom fedchain.netctl import embedded\n"
    found = check_source(src, "fedchain", "fedchain.demo.config", "sdk/fedchain/demo/config.py")
    assert [(v.line, v.imported) for v in found] == [(1, "fedchain.simulation.config")]
    found = check_source(src, "fedchain", "fedchain.netctl.embedded_configs", "sdk/fedchain/netctl/embedded_configs.py")
    assert [(v.line, v.imported) for v in found] == [(2, "fedchain.netctl.embedded")]
    assert check_source("from fedchain.netctl import embedded_configs\n", "fedchain", "fedchain.netctl.embedded",
                        "sdk/fedchain/netctl/embedded.py") == []


def test_checker_keeps_the_devnet_off_the_chaincode() -> None:
    src = "import fedchain_cc.shim\nfrom fedchain.identity import Consortium\n"
    found = check_source(src, "fedchain_devnet", "fedchain_devnet.peer", "network/devnet/fedchain_devnet/peer.py")
    assert [(v.line, v.imported) for v in found] == [(1, "fedchain_cc.shim")]
    assert check_source(src, "fedchain_mpc", "fedchain_mpc.node", "mpc_nodes/fedchain_mpc/node.py") == []


def test_failure_message_lists_file_and_line(tmp_path: Path) -> None:
    """check_tree on a throw-away tree with one bad file: the message a failing run would print."""
    (tmp_path / "setup.py").write_text('ROOTS = {"fedchain": "sdk"}\n')
    pkg = tmp_path / "sdk" / "fedchain"
    (pkg / "netctl").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "netctl" / "__init__.py").write_text("")
    (pkg / "netctl" / "embedded_configs.py").write_text("import os\n\n\ndef f():\n"
                                                       "    from fedchain_devnet.config import make_devnet_config\n")
    assert [str(v) for v in check_tree(tmp_path)] == [
        "sdk/fedchain/netctl/embedded_configs.py:5: imports fedchain_devnet.config: fedchain imports fedchain_devnet "
        "only in the CLI layer (fedchain.cli)"]
