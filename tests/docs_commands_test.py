"""Every command the documentation shows works as a user types it (issue 12, item 3).

The documents are parsed at run time (tests/doc_commands.py): every fenced shell block of README.md,
docs/*.md and network/fabric/README.md runs, in document order, through the INSTALLED console script
(`.venv/bin/fedchain` first on PATH, in a subprocess: argument parsing exactly as a user gets it,
e.g. `--out` never taken by MPyC), each document as its own scenario in its own empty working
directory with its own embedded network. A newly documented command that does not work fails here.

Nothing is run differently without a line in the tables below saying what and why; the test prints
each document's skips and substitutions. `fedchain hospital run` without --round/--rounds follows the
ledger until stopped: it runs in the background (a terminal of its own), must start (print its first
line) or end by itself, and must exit 0 when stopped with SIGTERM at the end of the document. A
`$ fedchain ...` line followed by `error: ...` output must fail with that output (hex ids aside).
Every `--out F` / `--report-json F` that ran must have written F. Per failure the report names the
document, the line, the command and the tail of its output.

Time (2 cores, load ~1, 2026-11-30): README 28 s, audit 9 s, demo 49 s, operator 80 s, round_by_hand
14 s, Fabric README (Compose files only) 1 s: 3 min 15 s with start-up and clean-up. Most of it is the
campaigns' training and the MPC rounds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import find_free_port_base
from doc_commands import (
    HELPERS,
    Repeat,
    Script,
    Skip,
    Substitution,
    build_script,
    error_pattern,
    out_paths,
    slowest,
    traced_lines,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("fedchain").parent  # the venv's bin: the installed console script
DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")),
        "network/fabric/README.md"]
SCENARIO_TIMEOUT_S = 600  # a hang (e.g. a campaign waiting for hospitals that never come) ends here
FABRIC = bool(os.environ.get("FABRIC_BIN"))

# Commands run before a document's first line: (command, why).
SETUP = {
    "docs/audit.md": ("fedchain network up", "the page audits the consortium's network, which it assumes is running"),
}

# Doc-specific rules come first: the global `network up` rule then applies to the text they add.
SUBSTITUTIONS = [
    Substitution("README.md", "fedchain network up [--network .fedchain]", "fedchain network up",
                 "optional-argument notation; the brackets' content is the default"),
    Substitution("README.md", "fedchain network enroll hospital1", "fedchain network up && fedchain network enroll "
                 "hospital1", "the network section ends with `network down`; a reader starts it again"),
    Substitution("README.md", "fedchain operator run --rounds 6 --root-data root.npz --min-updates 3",
                 "fedchain operator run --rounds 3 --root-data root.npz --min-updates 1",
                 "the README has one hospital (hospital1, following): docs/operator.md runs such a campaign in "
                 "full with three hospitals; here rounds 1..3 (the auditors' section asks for round 3) with "
                 "hospital1's update each (FAILED under the privacy floor of 3: the campaign reports it and goes on)"),
    Substitution("docs/demo.md", "fedchain demo --network D ",
                 "fedchain network up && fedchain demo --network .fedchain --rounds 1 --hospitals 4 ",
                 "D = a folder with a running network: the first demo's folder, started again; one smaller round "
                 "(the first demo line already runs the default 8 hospitals)"),
    Substitution("docs/demo.md", "--rounds 6 --report-json out.json", "--rounds 2 --report-json out.json",
                 "time: 2 of the 6 rounds of 8 hospitals (6 rounds ~70 s on 2 cores, more under load)"),
    Substitution("docs/demo.md", "fedchain demo --inference-check --hospitals 4 ",
                 "fedchain demo --inference-check --policy '{\"inference_batch\": 4}' --hospitals 4 ",
                 "time: a batch of 4 instead of 32 images (the check's MPC time grows with the batch: ~25 s "
                 "instead of ~135 s on 2 cores); the same flags and code path"),
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
    Skip(r"^export FABRIC_(BIN|CFG|CCAAS)", "where the reader's Fabric is: the test uses the FABRIC_BIN it was given"),
    Skip(r"^export (FABRIC_CFG_PATH|CORE_PEER)|^peer |^curl -s http://127\.0\.0\.1",
         "Fabric's own CLI on Fabric's default ports (the test moves every network to a free port block)"),
    Skip(r"FABRIC_BIN=.*pytest", "the real-Fabric test suite itself (tests/fabric_real_test.py)"),
    Skip(r"network\.sh up", "the same command as `fedchain network up --fabric` above it ('or instead'; "
         "tests/network_backend_test.py checks they are the same)"),
    Skip(r"bench/measure_detection\.py", "a benchmark: 30 demo campaigns (hours)"),
    *([] if FABRIC else [Skip(r"\.fedchain-fabric|--fabric\b|--compose\b",
                              "a real Fabric network: needs FABRIC_BIN (Compose: also Docker)")]),
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


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` passed (a bound on a hang, not a speed requirement)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_follower(job: Path, script: Script, outcome: Outcome) -> None:
    """A background follower (bg, files in `job`) must have started (printed a line) or ended by itself;
    then it is stopped with SIGTERM, as a hospital stops it, and must exit 0."""
    line = int((job / "line").read_text())
    out, err, rc_file = job / "out", job / "err", job / "rc"

    def ended() -> bool:
        return rc_file.exists() and rc_file.read_text().strip() != ""

    wait_for(lambda: ended() or out.read_text().strip() != "", 120)
    how = "ended by itself"
    if not ended():
        how = "stopped with SIGTERM"
        with contextlib.suppress(ProcessLookupError):
            os.kill(int((job / "pid").read_text()), signal.SIGTERM)
        if not wait_for(ended, 120):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((job / "pid").read_text()), signal.SIGKILL)
            outcome.failures.append(describe(script, line, "a follower did not stop within 120 s of SIGTERM",
                                             err.read_text()))
            return
    rc = int(rc_file.read_text())
    outcome.notes.append(f"background {script.doc}:{line}: {how}, exit {rc}")
    if rc != 0:
        outcome.failures.append(describe(script, line, f"a follower (in the background) exited {rc}",
                                         out.read_text() + err.read_text()))


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


def run_document(repo: Path, doc: str, tmp_path: Path, subs: list[Substitution], skips: list[Skip],
                 repeats: list[Repeat], setup: str = "") -> tuple[Script, Outcome, float]:
    """Run one document's script in `tmp_path/work`; stop what it left running; return what went wrong."""
    work, meta = tmp_path / "work", tmp_path / "meta"
    work.mkdir()
    meta.mkdir()
    (meta / "helpers.sh").write_text(HELPERS)
    script = build_script(repo, doc, subs, skips, repeats, meta / "helpers.sh", setup)
    assert not script.unused_rules, f"{doc}: rules that no longer match the document: {script.unused_rules}"
    (meta / "script.sh").write_text(script.text)
    env = {k: v for k, v in os.environ.items() if k != "FEDCHAIN_NETWORK"}  # `.fedchain` in the scenario's folder
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", DOCTEST_DIR=str(meta),
               DOCS_BASE_PORT=str(find_free_port_base(span=70)), PYTHONUNBUFFERED="1")
    outcome = Outcome()
    log = meta / "output.log"
    stopped_at: int | None = None  # the document line where the run ended early
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", str(meta / "script.sh")], cwd=work, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=SCENARIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            ran = traced_lines((meta / "trace.log").read_text())
            stopped_at = ran[-1][0] if ran else 1
            outcome.failures.append(describe(script, stopped_at, f"still running after {SCENARIO_TIMEOUT_S} s",
                                             log.read_text(errors="replace")))
    elapsed = time.monotonic() - started
    try:
        for job in sorted((meta / "bg").glob("*"), key=lambda p: int(p.name)):
            stop_follower(job, script, outcome)
    finally:
        stop_networks(work, env)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever this scenario's shell still runs (a hung command)
        proc.wait()
    if (meta / "failed").exists():
        stopped_at, rc = map(int, (meta / "failed").read_text().split())
        outcome.failures.insert(0, describe(script, stopped_at, f"exit {rc}", log.read_text(errors="replace")))
    elif proc.returncode not in (0, -signal.SIGKILL):
        outcome.failures.append(f"{doc}: the script exited {proc.returncode}\n{tail(log.read_text())}")
    judge(script, work, meta, stopped_at, outcome)
    for line, seconds in slowest((meta / "trace.log").read_text()):
        outcome.notes.append(f"slow: {doc}:{line} took {seconds:.1f} s")
    return script, outcome, elapsed


