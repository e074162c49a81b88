"""The judge scores code that cannot change its own score: hostile completions fail, as root and as an
unprivileged user, correct controls and every dataset's reference solutions pass, and the machine is unchanged."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

import hostile
from conftest import ROOT
from quantreplay.judge import Judge, Program, _Host, judge_programs
from quantreplay.judge.host import MAX_FRAME, FrameReader, NotPlain, pack, unpack
from quantreplay.sandbox import AS_NOBODY, NOBODY, Limits, SandboxUnavailable, boundary

FAST = Limits(wall_seconds=3, cpu_seconds=1, memory_bytes=512 << 20, output_bytes=64 << 10)
SHARED_PLACES = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every process: pid -> (uid, parent pid, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
                status = Path(f"/proc/{entry}/status").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), 0)
            found[int(entry)] = (uid, ppid, cmdline)
    return found


def _not_foreign(pid: int, after: dict, before: dict) -> bool:
    """Whether a process that appeared during the test is this test's: it descends from this process, or its first
    ancestor that ran before the test is one of this process's own ancestors (init or a subreaper: where a daemon
    that escaped a sandbox ends up). Not so for another program's (a pipeline run beside the tests, scoring code in
    its own sandboxes), whose first such ancestor is its own long-running parent."""
    mine, node = set(), os.getpid()
    while node > 0 and node in before and node not in mine:
        mine.add(node)
        node = before[node][1]
    seen = set()
    while pid in after and pid not in seen:
        seen.add(pid)
        if pid in before:
            return pid in mine
        pid = after[pid][1]
    return True  # the chain broke (a parent exited meanwhile): counted, and looked at again


def _shared_state(token: str) -> dict:
    """What a program could leave behind: files named with the run's token, and SysV IPC objects (those are
    created with private keys, so any new one counts; nothing else on a test machine makes them)."""
    state = {place: [n for n in os.listdir(place) if token in n] for place in SHARED_PLACES if os.path.isdir(place)}
    for kind in ("shm", "msg", "sem"):
        path = Path(f"/proc/sysvipc/{kind}")
        state[str(path)] = path.read_text() if path.exists() else ""
    return state


@pytest.fixture
def where(tmp_path):
    """One run's targets: secret files with the answers, paths to write, a victim, a listener, a canary."""
    token = uuid.uuid4().hex[:12]
    answers = "add(2, 3) == 5\nadd(10, 20) == 30\n"
    secrets = [Path(f"/var/tmp/quantreplay-secret-{token}.txt"), ROOT / f".quantreplay-secret-{token}.txt"]
    for path in secrets:
        path.write_text(answers)
        path.chmod(0o644)
    victim = Path(f"/var/tmp/quantreplay-victim-{token}")
    victim.write_text("keep me")
    victim.chmod(0o666)
    escapes = [ROOT / f".escape-{token}", Path(f"/etc/quantreplay-escape-{token}"), Path(f"/var/tmp/escape-{token}")]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    # A process of the judge's user outside the sandbox, which nothing inside may signal.
    canary = subprocess.Popen(["sleep", "300"], start_new_session=True)
    fields = {
        "token": token,
        "repo": str(ROOT),
        "secret_files": [str(p) for p in secrets],
        "escape_files": [str(p) for p in escapes],
        "victim": str(victim),
        "port": listener.getsockname()[1],
        "secret": f"secret-{token}",
        "judge_pid": os.getpid(),
        "canary_pid": canary.pid,
        # A number no other process on the machine sleeps for, to find a surviving daemon by.
        "sleep_seconds": f"{600 + int(token[:4], 16) % 1000}.5",
    }
    yield {"fields": fields, "listener": listener, "canary": canary, "victim": victim, "escapes": escapes}
    canary.kill()
    canary.wait()
    listener.close()
    for path in [*secrets, victim, *escapes]:
        path.unlink(missing_ok=True)


def _programs(cases: list[dict]) -> list[Program]:
    return [Program(c["source"], c["tests"], c["entry_point"]) for c in cases]


def _check_verdicts(cases: list[dict], verdicts: list[dict]) -> None:
    wrong = [(c["name"], v) for c, v in zip(cases, verdicts, strict=True) if v["passed"] != c["expected"]]
    assert not wrong, wrong


