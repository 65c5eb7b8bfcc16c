import Foundation
import GranaryPaxos

extension Simulation {
    public struct Throughput: Sendable, CustomStringConvertible {
        public var replicas: Int
        public var commits: Int
        public var messages: Int
        public var cpuSeconds: Double

        public var commitsPerSecond: Double { Double(commits) / cpuSeconds }

        public var description: String {
            let perCommit = cpuSeconds / Double(max(commits, 1)) * 1e9
            return
                "\(replicas) replicas: \(commits) commits, \(messages) messages in \(String(format: "%.3f", cpuSeconds)) s of CPU: "
                + "\(String(format: "%.0f", commitsPerSecond)) commits/s, \(String(format: "%.0f", perCommit)) ns of CPU per commit (whole group, simulator included)"
        }
    }

    /// The protocol's CPU cost: a perfect network (every message delivered the next tick),
    /// `proposalsPerTick` proposals each tick at the leader, every replica in this thread.
    public static func measureThroughput(replicas: Int, ticks: Int, proposalsPerTick: Int) -> Throughput {
        let simulation = Simulation(seed: 1, replicas: replicas, faults: .none, proposalChance: 0)
        let start = cpuTime()
        for _ in 0..<ticks {
            if let leader = simulation.currentLeader() {
                for _ in 0..<proposalsPerTick {
                    simulation.propose(.value(Array("value-\(simulation.nextValue)".utf8)), to: leader)
                    simulation.nextValue += 1
                }
            }
            simulation.step(faulty: false)
        }
        let seconds = cpuTime() - start
        let report = simulation.finish()
        precondition(report.passed, "the throughput run broke an invariant: \(report)")
        return Throughput(
            replicas: replicas, commits: report.acknowledged, messages: report.messages, cpuSeconds: seconds)
    }

    static func cpuTime() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
