"""Kill -9 cycles against the real binary: `granary storage stress` appends records and
prints each acknowledged one; the parent kills it with SIGKILL at a random moment, then
`granary storage check` reads the log back. Every acknowledged record must be there with
its key, nothing may be garbled, and LSNs must run without a gap. Four cycles in five kill
under load (after the first acknowledged write), one in five during start-up and
recovery. What a check finds is
part of the log for good: later cycles must keep it too.

Used by test_storage_crash.py (100 cycles) and tools/crash-test (1,000 by default)."""
import os
import random
import select
import subprocess
import sys
import time

from granary_process import BINARY, fresh_data_dir

SEGMENT_BYTES = str(4 << 20)  # small segments: many rolls, and each start cheap


def parse_lines(output, word):
    """Complete `<word> <lsn> <key>` (log layer) or `<word> <key>` (store layer) lines, as
    {lsn or key: key}; a line cut by the kill is ignored."""
    text = output.decode(errors="replace")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    result = {}
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == word:
            result[int(parts[1])] = parts[2]
        elif len(parts) == 2 and parts[0] == word:
            result[parts[1]] = parts[1]
    return result


def wait_for_first_line(process, timeout):
    """Reads the child's output until its first complete line (its first acknowledged
    write), keeping what was read in `process.early_output`."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data and time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.05)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            data += chunk
    process.early_output = data


def run_cycles(cycles, seed, layer="log", log=print, fresh_every=100):
    """`layer` is "log" (the WAL alone: LSNs must run without a gap) or "store" (the WAL in
    front of the B-tree, checkpointing every few dozen pages). Every `fresh_every` cycles
    the test starts over in a new directory, so that a long run's checks stay short."""
    rng = random.Random(seed)
    cycles_with_writes = 0
    total = 0
    for cycle in range(cycles):
        if cycle % fresh_every == 0:
            total += len(durable) if cycle else 0
            directory = os.path.join(fresh_data_dir(), "wal")
            durable = {}  # LSN (log) or key (store) to key: acknowledged, or seen by a check
        writers = rng.choice([1, 4, 16, 64])
        value_bytes = rng.choice([0, 100, 1000])
        process = subprocess.Popen(
            [BINARY, "storage", "stress", "--layer", layer, "--dir", directory, "--segment-bytes", SEGMENT_BYTES,
             "--writers", str(writers), "--value-bytes", str(value_bytes), "--seconds", "60",
             "--checkpoint-pages", str(rng.choice([8, 64, 512]))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.early_output = b""
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.15))  # during start-up and recovery
        else:
            wait_for_first_line(process, timeout=30)
            time.sleep(rng.uniform(0.0, 0.15))  # under load
        process.kill()
        output, errors = process.communicate(timeout=30)
        output = process.early_output + output
        acknowledged = parse_lines(output, "ack")
        check = subprocess.run([BINARY, "storage", "check", "--layer", layer, "--dir", directory,
                                "--segment-bytes", SEGMENT_BYTES, "--print"],
                               capture_output=True, timeout=120)
        if check.returncode != 0:
            raise AssertionError(f"cycle {cycle}: check failed ({check.returncode}): {check.stderr.decode()[-2000:]}")
        records = parse_lines(check.stdout, "record")
        if layer == "log":
            lsns = sorted(records)
            if lsns and lsns != list(range(lsns[0], lsns[0] + len(lsns))):
                raise AssertionError(f"cycle {cycle}: LSNs have a gap")
        for lsn, key in list(durable.items()) + list(acknowledged.items()):
            if records.get(lsn) != key:
                raise AssertionError(f"cycle {cycle}: LSN {lsn} should hold {key}, holds {records.get(lsn)}; "
                                     f"stress stderr: {errors.decode()[-500:]}")
        durable.update(records)
        if acknowledged:
            cycles_with_writes += 1
        log(f"cycle {cycle}: {len(acknowledged)} acknowledged this run, {len(records)} in the log, all present")
    # A test whose writer never got a write through before the kill proves little: most
    # cycles must have acknowledged writes to check.
    if cycles_with_writes < cycles // 2:
        raise AssertionError(f"only {cycles_with_writes} of {cycles} cycles acknowledged any write")
    return total + len(durable)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time())
    layer = sys.argv[3] if len(sys.argv) > 3 else "store"
    print(f"crash test: {count} kill -9 cycles of the {layer} layer, seed {seed}")
    total = run_cycles(count, seed, layer=layer, fresh_every=50)
    print(f"crash test: {count} cycles passed, {total} records durable, none lost or garbled")