def _check_nothing_reached_out(where: dict, before: dict, processes_before: dict) -> None:
    """The targets outside are as they were, and nothing the programs started is still running."""
    fields = where["fields"]
    assert where["victim"].read_text() == "keep me"
    assert not [p for p in where["escapes"] if p.exists()]
    assert where["canary"].poll() is None, "a sandboxed program killed a process outside"
    with pytest.raises(TimeoutError):
        where["listener"].accept()
    # The sandboxes end with the judge; give the kernel a moment to tear down their namespaces.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = _processes()
        left = {
            pid: cmd
            for pid, (uid, _, cmd) in after.items()
            if pid not in processes_before
            and (uid == NOBODY or "bwrap" in cmd or fields["sleep_seconds"] in cmd)
            and _not_foreign(pid, after, processes_before)
        }
        if not left and _shared_state(fields["token"]) == before:
            break
        time.sleep(0.1)
    assert not left, f"processes survived the judge: {left}"
    assert _shared_state(fields["token"]) == before, "a program left something in a shared place"


def test_hostile_completions_fail_and_controls_pass(where, monkeypatch):
    monkeypatch.setenv("QUANTREPLAY_SECRET", where["fields"]["secret"])
    cases = hostile.cases(**where["fields"])
    state, processes = _shared_state(where["fields"]["token"]), _processes()
    verdicts = judge_programs(_programs(cases), FAST, boundary())
    _check_verdicts(cases, [{"passed": v.passed, "reason": v.reason} for v in verdicts])
    _check_nothing_reached_out(where, state, processes)


def test_a_completion_that_rewrites_the_prompted_function_replaces_its_stub():
    """HumanEval's prompt (a signature and its docstring) is the program's prefix. A model taught MBPP's format
    answers with the whole function instead of its body; the stub (a valid function) is then replaced by it, and
    that is what the tests call."""
    prefix = 'def add(a, b):\n    """Return a + b."""\n'
    tests = "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"
    rewrite, wrong_rewrite = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"
    completions = [rewrite, "    return a + b\n", wrong_rewrite, ""]
    verdicts = judge_programs([Program.of(c, prefix, tests, "add") for c in completions], FAST, boundary())
    assert [v.passed for v in verdicts] == [True, True, False, False]


RUN_AS_NOBODY = """
import json, sys
sys.path.insert(0, sys.argv[1])
from quantreplay.judge import Program, judge_programs
from quantreplay.sandbox import Limits, SandboxUnavailable, boundary
cases = json.load(open(sys.argv[2]))
try:
    where = boundary()
except SandboxUnavailable as error:
    print(json.dumps({"unavailable": str(error)}))
    sys.exit(0)
programs = [Program(c["source"], c["tests"], c["entry_point"]) for c in cases]
verdicts = judge_programs(programs, Limits(**json.loads(sys.argv[3])), where)
verdicts = [{"passed": v.passed, "reason": v.reason} for v in verdicts]
print(json.dumps({"boundary": where.description, "verdicts": verdicts}))
"""


