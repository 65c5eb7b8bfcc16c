import GranaryPaxos
import GranarySimulation
import Testing

/// The simulator under faults: a sample of seeds here (CI runs 2,000 more through the
/// release-built granary-sim), replay, and deliberately broken variants that it must catch.
@Suite struct SimulationTests {
    @Test(arguments: [3, 5])
    func seedsWithFaultsKeepEveryInvariant(replicas: Int) {
        for seed in UInt64(0)..<40 {
            let report = Simulation(seed: seed, replicas: replicas).run(faultTicks: 1000)
            #expect(report.passed, "\(report)")
            #expect(report.acknowledged > 0, "seed \(seed) acknowledged nothing")
            if !report.passed { return }
        }
    }

    @Test func aSeedReplaysBitForBit() {
        let first = Simulation(seed: 42).run(faultTicks: 1500)
        let second = Simulation(seed: 42).run(faultTicks: 1500)
        let other = Simulation(seed: 43).run(faultTicks: 1500)
        #expect(first.traceHash == second.traceHash)
        #expect(first.acknowledged == second.acknowledged && first.messages == second.messages)
        #expect(first.traceHash != other.traceHash)
    }

    @Test func aPerfectNetworkCommitsNearlyEverything() {
        let report = Simulation(seed: 1, faults: .none, proposalChance: 1).run(faultTicks: 1000)
        #expect(report.passed, "\(report)")
        // Every tick proposes once there is a leader; only the first election's ticks are lost.
        #expect(report.acknowledged > 950, "\(report)")
    }

    /// The control for the two tests below: the same harsh faults without a bug pass, so
    /// what those tests catch is the bug, not the faults.
    @Test func theHarshFaultsAloneBreakNothing() {
        let failure = firstFailure(nil)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    /// A replica that forgets its promises and votes on restart breaks Paxos: some seed
    /// shows two values chosen for a slot or an acknowledged write lost.
    @Test func forgettingTheDiskIsCaught() {
        #expect(firstFailure(.forgetDiskOnRestart) != nil)
    }

    /// Sending a promise or an acceptance before it is durable, with crashes in between,
    /// is caught the same way.
    @Test func sendingBeforePersistingIsCaught() {
        #expect(firstFailure(.sendBeforePersist) != nil)
    }

    /// A replica that answers strong reads because it believes it leads, without a lease or
    /// waiting to apply what earlier leaders chose, serves stale values: the linearizability
    /// checker, on its own (the lease check is off), finds the history not linearizable.
    @Test func readingWithoutALeaseIsCaughtByTheChecker() {
        let failure = firstFailure(.readsWithoutLease, checkLeases: false)
        #expect(failure?.violations.contains { $0.contains("not linearizable") } == true, "\(failure.map { "\($0)" } ?? "")")
    }

    /// Frequent membership changes under crashes keep every invariant too.
    @Test func theReconfigurationFaultsAloneBreakNothing() {
        let failure = firstFailure(nil, faults: reconfigurationFaults, seeds: 200)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    var reconfigurationFaults: FaultProfile {
        var faults = harshFaults
        faults.reconfigure = 0.05
        return faults
    }

    /// Hand-overs under faults (frequent, with slow links) keep every invariant too.
    @Test func theHandOverFaultsAloneBreakNothing() {
        let failure = firstFailure(nil, faults: handOverFaults)
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
    }

    var harshFaults: FaultProfile {
        var faults = FaultProfile()
        faults.crash = 0.02
        faults.restart = 0.2
        return faults
    }

    var handOverFaults: FaultProfile {
        var faults = harshFaults
        faults.transfer = 0.2
        faults.maxDelay = 8
        faults.reconfigure = 0
        return faults
    }

    func firstFailure(_ bug: Simulation.DeliberateBug?, faults: FaultProfile? = nil, checkLeases: Bool = true,
                      seeds: UInt64 = 300) -> SimulationReport? {
        for seed in UInt64(0)..<seeds {
            let report = Simulation(seed: seed, faults: faults ?? harshFaults, bug: bug, checkLeases: checkLeases).run(faultTicks: 1000)
            if !report.passed { return report }
        }
        return nil
    }
}
