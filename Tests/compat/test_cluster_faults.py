"""The fault test's short run (cluster_faults.py has the method), and the proof that it
catches a deliberately broken build."""
import pytest

from cluster_faults import NETWORK_FAULTS, PROCESS_FAULTS, run


def test_history_stays_linearizable_under_kills_wipes_and_pauses():
    code, output, faults, summary = run(40, seed=6)
    kinds = [kind for kind, _, _ in faults]
    assert set(PROCESS_FAULTS) <= set(kinds) and "recovered" in kinds, faults
    assert kinds.count("kill") + kinds.count("wipe") + kinds.count("pause") >= 4, faults
    assert code == 0, output[-4000:]
    assert "linearizable" in output and "NOT" not in output


def test_history_stays_linearizable_under_partitions_and_lossy_links():
    code, output, faults, summary = run(40, seed=11, kinds=NETWORK_FAULTS + PROCESS_FAULTS, lossy=True)
    kinds = [kind for kind, _, _ in faults]
    assert sum(kinds.count(kind) for kind in NETWORK_FAULTS) >= 3, faults
    assert code == 0, output[-4000:]
    assert "linearizable" in output and "NOT" not in output


def test_a_build_serving_strong_reads_at_followers_is_caught():
    # Long isolations make the bug certain to show: an isolated node answers strong reads
    # from its own replica while the other two accept writes, and its clients read again
    # once their writes time out (5 s). Under kills, pauses and short cuts a follower lags
    # a heartbeat at most, and a short run may miss it. More clients on fewer keys make
    # stale reads certain within the run (six seeds out of six caught).
    code, output, _, _ = run(20, seed=3, extra_args=["--unsafe-follower-reads"], kinds=("isolate",),
                             cut_seconds=(7, 9), keys=10, concurrency=15,
                             read_back_after=False)
    assert code == 1 and "NOT linearizable" in output, output[-4000:]
