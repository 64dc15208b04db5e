"""Fuzz matport with structure-aware mutants of real and generated MAT-files.

Each case is seeded (``--seed`` and its index): it picks a seed file, a mutator
(``scripts/fuzz_mutators.py``) and a target - ``matport.read``, ``matport.network.read_network``,
``matport.load``, ``matport.load_resnet50`` or the CLI (``matport inspect``, in-process) - and
runs in one of a pool of child processes under an address-space limit, killed past a time limit.
An outcome is ``ok``, ``matport`` (a MatportError), or a defect: ``foreign`` (any other
exception), ``bad-cli`` (inspect not exiting 0, or 2 with one line), ``timeout`` (over 10 s of
CPU), ``crash`` (the child died), ``slow`` (over 2 s of CPU time: wall time on a shared machine
measures the machine) or ``memory`` (peak growth over 10x the file's declared content, beyond
a fixed allowance).

    python scripts/fuzz.py --cases 100000 --seed 1 --jobs 2 --json fuzz.jsonl
    python scripts/fuzz.py --seed 1 --case 4711 --keep mutant.mat   # reproduce one case
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import multiprocessing as mp
import os
import random
import resource
import struct
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import fuzz_mutators
import numpy as np
import scipy.sparse

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("read", "read", "read", "read_network", "load", "load_resnet50", "cli")
NETWORK_TARGETS = ("read_network", "load", "load_resnet50")
SLOW_S = 2.0
TIMEOUT_S = 10.0  # CPU seconds a case may take before its child is killed (over 2 s is a defect)
HARD_TIMEOUT_S = 600.0  # wall seconds, however starved the machine is
BUILDING = math.inf  # CPU baseline while a child builds its mutant (the harness's work, untimed)
MEMORY_LIMIT = 2 << 30  # address space a child may add to what it holds after its imports
ALLOWANCE = 64 << 20  # peak growth allowed whatever the file declares (interpreter, torch)
MAX_SEED_BYTES = 400_000
RESNET50_SHARE = 0.2  # of the load_resnet50 cases mutate the full-size ResNet-50 seed


def seed_files(corpus: Path, generated: Path) -> list[Path]:
    """Small corpus files, the fixtures, and files the writer makes (objects of every kind); not
    fixtures/crashes/ (mutants HDF5 itself crashes on), so case numbers keep naming the same
    mutants."""
    files = sorted(p for p in list(corpus.glob("*/*.mat")) + list((ROOT / "fixtures").glob("*.mat"))
                   if p.stat().st_size <= MAX_SEED_BYTES)
    return files + _generate(generated)


def _generate(folder: Path) -> list[Path]:
    from matport.mat.values import (
        Categorical,
        Enumeration,
        FunctionHandle,
        MatObject,
        ObjectArray,
        Struct,
        StructArray,
        Table,
    )
    from matport.mat.writer import String, write

    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = np.arange(3.0).reshape(1, 3), "text"
    shared = MatObject("pkg.Handle", {"w": np.ones((2, 2), np.float32)})
    values = {
        "num": np.arange(12.0).reshape(3, 4), "c": cell, "txt": "hello",
        "s": Struct(a=np.int8([[1, 2]]), b=Struct(c="x")),
        "sa": StructArray((1, 2), ("f",), [Struct(f=1.0), Struct(f="two")]),
        "sp": scipy.sparse.csc_array(np.eye(3)),
        "str": String(np.array([["a", "bc"]], dtype=object)),
        "cat": Categorical(["r", "g"], np.array([[1, 2, 0]], np.uint8)),
        "tab": Table({"x": np.ones((2, 1)), "y": np.zeros((2, 1))}, nrows=2),
        "enum": Enumeration("pkg.Color", np.array([["Red", "Blue"]], dtype=object)),
        "fh": FunctionHandle(Struct(function="sin")),
        "obj": MatObject("pkg.Net", {"Layers": ObjectArray("pkg.L", (1, 2), [shared, shared]),
                                     "Name": "n", "Self": shared}),
        "cplx": np.array([[1 + 2j, 3]]), "logic": np.array([[True, False]]),
    }
    out = []
    stamp = dt.datetime(2024, 1, 2, 3, 4, 5)
    for fmt in ("v7", "v7.3"):
        path = folder / f"generated_{fmt}.mat"
        write(path, values, format=fmt, created=stamp)  # type: ignore[arg-type]
        out.append(path)
    return out


def declared_bytes(path: Path) -> int:
    """What the file declares it holds: inflated element sizes (v7), dataset sizes (v7.3)."""
    data = path.read_bytes()
    total = len(data)
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[:19] == b"MATLAB 7.3 MAT-file":
        import h5py

        with contextlib.suppress(Exception), h5py.File(path, "r") as f:
            def visit(name: str, obj: Any) -> None:
                nonlocal total
                if isinstance(obj, h5py.Dataset):
                    total += obj.size * obj.dtype.itemsize
            f.visititems(visit)
        return total
    pos = 128
    while pos + 8 <= len(data):
        mtype, nbytes = struct.unpack_from("<II", data, pos)
        if mtype == 15:
            with contextlib.suppress(zlib.error):
                head = zlib.decompressobj().decompress(data[pos + 8 : pos + 8 + nbytes], 8)
                if len(head) == 8:
                    total += struct.unpack("<II", head)[1]
            pos += 8 + nbytes
        else:
            total += nbytes
            pos += 8 + ((nbytes + 7) & ~7)
    return total


def resnet50_seed(folder: Path) -> Path:
    """A full-size MATLAB ResNet-50 (DAGNetwork, v7) for ``load_resnet50``, stored uncompressed
    (96 MB), so that the mutators change its element tree rather than break a deflate stream."""
    from matport.mat.writer import write
    from matport.network.encode import encode_network
    from matport.synth.resnet50 import finetuned

    path = folder / "resnet50_v7.mat"
    write(path, {"net": encode_network(finetuned())}, format="v7", compress=False)
    return path


def networks_first(seeds: list[Path]) -> list[Path]:
    """The seeds that hold a network (mutants of those reach the converters)."""
    import matport
    from matport.network import find_networks

    out = []
    for path in seeds:
        with contextlib.suppress(matport.MatportError):
            if find_networks(matport.read(path)):
                out.append(path)
    return out


@dataclass
class Seeds:
    files: list[Path]
    networks: list[Path]  # those of the files that hold a network
    resnet50: Path | None = None  # a full-size ResNet-50 (not among the files)


def make_case(seed: int, index: int, seeds: Seeds) -> tuple[Path, str, str, bytes]:
    """Case ``index``: its seed file, target, mutator and mutant. Network targets take a file
    holding a network 4 times in 5; ``load_resnet50`` takes the ResNet-50 seed, when there is
    one, RESNET50_SHARE of the time (drawn apart, so that other cases keep their mutants)."""
    rng = random.Random(f"{seed}:{index}")
    target = rng.choice(TARGETS)
    networks = target in NETWORK_TARGETS and rng.random() < 0.8
    source = rng.choice(seeds.networks if networks and seeds.networks else seeds.files)
    if (target == "load_resnet50" and seeds.resnet50
            and random.Random(f"{seed}:{index}:resnet50").random() < RESNET50_SHARE):
        source = seeds.resnet50
    mutator, data = fuzz_mutators.mutate(source.read_bytes(), rng)
    return source, target, mutator, data


def run_target(target: str, path: str) -> str:
    """Run one target; returns ``ok`` or ``matport`` or raises what the target raised."""
    import matport
    from matport.errors import MatportError

    try:
        if target == "read":
            f = matport.read(path)
            repr(f)
            for _ in f.walk():
                pass
        elif target == "read_network":
            from matport.network import read_network

            read_network(path)
        elif target == "load":
            matport.load(path)
        elif target == "load_resnet50":
            matport.load_resnet50(path)
        else:
            from matport.cli import main

            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["inspect", path] + (["--json"] if hash(path) % 2 else []))
            lines = err.getvalue().strip().splitlines()
            if code not in (0, 2) or (code == 2 and len(lines) != 1):
                raise AssertionError(f"bad-cli: exit {code}, stderr {err.getvalue()[:300]!r}")
            return "ok" if code == 0 else "matport"
    except MatportError:
        return "matport"
    return "ok"


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def worker(conn: Connection, seed: int, seeds: Seeds, folder: str) -> None:
    import torch  # noqa: F401 - imported before the limit, as every target may need it

    import matport.convert.api  # noqa: F401
    import matport.convert.families.resnet50  # noqa: F401

    torch.set_num_threads(1)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = (held + MEMORY_LIMIT, hard)
    path = os.path.join(folder, f"mutant-{os.getpid()}.mat")
    conn.send("ready")  # the parent's clock starts with the first case, not with the imports
    while True:
        index = conn.recv()
        if index is None:
            return
        # the mutant is built without the limit (grafts of a ResNet-50's subtrees reach GBs)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        source, target, mutator, data = make_case(seed, index, seeds)
        with open(path, "wb") as f:
            f.write(data)
        size = len(data)
        del data
        resource.setrlimit(resource.RLIMIT_AS, limit)
        conn.send("built")  # the case's clocks start here, not with building the mutant
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident size
        before = _rss("VmRSS")
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            outcome, detail = run_target(target, path), ""
        except AssertionError as exc:
            outcome, detail = "bad-cli", str(exc)
        except BaseException as exc:  # noqa: BLE001 - every foreign exception is a finding
            outcome = "foreign"
            detail = "".join(traceback.format_exception(exc)[-3:])[-1500:]
        took, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        grown = max(_rss("VmHWM") - before, 0)
        declared = declared_bytes(Path(path)) if grown > ALLOWANCE else 0
        if outcome in ("ok", "matport") and cpu > SLOW_S:
            outcome = "slow"
        elif outcome in ("ok", "matport") and grown > ALLOWANCE + 10 * declared:
            outcome = "memory"
        conn.send({"case": index, "source": source.name, "target": target, "mutator": mutator,
                   "outcome": outcome, "seconds": round(took, 4), "cpu": round(cpu, 4),
                   "grown": grown,
                   "size": size, "detail": detail})


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Pool:
    """Children that each run cases one at a time; a child that hangs is killed and replaced."""

    def __init__(self, jobs: int, seed: int, seeds: Seeds, folder: str) -> None:
        self.args = (seed, seeds, folder)
        self.ctx = mp.get_context("fork")
        # (process, connection, case it runs or None, the child's CPU seconds when its case's
        # clocks started; -1.0 while importing, BUILDING while it builds the mutant)
        self.slots: list[tuple[Any, Connection, int | None, float]] = []
        self.given: dict[int, float] = {}  # slot -> wall time its case was given
        for _ in range(jobs):
            self.slots.append(self._start())

    def _start(self) -> tuple[Any, Connection, int | None, float]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=worker, args=(child, *self.args), daemon=True)
        proc.start()
        return proc, parent, None, -1.0

    def run(self, indices: list[int], seeds: Seeds, seed: int,
            report: Any) -> None:
        pending = list(reversed(indices))
        while pending or any(s[2] is not None for s in self.slots):
            for k, (proc, conn, busy, since) in enumerate(self.slots):
                if since < 0:  # still importing
                    if conn.poll(0.01) and conn.recv() == "ready":
                        self.slots[k] = (proc, conn, None, 0.0)
                    elif not proc.is_alive():
                        raise RuntimeError(f"a fuzz worker died importing (exit {proc.exitcode})")
                    continue
                if busy is None and pending:
                    index = pending.pop()
                    conn.send(index)
                    self.slots[k] = (proc, conn, index, BUILDING)
                    self.given[k] = time.monotonic()
                    continue
                if busy is None:
                    continue
                if conn.poll(0.01):
                    try:
                        message = conn.recv()
                        if message == "built":
                            self.slots[k] = (proc, conn, busy, _cpu_seconds(proc.pid))
                            self.given[k] = time.monotonic()
                            continue
                        report(message)
                        self.slots[k] = (proc, conn, None, 0.0)
                        continue
                    except EOFError:
                        pass
                wall = time.monotonic() - self.given[k]
                expired = (_cpu_seconds(proc.pid) - since > TIMEOUT_S
                           or wall > HARD_TIMEOUT_S)
                if not proc.is_alive() or expired:
                    proc.kill()
                    proc.join()
                    source, target, mutator, data = make_case(seed, busy, seeds)
                    report({"case": busy, "source": source.name, "target": target,
                            "mutator": mutator, "outcome": "timeout" if expired else "crash",
                            "seconds": wall, "grown": 0, "size": len(data),
                            "detail": f"exit code {proc.exitcode}"})
                    self.slots[k] = self._start()

    def close(self) -> None:
        for proc, conn, _, _ in self.slots:
            conn.send(None)
            proc.join(5)


def summarize(results: list[dict[str, Any]]) -> str:
    """Counts by target and outcome, by mutator, and the slowest and largest cases."""
    outcomes = sorted({r["outcome"] for r in results})
    lines = [f"{len(results)} cases.", "", "| target | " + " | ".join(outcomes) + " |",
             "|---|" + "---|" * len(outcomes)]
    for target in sorted({r["target"] for r in results}):
        row = [sum(1 for r in results if r["target"] == target and r["outcome"] == o)
               for o in outcomes]
        lines.append(f"| {target} | " + " | ".join(map(str, row)) + " |")
    lines += ["", "| mutator | cases | refused (matport error) | read or converted |",
              "|---|---|---|---|"]
    for mutator in sorted({r["mutator"] for r in results}):
        mine = [r for r in results if r["mutator"] == mutator]
        lines.append(f"| {mutator} | {len(mine)} | "
                     f"{sum(r['outcome'] == 'matport' for r in mine)} | "
                     f"{sum(r['outcome'] == 'ok' for r in mine)} |")
    for title, key, unit in (("Slowest (CPU seconds)", "cpu", "s"),
                             ("Largest (peak growth of the child's resident memory)", "grown",
                              "MB")):
        lines += ["", f"{title}:", "", "| case | seed file | mutator | target | outcome | "
                  f"{unit} | wall s | file bytes |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(results, key=lambda r: r.get(key, 0), reverse=True)[:5]:
            value = r.get(key, 0) / (1 << 20 if key == "grown" else 1)
            lines.append(f"| {r['case']} | {r['source']} | {r['mutator']} | {r['target']} | "
                         f"{r['outcome']} | {value:.2f} | {r['seconds']:.2f} | {r['size']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0, help="first case index")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--json", type=Path, help="write every case's result here (JSON lines)")
    parser.add_argument("--case", type=int, help="reproduce this one case")
    parser.add_argument("--keep", type=Path, help="with --case: write its mutant here")
    parser.add_argument("--summarize", type=Path, nargs="+", help="print a Markdown summary of "
                        "these --json files instead of running cases")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize([json.loads(line) for path in args.summarize
                         for line in path.read_text().splitlines()]))
        return 0
    with tempfile.TemporaryDirectory(prefix="matport-fuzz-") as folder:
        files = seed_files(args.corpus, Path(folder))
        seeds = Seeds(files, networks_first(files), resnet50_seed(Path(folder)))
        if args.case is not None:
            source, target, mutator, data = make_case(args.seed, args.case, seeds)
            keep = args.keep or Path(folder) / "mutant.mat"
            keep.write_bytes(data)
            print(f"case {args.case}: {source.name} / {mutator} / {target} -> {keep}")
            print(run_target(target, str(keep)))
            return 0
        counts: dict[str, int] = {}
        bad: list[dict[str, Any]] = []
        out = open(args.json, "w") if args.json else None  # noqa: SIM115
        started = time.monotonic()

        def report(result: dict[str, Any]) -> None:
            counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
            if result["outcome"] not in ("ok", "matport"):
                bad.append(result)
            if out:
                out.write(json.dumps(result) + "\n")
                out.flush()
            done = sum(counts.values())
            if done % 500 == 0:
                print(f"{done} cases, {time.monotonic() - started:.0f} s: {counts}", flush=True)

        pool = Pool(args.jobs, args.seed, seeds, folder)
        try:
            pool.run(list(range(args.start, args.start + args.cases)), seeds, args.seed, report)
        finally:
            pool.close()
            if out:
                out.close()
    print(json.dumps({"cases": sum(counts.values()), "outcomes": counts,
                      "seconds": round(time.monotonic() - started, 1)}))
    for result in bad[:20]:
        print(json.dumps(result), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
