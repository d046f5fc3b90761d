"""Turn the shell examples of a Markdown document into one bash script that runs them as a user types them.

Used by tests/docs_commands_test.py. A document's fenced shell blocks (```sh, ```bash, ```shell, ```console,
and unlabelled blocks whose lines start with `$ `) are copied into a script **at their own line numbers**
(every other line blank), so bash's $LINENO is the document's line: a failing command is reported by
the ERR trap with the line a reader can open. Whole blocks run in one bash (`set -eEuo pipefail`), so
loops, `\\` continuations and variables set by earlier lines (also of earlier blocks: one terminal per
document) work as typed.

What cannot run as typed is changed by explicit, listed rules (see the test for the tables and why):
- `Substitution`: literal text replaced in a document's code lines (placeholders, smaller runs, a
  network restarted first). Each must match at least once, so a stale rule fails instead of rotting.
- `Skip`: a command replaced by `:` (with its reason printed in the test's report).
- `Repeat`: a block's lines run again with other values ("hospitals 2 and 3 the same with their number").
- followers (`fedchain hospital run` without --round/--rounds) run in the background (`bg`, see HELPERS);
  the test stops them at the end and requires a clean exit.
- a `$ fedchain ...` line followed by `error: ...` output must fail with that error (`expect_error`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
# a long-running follower: no --round R / --rounds N to make it end by itself
FOLLOWER = re.compile(r"\bfedchain hospital run\b(?![^;&|]*--rounds?\b)")
HEX_ID = re.compile(r"\b[0-9a-f]{8,}\b")
TRAILING_COMMENT = re.compile(r"\s+#[^'\"]*$")  # `cmd   # note` (no quote after the #)


@dataclass(frozen=True)
class Substitution:
    """`old` -> `new` in the code lines of `doc` (a path relative to the repository, or "*" for every
    document, applied after the documents' own rules); `why` says why the document cannot run as typed."""

    doc: str
    old: str
    new: str
    why: str


@dataclass(frozen=True)
class Skip:
    """Commands matching `pattern` (a regex) are not run; `doc` None = every document."""

    pattern: str
    why: str
    doc: str | None = None


@dataclass(frozen=True)
class Repeat:
    """Each line of the block that contains `anchor` also runs once per mapping, with the mapping applied."""

    doc: str
    anchor: str
    copies: tuple[dict[str, str], ...]
    why: str


@dataclass
class Block:
    first_line: int  # 1-based document line of the block's first code line
    lang: str
    lines: list[str]


@dataclass(frozen=True)
class Command:
    """One logical command (continuation lines joined) as the document shows it."""

    doc: str
    first_line: int
    last_line: int
    text: str
    expected_output: tuple[str, ...] = ()  # for `$ cmd` lines: the output lines shown after them

    @property
    def expects_error(self) -> bool:
        return any(line.startswith("error:") for line in self.expected_output)


@dataclass
class Script:
    """The bash script of one document and what the test needs to judge its run."""

    doc: str
    text: str
    commands: list[Command]
    skipped: list[tuple[Command, str]] = field(default_factory=list)
    substituted: list[tuple[int, Substitution]] = field(default_factory=list)  # (document line, rule)
    unused_rules: list[str] = field(default_factory=list)

    def command_at(self, line: int) -> Command | None:
        """The command that spans document line `line` (the ERR trap reports any line of a multi-line one)."""
        for cmd in self.commands:
            if cmd.first_line <= line <= cmd.last_line:
                return cmd
        return None


def parse_blocks(text: str) -> list[Block]:
    """Fenced code blocks (also indented ones, inside list items), their language and first line."""
    blocks: list[Block] = []
    current: Block | None = None
    indent = ""
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if current is None:
            if fence:
                indent, current = fence["indent"], Block(number + 1, fence["lang"], [])
            continue
        if fence and not fence["lang"]:
            blocks.append(current)
            current = None
            continue
        current.lines.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
    return blocks


def is_shell(block: Block) -> bool:
    return block.lang in SHELL_LANGS or (not block.lang and any(line.startswith("$ ") for line in block.lines))


def logical_commands(doc: str, block: Block) -> list[Command]:
    """Commands of a block: `\\`-continued lines joined; in prompt style (`$ `) only prompt lines, with the
    output lines that follow them."""
    prompt = not block.lang or block.lang == "console"
    cmds: list[Command] = []
    i = 0
    while i < len(block.lines):
        line = block.lines[i]
        if prompt and not line.startswith("$ "):
            i += 1
            continue
        start = i
        parts = [line[2:] if prompt else line]
        while parts[-1].rstrip().endswith("\\") and i + 1 < len(block.lines):
            i += 1
            parts.append(block.lines[i])
        text = " ".join(p.rstrip().removesuffix("\\").strip() for p in parts)
        output: list[str] = []
        if prompt:
            j = i + 1
            while j < len(block.lines) and not block.lines[j].startswith("$ "):
                if block.lines[j].strip():
                    output.append(block.lines[j].strip())
                j += 1
        if text.strip() and not text.lstrip().startswith("#"):
            cmds.append(Command(doc, block.first_line + start, block.first_line + i, text.strip(), tuple(output)))
        i += 1
    return cmds


def error_pattern(expected: str) -> re.Pattern[str]:
    """An expected output line as a regex: hex ids (transaction ids, hashes) differ from run to run."""
    parts = HEX_ID.split(expected)
    return re.compile("[0-9a-f]{8,}".join(re.escape(p) for p in parts))


def out_paths(cmd: Command) -> list[str]:
    """Files a command says it writes (`--out F`, `--report-json F`), when the path is literal."""
    try:
        words = shlex.split(cmd.text, comments=True)
    except ValueError:
        return []
    paths = []
    for flag, value in zip(words, words[1:], strict=False):
        if flag in ("--out", "--report-json") and "$" not in value:
            paths.append(value)
    return paths


def build_script(repo: Path, doc: str, subs: list[Substitution], skips: list[Skip], repeats: list[Repeat],
                 helpers: Path, setup: str = "") -> Script:
    """The document's script: line 1 sources the helpers (and runs `setup`), block lines at their own lines."""
    text = (repo / doc).read_text()
    n_lines = len(text.splitlines())
    out = [""] * (n_lines + 1)  # index = document line
    blocks = [b for b in parse_blocks(text) if is_shell(b)]
    commands = [cmd for b in blocks for cmd in logical_commands(doc, b)]
    script = Script(doc, "", commands)
    used: set[int] = set()
    by_line = {cmd.first_line: cmd for cmd in commands}

    def substitute(line: str, number: int) -> str:
        for sub in subs:
            if sub.doc in (doc, "*") and sub.old in line:
                line = line.replace(sub.old, sub.new)
                used.add(id(sub))
                script.substituted.append((number, sub))
        return line

    blank = {n for cmd in commands for n in range(cmd.first_line + 1, cmd.last_line + 1)}
    for block in blocks:
        prompt = not block.lang or block.lang == "console"
        repeat = next((r for r in repeats if r.doc == doc and any(r.anchor in ln for ln in block.lines)), None)
        if repeat:
            used.add(id(repeat))
        for offset, raw in enumerate(block.lines):
            number = block.first_line + offset
            if number == 1:
                raise ValueError(f"{doc}: a code line on line 1 (the script's prelude line)")
            cmd = by_line.get(number)
            if prompt and cmd is None:
                continue  # output shown after a `$ ` line
            if number in blank:
                continue  # continuation line, already part of `cmd`
            line = cmd.text if cmd is not None else raw
            reason = next((s.why for s in skips if s.doc in (None, doc) and cmd is not None
                           and re.search(s.pattern, cmd.text)), None)
            if reason is not None:
                script.skipped.append((cmd, reason))
                out[number] = ":  # skipped"
                continue
            line = substitute(line, number)
            line = FOLLOWER.sub(lambda m: "bg " + m.group(0), line)
            if cmd is not None and cmd.expects_error:
                line = f"expect_error {number} {line}"
            if repeat and line.strip():
                if line.rstrip().endswith(("do", "then", "{", "(")):
                    raise ValueError(f"{doc}:{number}: Repeat cannot copy the first line of a compound command")
                line = TRAILING_COMMENT.sub("", line)  # or the copies joined after it would be commented out
                copies = [line]
                for mapping in repeat.copies:
                    copy = line
                    for old, new in mapping.items():
                        copy = copy.replace(old, new)
                    copies.append(copy)
                line = "; ".join(copies)
            out[number] = line
    out[1] = f'source "{helpers}"' + (f"; {substitute(setup, 1)}" if setup else "")
    script.text = "\n".join(out[1:]) + "\n"
    script.unused_rules = [f"{type(r).__name__} {r!r}" for r in [*subs, *repeats]
                           if r.doc == doc and id(r) not in used]
    return script


TRACE = re.compile(r"^\++ script\.sh:(?P<line>\d+) (?P<t>[\d.]+) ")


def traced_lines(trace: str) -> list[tuple[int, float]]:
    """(document line, start time) of every command bash ran from the script (not from the helpers), in order."""
    return [(int(m["line"]), float(m["t"])) for m in map(TRACE.match, trace.splitlines()) if m]


def slowest(trace: str, n: int = 3) -> list[tuple[int, float]]:
    """The `n` document lines that took longest (time until the next traced command), for the report."""
    ran = traced_lines(trace)
    spans: dict[int, float] = {}
    for (line, start), (_, end) in zip(ran, ran[1:], strict=False):
        spans[line] = spans.get(line, 0.0) + end - start
    return sorted(spans.items(), key=lambda kv: -kv[1])[:n]


HELPERS = r"""# sourced on line 1 of every document's script (tests/doc_commands.py)
set -eEuo pipefail
exec 9>>"$DOCTEST_DIR/trace.log"; BASH_XTRACEFD=9; PS4='+ ${BASH_SOURCE[0]##*/}:${LINENO} ${EPOCHREALTIME} '
_doc_failed() {  # first failure only: the ERR trap fires again for each enclosing compound command
  [ -e "$DOCTEST_DIR/failed" ] || echo "$1 $2" > "$DOCTEST_DIR/failed"
}
trap '_doc_failed $LINENO $?' ERR
set -x

# bg CMD...: a follower started in the background, as in a terminal of its own; the test stops it at
# the end and requires exit 0 (files in $DOCTEST_DIR/bg/N: line, cmd, pid, out, err, rc)
_bg_n=0
bg() {
  _bg_n=$((_bg_n + 1))
  local d="$DOCTEST_DIR/bg/$_bg_n"
  mkdir -p "$d"
  echo "${BASH_LINENO[0]}" > "$d/line"
  printf '%s\n' "$*" > "$d/cmd"
  (
    "$@" > "$d/out" 2> "$d/err" < /dev/null &
    echo $! > "$d/pid"
    if wait $!; then echo 0 > "$d/rc"; else echo $? > "$d/rc"; fi
  ) > /dev/null 2>&1 < /dev/null &
  while [ ! -s "$d/pid" ]; do sleep 0.05; done
}

# expect_error LINE CMD...: a command the document shows failing; the test compares its output with
# the document's (files $DOCTEST_DIR/expect/LINE.out and .rc)
expect_error() {
  local line="$1" rc=0
  shift
  mkdir -p "$DOCTEST_DIR/expect"
  "$@" > "$DOCTEST_DIR/expect/$line.out" 2>&1 || rc=$?
  cat "$DOCTEST_DIR/expect/$line.out" >&2
  echo "$rc" > "$DOCTEST_DIR/expect/$line.rc"
}
"""