@pytest.mark.slow
@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 300)
@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_work(doc: str, tmp_path: Path) -> None:
    setup, setup_why = SETUP.get(doc, ("", ""))
    script, outcome, elapsed = run_document(REPO, doc, tmp_path, SUBSTITUTIONS, SKIPS, REPEATS, setup)
    if not script.commands:
        pytest.skip(f"{doc}: no shell examples")
    print(f"\n{doc}: {len(script.commands)} command lines in {elapsed:.0f} s", *outcome.notes, sep="\n  ")
    if setup:
        print(f"  set-up before line 1: {setup}\n      why: {setup_why}")
    for cmd, why in script.skipped:
        print(f"  skipped {doc}:{cmd.first_line}: {cmd.text}\n      why: {why}")
    for line, sub in script.substituted:
        print(f"  changed {doc}:{line}: {sub.old!r} -> {sub.new!r}\n      why: {sub.why}")
    assert not outcome.failures, "\n\n".join(outcome.failures)


# --- the machinery itself (fast) -------------------------------------------------------------------------
SAMPLE = """# sample

```sh
for i in 1 2; do
  fedchain data synth --out h$i.npz \\
      --n-train 10 --n-val 10 --n-test 10 [--seed S]
done
make demo
```

```
$ fedchain data synth --out x.npz --n-train 10 --n-val 10 --n-test 10
error: nope 0123456789abcdef
```

```sh
fedchain hospital run --wallet w --data h1.npz  # follows
fedchain data synth --n-train 10
```
"""


