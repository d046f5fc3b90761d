"""Launch this node's party of a round's MPyC run as a subprocess, with a timeout and retries.

Why a subprocess per run: MPyC's runtime is a process-wide singleton configured from argv, so
each round gets a fresh `python -m fedchain_mpc.mpc_program -P <all parties> -I <i> [--ssl]`
(the job file named by JOB_ENV: `fedchain_mpc.job`). Every node launches its party; MPyC
connects them (the higher party keeps dialing until the lower one listens), so nodes that
start a few seconds apart still meet. A failed or timed-out run is retried with exponential
backoff; the whole run is deterministic given the job, so a retry gives the same result.

With TLS between parties (`--ssl`), MPyC reads `.config/party_<i>.crt|.key` and
`.config/mpyc_ca.crt` relative to its working directory and checks the peer's certificate
for the host name `MPyC party <j>`; `fedchain.identity.issue_party_tls` makes such a certificate
from the consortium's TLS CA and `prepare_run_dir` puts the files where MPyC looks.
MPyC alone would listen on all interfaces; mpc_program binds the listener to this party's own -P host
(mpyc_bind), so a node's party is reachable only at its configured address, and decodes what peers
send with safe_wire instead of MPyC's pickle.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedchain.identity import PartyTLS

from fedchain_mpc.job import JOB_ENV, PARENT_ENV, JobError, JobFailure, JobResult, MPCJob, load_output

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 4.0


class MPCRunError(Exception):
    """The MPC run failed after all retries (the message says why, from the program's error output)."""


class MPCAborted(MPCRunError):
    """The run is no longer wanted (e.g. the round was finalized by the other nodes meanwhile)."""


AbortCheck = Callable[[], "str | None"]


@dataclass(frozen=True)
class RunnerSettings:
    node_index: int
    parties: tuple[str, ...]  # "host:port" of every node's MPyC party, in node index order
    threshold: int
    tls: PartyTLS | None = None
    timeout_s: float = 600.0  # the protocol, from the moment all parties are connected
    connect_timeout_s: float = 900.0  # waiting for every party to come up (a node restarting)
    abort_check_s: float = 5.0  # how often a waiting party asks whether the run is still wanted
    retries: int = 3
    backoff_s: float = 2.0
    python: str = sys.executable
    extra_env: dict[str, str] = field(default_factory=dict)


def prepare_run_dir(run_dir: Path, settings: RunnerSettings) -> None:
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.tls is not None:
        cfg = run_dir / ".config"
        cfg.mkdir(exist_ok=True, mode=0o700)
        i = settings.node_index
        shutil.copyfile(settings.tls.cert, cfg / f"party_{i}.crt")
        shutil.copyfile(settings.tls.key, cfg / f"party_{i}.key")
        os.chmod(cfg / f"party_{i}.key", 0o600)
        shutil.copyfile(settings.tls.ca, cfg / "mpyc_ca.crt")


def command(settings: RunnerSettings) -> list[str]:
    cmd = [settings.python, "-m", "fedchain_mpc.mpc_program"]  # PARENT_ENV: it sets PDEATHSIG first
    for party in settings.parties:
        cmd += ["-P", party]
    cmd += ["-I", str(settings.node_index), "-T", str(settings.threshold)]
    if settings.tls is not None:
        cmd.append("--ssl")
    return cmd


def completed_result(job: MPCJob, run_dir: Path) -> JobResult | None:
    """The output of an earlier successful run of exactly this job (a node that crashed after the run
    but before attesting must not start a run its peers have finished with)."""
    try:
        if MPCJob.load(run_dir / "job.json") != job:
            return None
        output = load_output(job.output_path)
    except JobError:
        return None
    return output if isinstance(output, JobResult) else None


_GLOG = re.compile(r"^[IWEF]\d{4} ")  # gRPC core's own log lines, not the program's


def _last_error(path: Path, offset: int) -> str:
    """The last meaningful line this attempt wrote to stderr (usually the exception)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            lines = fh.read(1 << 20).decode(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [ln.strip() for ln in lines if ln.strip() and not _GLOG.match(ln)]
    return lines[-1][:500] if lines else ""


CONNECTED = b"parties connected"
PEER_LOST = (b"connection_lost", b"Connection reset", b"Broken pipe")


def party_log_state(output: bytes) -> tuple[bool, bool]:
    """(all parties connected, a peer was lost) from what the party process logged.

    Why from the text: the party is MPyC in another process and MPyC says both only in its log
    ("All 3 parties connected.", and asyncio's connection_lost / reset messages when a peer dies: MPyC
    does not abort the run, a clean close just unregisters the peer). This is the one place that reads it."""
    return CONNECTED in output, any(marker in output for marker in PEER_LOST)


def _new_output(files: list[tuple[Path, int]]) -> bytes:
    out = b""
    for path, offset in files:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                out += fh.read(1 << 20)
        except OSError:
            pass
    return out


def established_peers(pid: int) -> int | None:
    """Linux: how many ESTABLISHED TCP connections the process holds (None where /proc is unavailable)."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if len(cols) > 9 and cols[3] == "01" and cols[9] in inodes:
                    count += 1
        return count
    except OSError:
        return None


def _supervise(proc: subprocess.Popen, settings: RunnerSettings, files: list[tuple[Path, int]],
               poll_s: float = 0.1, should_abort: AbortCheck | None = None) -> int:
    """Wait for the party with two clocks: waiting for peers may take long (a node restarting),
    the protocol itself may not. MPyC does not abort when a peer dies (a clean close just
    unregisters it, a reset is only logged), so a lost peer is detected from its log and by
    the run timeout, and the attempt fails fast instead of hanging."""
    started = time.monotonic()
    connected_at: float | None = None
    short_since: float | None = None
    last_abort_check = started
    while True:
        rc = proc.poll()
        if rc is not None:
            return rc
        now = time.monotonic()
        connected, peer_lost = party_log_state(_new_output(files))
        if connected_at is None and connected:
            connected_at = now
        if connected_at is not None and peer_lost:
            raise MPCRunError(f"MPC party {settings.node_index}: a peer party went away during the run")
        if connected_at is not None:
            peers = established_peers(proc.pid)
            if peers is not None and peers < len(settings.parties) - 1:
                short_since = short_since or now  # a finishing party closes its connections and exits
                if now - short_since > 3.0:
                    raise MPCRunError(f"MPC party {settings.node_index}: lost the connection to a peer party "
                                      f"during the run")
            else:
                short_since = None
        if connected_at is None and should_abort is not None and now - last_abort_check >= settings.abort_check_s:
            last_abort_check = now
            reason = should_abort()
            if reason:
                raise MPCAborted(f"MPC party {settings.node_index}: run abandoned: {reason}")
        if connected_at is None and now - started > settings.connect_timeout_s:
            raise MPCRunError(f"MPC party {settings.node_index}: not all {len(settings.parties)} parties connected "
                              f"within {settings.connect_timeout_s:g} s (are all nodes up?)")
        if connected_at is not None and now - connected_at > settings.timeout_s:
            raise MPCRunError(f"MPC party {settings.node_index}: the run did not finish within "
                              f"{settings.timeout_s:g} s of connecting (a peer may have died)")
        time.sleep(poll_s)


def run_once(job: MPCJob, run_dir: Path, settings: RunnerSettings,
             should_abort: AbortCheck | None = None) -> JobResult:
    """One attempt: write the job, run the party, return its result (raises MPCRunError)."""
    prepare_run_dir(run_dir, settings)
    job_path = run_dir / "job.json"
    out_path = Path(job.output_path)
    out_path.unlink(missing_ok=True)
    job.write(job_path)
    # m parties share the machine's cores: multithreaded BLAS in each would oversubscribe them
    single_thread = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env = {**os.environ, **single_thread, JOB_ENV: str(job_path), PARENT_ENV: str(os.getpid()), **settings.extra_env}
    stdout, stderr = run_dir / "party.out", run_dir / "party.err"
    offsets = [p.stat().st_size if p.exists() else 0 for p in (stdout, stderr)]
    with open(stdout, "ab") as so, open(stderr, "ab") as se:
        proc = subprocess.Popen(command(settings), cwd=run_dir, env=env, stdout=so, stderr=se,
                                stdin=subprocess.DEVNULL)
        (run_dir / "party.pid").write_text(str(proc.pid))
        try:
            rc = _supervise(proc, settings, [(stdout, offsets[0]), (stderr, offsets[1])], should_abort=should_abort)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output: JobResult | JobFailure | None = None
    if out_path.exists():
        try:
            output = load_output(out_path)
        except JobError:
            output = None
    if rc != 0 or not isinstance(output, JobResult):
        why = output.error if isinstance(output, JobFailure) else _last_error(stderr, offsets[1])
        status = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        raise MPCRunError(f"MPC party {settings.node_index} failed ({status}){': ' + why if why else ''}")
    return output


def run_with_retries(job: MPCJob, run_dir: Path, settings: RunnerSettings,
                     sleep: Callable[[float], None] = time.sleep,
                     attempt_hook: Callable[[int, str | None], None] | None = None,
                     should_abort: AbortCheck | None = None) -> JobResult:
    """Retry a failed run (a peer restarting, a port still busy) with exponential backoff.

    `should_abort()` is asked every few seconds while the party waits for its peers; a reason
    string ends the run at once (MPCAborted, no retry): peers that already finished will never
    come, e.g. because the round was finalized by the other nodes."""
    done = completed_result(job, run_dir)
    if done is not None:
        log.info("round %d: reusing the completed MPC run in %s", job.round_id, run_dir)
        return done
    last = ""
    for attempt in range(settings.retries + 1):
        if attempt:
            # short and capped: a waiting party costs nothing, and survivors of a dead peer should
            # be back in their connect phase before the restarted node's party starts dialing
            delay = min(settings.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            log.warning("round %d: MPC run attempt %d failed (%s); retrying in %.1f s", job.round_id, attempt,
                        last, delay)
            sleep(delay)
        try:
            if attempt_hook:
                attempt_hook(attempt, last or None)
            return run_once(job, run_dir, settings, should_abort)
        except MPCAborted:
            raise
        except MPCRunError as exc:
            last = str(exc)
    raise MPCRunError(f"round {job.round_id}: MPC run failed {settings.retries + 1} times; last: {last}")


def parties_arg(parties: Sequence[str]) -> tuple[str, ...]:
    for p in parties:
        host, _, port = p.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"MPC party address {p!r} must be host:port")
    return tuple(parties)
