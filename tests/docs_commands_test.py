"""Every command the documentation shows works as a user types it (issue 12, item 3).

The documents are parsed at run time (tests/doc_commands.py): every fenced shell block of README.md,
docs/*.md and network/fabric/README.md runs, in document order, through the INSTALLED console script
(`.venv/bin/fedchain` first on PATH, in a subprocess: argument parsing exactly as a user gets it,
e.g. `--out` never taken by MPyC), each document as its own scenario in its own empty working
directory with its own embedded network. A newly documented command that does not work fails here.

Nothing is run differently without a line in the tables below saying what and why. Per failure the
report names the document, the line, the command and the tail of its output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import find_free_port_base
from doc_commands import HELPERS, Repeat, Script, Skip, Substitution, build_script, error_pattern, out_paths

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("fedchain").parent  # the venv's bin: the installed console script
DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")),
        "network/fabric/README.md"]
SCENARIO_TIMEOUT_S = 600  # a hang (e.g. a campaign waiting for hospitals that never come) ends here
FABRIC = bool(os.environ.get("FABRIC_BIN"))

# Commands run before a document's first line.
SETUP = {
    # the page audits the consortium's network, which it assumes is running
    "docs/audit.md": "fedchain network up",
}

# Doc-specific rules come first: the global `network up` rule then applies to the text they add.
SUBSTITUTIONS = [
    Substitution("README.md", "fedchain network up [--network .fedchain]", "fedchain network up",
                 "optional-argument notation; the brackets' content is the default"),
    Substitution("README.md", "fedchain network enroll hospital1", "fedchain network up && fedchain network enroll "
                 "hospital1", "the network section ends with `network down`; a reader starts it again"),
    Substitution("README.md", "fedchain operator run --rounds 6 --root-data root.npz --min-updates 3",
                 "fedchain data synth --out root.npz --n-train 100 --n-val 400 --n-test 1000 --seed 100 && "
                 "fedchain operator run --rounds 3 --root-data root.npz --min-updates 1",
                 "the README has one hospital (hospital1, following) and no root.npz: docs/operator.md runs "
                 "such a campaign in full with three hospitals; here rounds 1..3 (the auditors' section asks for "
                 "round 3) with hospital1's update each (FAILED under the privacy floor of 3: the campaign "
                 "reports it and goes on)"),
    Substitution("docs/demo.md", "fedchain demo --network D ",
                 "fedchain network up && fedchain demo --network .fedchain --rounds 1 --hospitals 4 ",
                 "D = a folder with a running network: the first demo's folder, started again; one smaller round "
                 "(the first demo line already runs the default 8 hospitals)"),
    Substitution("docs/demo.md", "--rounds 6 --report-json out.json", "--rounds 2 --report-json out.json",
                 "time: 2 of the 6 rounds of 8 hospitals (6 rounds ~70 s on 2 cores, more under load)"),
    Substitution("docs/demo.md", " [--network D] [--rounds N]", "",
                 "optional-argument notation; without --rounds it follows rounds (run in the background)"),
    # every document: the embedded network's default ports (7050..) may be taken by another network on
    # the machine (the demo moves on to a free block by itself, `network up` refuses); each scenario
    # gets its own free block
    Substitution("*", "fedchain network up", 'fedchain network up --base-port "$DOCS_BASE_PORT"',
                 "a free port block per scenario"),
]

SKIPS = [
    Skip(r"^make\b", "a make target: `make demo` = `fedchain demo` (run from docs/demo.md), `make test` is this "
         "suite, `make bench` the benchmarks"),
    Skip(r"\bfedchain data fetch\b", "downloads from the internet"),
    Skip(r"^curl -sSLO|install-fabric\.sh", "downloads Fabric from the internet"),
    Skip(r"\bdocker\b", "needs a Docker daemon"),
    Skip(r"^export (FABRIC|CORE_PEER)|^peer |^curl -s http://127\.0\.0\.1",
         "Fabric's own CLI on Fabric's default ports (the test moves every network to a free port block)"),
    Skip(r"FABRIC_BIN=.*pytest", "the real-Fabric test suite itself (tests/fabric_real_test.py)"),
    Skip(r"network\.sh up", "the same command as `fedchain network up --fabric` above it ('or instead'; "
         "tests/network_backend_test.py checks they are the same)"),
    Skip(r"bench/measure_detection\.py", "a benchmark: 30 demo campaigns (hours)"),
    *([] if FABRIC else [Skip(r"\.fedchain-fabric|--fabric\b", "a real Fabric network: needs FABRIC_BIN")]),
]

REPEATS = [
    Repeat("docs/operator.md", "mkdir site1",
           ({"site1": "site2", "hospital1": "hospital2", "--seed 1": "--seed 2"},
            {"site1": "site3", "hospital1": "hospital3", "--seed 1": "--seed 3"}),
           "'hospitals 2 and 3 the same with their number', each in a terminal of its own (background)"),
]


@dataclass
class Outcome:
    """What went wrong in one document's run, as lines for the report."""

    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def tail(text: str, n: int = 25) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines()[-n:])


def describe(script: Script, line: int, what: str, output: str) -> str:
    cmd = script.command_at(line)
    shown = cmd.text if cmd else "(no command on this line)"
    return f"{script.doc}:{line}: {what}\n    $ {shown}\n{tail(output)}"


