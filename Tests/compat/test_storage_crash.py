"""Durability against the real binary: acknowledged writes survive kill -9."""
import os

from crash_cycles import run_cycles


def test_acknowledged_log_records_survive_100_kill_9_cycles():
    seed = int(os.environ.get("GRANARY_CRASH_SEED", "20261124"))
    total = run_cycles(100, seed, layer="log", log=lambda line: None)
    assert total > 0


def test_acknowledged_store_writes_survive_100_kill_9_cycles():
    """The write-ahead log in front of the B-tree, checkpointing often: recovery is the
    last checkpoint, then the log after it."""
    seed = int(os.environ.get("GRANARY_CRASH_SEED", "20261125"))
    total = run_cycles(100, seed, layer="store", log=lambda line: None)
    assert total > 0


def test_check_refuses_a_log_damaged_before_its_tail(tmp_path):
    import subprocess
    from granary_process import BINARY, fresh_data_dir

    directory = os.path.join(fresh_data_dir(), "wal")
    subprocess.run([BINARY, "storage", "stress", "--layer", "log", "--dir", directory, "--segment-bytes", str(4 << 20),
                    "--writers", "4", "--seconds", "0.5"], capture_output=True, check=True, timeout=60)
    first = sorted(name for name in os.listdir(directory) if name.startswith("wal-0"))[0]
    with open(os.path.join(directory, first), "r+b") as segment:
        segment.seek(4096 + 20)  # inside the first record, well before the tail
        byte = segment.read(1)
        segment.seek(4096 + 20)
        segment.write(bytes([byte[0] ^ 0x01]))
    check = subprocess.run([BINARY, "storage", "check", "--layer", "log", "--dir", directory],
                           capture_output=True, timeout=60)
    assert check.returncode == 1
    message = check.stderr.decode()
    assert "corruption" in message and first in message and "offset 4096" in message