def test_scripts_keep_document_lines(tmp_path: Path) -> None:
    (tmp_path / "doc.md").write_text(SAMPLE)
    script = build_script(tmp_path, "doc.md", [Substitution("doc.md", " [--seed S]", "", "why")],
                          [Skip(r"^make\b", "make")], [Repeat("doc.md", "hospital run", ({"h1": "h2"},), "why")],
                          tmp_path / "helpers.sh")
    lines = [""] + script.text.splitlines()  # lines[n] = document line n
    assert lines[1] == f'source "{tmp_path / "helpers.sh"}"'
    assert lines[4] == "for i in 1 2; do"
    assert lines[5] == "fedchain data synth --out h$i.npz --n-train 10 --n-val 10 --n-test 10"
    assert lines[6] == "" and lines[7] == "done" and lines[8].startswith(":")
    assert lines[12] == "expect_error 12 fedchain data synth --out x.npz --n-train 10 --n-val 10 --n-test 10"
    assert lines[13] == ""  # the output the document shows is not run
    assert lines[17] == ("bg fedchain hospital run --wallet w --data h1.npz; "
                         "bg fedchain hospital run --wallet w --data h2.npz")  # a follower, repeated
    assert [cmd.text for cmd, _ in script.skipped] == ["make demo"]
    assert script.command_at(6) is script.command_at(5) and not script.unused_rules


@pytest.mark.slow  # five console-script runs, ~10 s
@pytest.mark.timeout(120)
def test_a_broken_example_fails_with_its_line(tmp_path: Path) -> None:
    """The test can fail: a documented error that does not happen, a follower that dies (no network here),
    a command the CLI refuses: each reported with the document's line."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "doc.md").write_text(SAMPLE.replace("[--seed S]", ""))
    _, outcome, _ = run_document(tmp_path / "repo", "doc.md", tmp_path, [], [Skip("^make", "-")], [])
    assert [f.splitlines()[0] for f in outcome.failures] == [
        "doc.md:18: exit 2",
        "doc.md:17: a follower (in the background) exited 1",
        "doc.md:12: the document shows this failing; it exited 0",
        "doc.md:12: expected output 'error: nope 0123456789abcdef' (hex ids aside), got"]
    assert "the following arguments are required: --out" in outcome.failures[0]
    assert (tmp_path / "work" / "h2.npz").exists()  # the loop ran before