def stop_followers(meta: Path, script: Script, outcome: Outcome) -> None:
    """Background followers (bg): each must have started (printed a line) or exited 0; then SIGTERM, exit 0."""
    for job in sorted((meta / "bg").glob("*"), key=lambda p: int(p.name)):
        line = int((job / "line").read_text())
        pid = int((job / "pid").read_text())
        rc_file, out = job / "rc", job / "out"
        deadline = time.monotonic() + 120
        while not rc_file.exists() and not out.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not rc_file.exists():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 120
            while not rc_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        if not rc_file.exists():
            os.kill(pid, signal.SIGKILL)
            outcome.failures.append(describe(script, line, "a follower did not stop within 120 s of SIGTERM",
                                             (job / "err").read_text()))
            continue
        rc = int(rc_file.read_text())
        if rc != 0:
            outcome.failures.append(describe(script, line, f"a follower (background) exited {rc}",
                                             out.read_text() + (job / "err").read_text()))


def stop_networks(work: Path, env: dict[str, str]) -> None:
    """`fedchain network down` for every network the scenario started (Compose folders are never started)."""
    for settings in [*work.rglob("embedded.json"), *work.rglob("fabric.json")]:
        folder = settings.parent
        if (folder / "compose").exists():
            continue
        subprocess.run([str(BIN / "fedchain"), "network", "down", "--network", str(folder)], env=env, cwd=work,
                       capture_output=True, timeout=120)


def judge(script: Script, work: Path, meta: Path, failed_line: int | None, outcome: Outcome) -> None:
    """Expected errors failed with the document's message; every `--out F` that ran wrote F."""
    skipped = {id(cmd) for cmd, _ in script.skipped}
    for cmd in script.commands:
        if id(cmd) in skipped or (failed_line is not None and cmd.last_line >= failed_line):
            continue
        if cmd.expects_error:
            rc_file = meta / "expect" / f"{cmd.first_line}.rc"
            if not rc_file.exists():
                continue  # not reached
            output = (meta / "expect" / f"{cmd.first_line}.out").read_text()
            if int(rc_file.read_text()) == 0:
                outcome.failures.append(describe(script, cmd.first_line, "the document shows this failing; it "
                                                 "exited 0", output))
            for expected in cmd.expected_output:
                if not error_pattern(expected).search(output):
                    outcome.failures.append(describe(script, cmd.first_line, f"expected output {expected!r} "
                                                     "(hex ids aside), got", output))
            continue
        for path in out_paths(cmd):
            if not (work / path).exists():
                outcome.failures.append(describe(script, cmd.first_line, f"it did not write {path}", ""))


def run_document(doc: str, tmp_path: Path) -> tuple[Script, Outcome, float]:
    work, meta = tmp_path / "work", tmp_path / "meta"
    work.mkdir()
    meta.mkdir()
    (meta / "helpers.sh").write_text(HELPERS)
    script = build_script(REPO, doc, SUBSTITUTIONS, SKIPS, REPEATS, meta / "helpers.sh", SETUP.get(doc, ""))
    assert not script.unused_rules, f"{doc}: rules that no longer match the document: {script.unused_rules}"
    (meta / "script.sh").write_text(script.text)
    env = {k: v for k, v in os.environ.items() if k != "FEDCHAIN_NETWORK"}  # `.fedchain` in the scenario's folder
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", DOCTEST_DIR=str(meta),
               DOCS_BASE_PORT=str(find_free_port_base()), PYTHONUNBUFFERED="1")
    outcome = Outcome()
    started = time.monotonic()
    log = meta / "output.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", str(meta / "script.sh")], cwd=work, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=SCENARIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            trace = (meta / "trace.log").read_text().splitlines()
            last = next((ln for ln in reversed(trace) if ln.startswith("+ line ")), "+ line 0:")
            line = int(last.split()[2].rstrip(":"))
            outcome.failures.append(describe(script, line, f"still running after {SCENARIO_TIMEOUT_S} s",
                                             log.read_text(errors="replace")))
    elapsed = time.monotonic() - started
    try:
        stop_followers(meta, script, outcome)
    finally:
        stop_networks(work, env)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever this scenario's shell left running
        except ProcessLookupError:
            pass
        proc.wait()
    failed_line = None
    if (meta / "failed").exists():
        failed_line, rc = map(int, (meta / "failed").read_text().split())
        outcome.failures.insert(0, describe(script, failed_line, f"exit {rc}", log.read_text(errors="replace")))
    elif proc.returncode not in (0, -signal.SIGKILL):
        outcome.failures.append(f"{doc}: the script exited {proc.returncode}\n{tail(log.read_text())}")
    judge(script, work, meta, failed_line, outcome)
    return script, outcome, elapsed


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_work(doc: str, tmp_path: Path) -> None:
    script, outcome, elapsed = run_document(doc, tmp_path)
    if not script.commands:
        pytest.skip(f"{doc}: no shell examples")
    print(f"{doc}: {len(script.commands)} command lines in {elapsed:.0f} s")
    for cmd, why in script.skipped:
        print(f"  skipped {doc}:{cmd.first_line}: {cmd.text}\n      why: {why}")
    assert not outcome.failures, "\n\n".join(outcome.failures)
