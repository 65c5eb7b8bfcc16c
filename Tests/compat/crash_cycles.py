"""Kill -9 cycles against the real binary: `granary storage stress` appends records and
prints each acknowledged one; the parent kills it with SIGKILL at a random moment, then
`granary storage check` reads the log back. Every acknowledged record must be there with
its key, nothing may be garbled, and LSNs must run without a gap. What a check finds is
part of the log for good: later cycles must keep it too.

Used by test_storage_crash.py (100 cycles) and tools/crash-test (1,000 by default)."""
import os
import random
import subprocess
import sys
import time

from granary_process import BINARY, fresh_data_dir

SEGMENT_BYTES = str(4 << 20)  # small segments: many rolls, and each start cheap


def parse_lines(output, word):
    """Complete `<word> <lsn> <key>` lines; a line cut by the kill is ignored."""
    text = output.decode(errors="replace")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    result = {}
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == word:
            result[int(parts[1])] = parts[2]
    return result


def run_cycles(cycles, seed, log=print):
    rng = random.Random(seed)
    directory = os.path.join(fresh_data_dir(), "wal")
    durable = {}  # LSN to key: acknowledged, or seen by a check
    for cycle in range(cycles):
        writers = rng.choice([1, 4, 16, 64])
        value_bytes = rng.choice([0, 100, 1000])
        process = subprocess.Popen(
            [BINARY, "storage", "stress", "--dir", directory, "--segment-bytes", SEGMENT_BYTES,
             "--writers", str(writers), "--value-bytes", str(value_bytes), "--seconds", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.005, 0.12))
        process.kill()
        output, errors = process.communicate(timeout=30)
        acknowledged = parse_lines(output, "ack")
        check = subprocess.run([BINARY, "storage", "check", "--dir", directory, "--print"],
                               capture_output=True, timeout=120)
        if check.returncode != 0:
            raise AssertionError(f"cycle {cycle}: check failed ({check.returncode}): {check.stderr.decode()[-2000:]}")
        records = parse_lines(check.stdout, "record")
        lsns = sorted(records)
        if lsns and lsns != list(range(lsns[0], lsns[0] + len(lsns))):
            raise AssertionError(f"cycle {cycle}: LSNs have a gap")
        for lsn, key in list(durable.items()) + list(acknowledged.items()):
            if records.get(lsn) != key:
                raise AssertionError(f"cycle {cycle}: LSN {lsn} should hold {key}, holds {records.get(lsn)}; "
                                     f"stress stderr: {errors.decode()[-500:]}")
        durable.update(records)
        log(f"cycle {cycle}: {len(acknowledged)} acknowledged this run, {len(records)} in the log, all present")
    return len(durable)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time())
    print(f"crash test: {count} kill -9 cycles, seed {seed}")
    total = run_cycles(count, seed)
    print(f"crash test: {count} cycles passed, {total} records in the log, none lost or garbled")