def _user_namespaces_for_nobody() -> bool:
    return subprocess.run([*AS_NOBODY, "unshare", "--user", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="run as an unprivileged user, the test above is this one")
def test_hostile_completions_fail_as_an_unprivileged_user(where, tmp_path):
    """The same corpus, with the judge itself run as nobody under the system's Python (the library copied where
    nobody can read it): a boundary without root, or one line saying why there is none."""
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no system Python that an unprivileged user can run")
    shared = Path(f"/var/tmp/quantreplay-judge-{where['fields']['token']}")
    try:
        package = shared / "quantreplay"
        (package / "judge").mkdir(parents=True)
        source = ROOT / "src" / "quantreplay"
        for name in ("__init__.py", "errors.py", "sandbox.py", "judge/__init__.py", "judge/host.py"):
            shutil.copy(source / name, package / name)
        # The victim belongs to nobody here: only the boundary, not file permissions, may protect it.
        os.chown(where["victim"], NOBODY, NOBODY)
        canary = subprocess.Popen(
            [*AS_NOBODY, "sleep", "300"],
            start_new_session=True,
        )
        where["fields"]["canary_pid"] = canary.pid
        cases = hostile.cases(**where["fields"])
        (shared / "cases.json").write_text(json.dumps(cases))
        for path in [shared, *shared.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        limits = json.dumps(dataclasses.asdict(FAST))
        state, processes = _shared_state(where["fields"]["token"]), _processes()
        done = subprocess.run(
            [
                *AS_NOBODY,
                python,
                "-S",
                "-c",
                RUN_AS_NOBODY,
                str(shared),
                str(shared / "cases.json"),
                limits,
            ],  # fmt: skip
            capture_output=True,
            text=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "QUANTREPLAY_SECRET": where["fields"]["secret"]},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert canary.poll() is None, "a sandboxed program killed the unprivileged user's process"
        canary.kill()
        if not _user_namespaces_for_nobody():
            # No boundary can be built for this user: scoring must stop and say why, never run unboxed.
            assert "unprivileged user namespaces" in result["unavailable"] and "\n" not in result["unavailable"]
            return
        assert result["boundary"] == "bubblewrap, started as the calling user"
        _check_verdicts(cases, result["verdicts"])
        _check_nothing_reached_out(where, state, processes)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_concurrent_run_cannot_be_seen_or_touched():
    """Two judges side by side: the attacker looks for the victim's program (its tests and secret token) in every
    process and folder it can reach, and tries to signal it; the victim is undisturbed and passes."""
    token = f"victim-{uuid.uuid4().hex}"
    victim = Program(
        f"import time\n# {token}\ndef slow(x):\n    time.sleep(2)\n    return x\n",
        f"# {token}\nassert slow(7) == 7\n",
    )
    attacker = Program(
        "import glob, os, signal\ndef probe():\n    text = ''\n"
        "    for path in glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/environ') + glob.glob('/proc/*/root/tmp/*')"
        " + glob.glob('/proc/*/root/tmp/*/*'):\n"
        "        try:\n            text += open(path, 'rb').read(1 << 20).decode('latin-1')\n"
        "        except OSError:\n            pass\n"
        "    for pid in range(2, 400):\n"
        "        if pid not in (os.getpid(), os.getppid()):\n"
        "            try:\n                os.kill(pid, signal.SIGSTOP)\n"
        "            except OSError:\n                pass\n"
        f"    return {token!r} in text\n",
        "assert probe() is True\n",
    )
    results = {}
    thread = threading.Thread(target=lambda: results.update(victim=judge_programs([victim], FAST, boundary())))
    with Judge(FAST, boundary()) as judge:
        thread.start()
        time.sleep(0.5)
        results["attacker"] = judge.judge(attacker)
    thread.join()
    assert not results["attacker"].passed
    assert results["victim"][0].passed, results["victim"][0].reason


def test_without_a_sandbox_scoring_stops_with_one_line(tmp_path):
    """Where bwrap cannot create namespaces (here: inside a sandbox that forbids them), the judge command and every
    snakemake call stop with one line that says why and how to allow it."""
    frame = pl.DataFrame({"id": ["p1"], "tests": ["assert f() == 1\n"], "code_prefix": [""], "entry_point": ["f"]})
    frame.write_parquet(tmp_path / "tests.parquet")
    (tmp_path / "samples.jsonl").write_text(json.dumps({"id": "p1", "completion": "def f():\n    return 1\n"}) + "\n")
    jail = ["bwrap", "--dev-bind", "/", "/", "--unshare-user", "--disable-userns", "--uid", "0", "--gid", "0", "--"]
    files = [str(tmp_path / "tests.parquet"), str(tmp_path / "samples.jsonl")]
    judged = subprocess.run([*jail, sys.executable, "-m", "quantreplay.judge", *files], capture_output=True, text=True)
    assert judged.returncode == 2 and judged.stdout == ""
    assert (
        judged.stderr.startswith("judge: code scoring needs a bubblewrap sandbox") and judged.stderr.count("\n") == 1
    )
    assert "unsafe-none" in judged.stderr and "user namespaces" in judged.stderr
    dry = subprocess.run(
        [
            *jail,
            str(Path(sys.executable).parent / "snakemake"),
            "-n",
            "--directory",
            str(tmp_path),
            "--configfile",
            str(ROOT / "config" / "config.yaml"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert dry.returncode != 0
    lines = [line for line in dry.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Sandbox error: code scoring needs a bubblewrap sandbox"), dry.stderr
    assert "Traceback" not in dry.stderr and not (tmp_path / "results").exists()


def test_unsafe_none_has_no_boundary_but_the_same_judge(where):
    unsafe = boundary("unsafe-none")
    assert not unsafe.isolated and "NO SANDBOX" in unsafe.description
    cases = [c for c in hostile.cases(**where["fields"]) if c["name"] in (
        "returns an object that equals everything", "returns an int whose == is always true",
        "exits with status 0 before the tests", "inspects the caller's frames and the heap", "a correct function",
        "objects the tests build and pass back (MBPP's trees)")]  # fmt: skip
    assert len(cases) == 6
    verdicts = judge_programs(_programs(cases), FAST, unsafe)
    _check_verdicts(cases, [{"passed": v.passed} for v in verdicts])


def test_the_judge_command_scores_a_samples_file(tmp_path):
    from quantreplay.data.offline import load_offline_split

    rows = load_offline_split("humaneval", "test", seed=0, test_fraction=0.5, max_examples=None).head(3)
    rows.write_parquet(tmp_path / "tests.parquet")
    samples = []
    for row in rows.to_dicts():
        samples += [
            {"id": row["id"], "completion": row["target"]},
            {"id": row["id"], "completion": "    return None\n"},
            {"id": row["id"], "completion": "    import os\n    os._exit(0)\n"},
        ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    command = [
        sys.executable,
        "-m",
        "quantreplay.judge",
        str(tmp_path / "tests.parquet"),
        str(tmp_path / "samples.jsonl"),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in results] == [s["id"] for s in samples]
    assert [r["passed"] for r in results] == [True, False, False] * 3
    assert all(r["reason"] for r in results)
    (tmp_path / "bad.jsonl").write_text('{"id": "humaneval-999", "completion": ""}\n')
    bad = subprocess.run([*command[:-1], str(tmp_path / "bad.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "humaneval-999" in bad.stderr


def test_plain_data_round_trips_exactly_and_nothing_else_crosses():
    values = [None, True, 0, -(2**100), 1.5, float("inf"), -0.0, 2j, "é", b"\x00", [1, (2, {3})], frozenset([4]),
              {(1, 2): [None]}]  # fmt: skip
    for value in values:
        back = unpack(json.loads(json.dumps(pack(value))))
        assert back == value and type(back) is type(value) and repr(back) == repr(value)

    class Sneaky(int):
        def __eq__(self, other):
            return True

    assert type(unpack(pack(Sneaky(3)))) is int and unpack(pack(Sneaky(3))) != 4
    with pytest.raises(NotPlain):
        pack(object())
    for malformed in (["x", 1], ["i", "1"], ["d", [[1]]], ["r", 0], {"a": 1}, 1.5):
        with pytest.raises(ValueError):
            unpack(malformed)
    reader = FrameReader()
    with pytest.raises(ValueError):
        reader.feed((MAX_FRAME + 1).to_bytes(4, "big"))


def test_a_sandbox_that_cannot_start_is_named(monkeypatch):
    from quantreplay import sandbox

    broken = sandbox.Boundary("bubblewrap", ("/bin/false",), "/usr/bin/python3", "a sandbox that cannot start")
    with pytest.raises(SandboxUnavailable, match="a sandbox that cannot start"):
        Judge(FAST, broken).__enter__()


def test_completions_that_fail_to_load_keep_both_sandboxes(monkeypatch):
    # Most completions of a checkpoint not yet trained on code do not even compile; each must cost a verdict, not
    # two sandbox starts (an idle tests host once took the judge's end for a shutdown).
    starts = []
    start = _Host.start
    monkeypatch.setattr(_Host, "start", lambda host: (starts.append(host.role), start(host))[1])
    broken = Program(source="def f(x):\n drank the tea in the cave.", tests="assert f(1) == 2\n", entry_point="f")
    raising = Program(source="def f(x):\n    return x\nraise ValueError('no')\n", tests="assert f(1) == 1\n",
                      entry_point="f")  # fmt: skip
    correct = Program(source="def f(x):\n    return x + 1\n", tests="assert f(1) == 2\n", entry_point="f")
    verdicts = judge_programs([broken, raising, correct] * 5, FAST, boundary())
    assert [v.passed for v in verdicts] == [False, False, True] * 5
    assert "SyntaxError" in verdicts[0].reason and "ValueError" in verdicts[1].reason
    assert sorted(starts) == ["candidate", "tests"]
