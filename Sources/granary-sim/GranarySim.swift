import ArgumentParser
import GranarySimulation

@main
struct GranarySim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "granary-sim",
        abstract: "Run Multi-Paxos groups in the deterministic simulator, under faults, and check them.",
        discussion:
            "--seed S replays one run bit for bit (its trace hash is the last line); --seeds N runs seeds 0..<N and stops at the first failure, naming its seed."
    )

    @Option(help: "Run this one seed.")
    var seed: UInt64?

    @Option(help: "Run N seeds, from --from on.")
    var seeds: UInt64?

    @Option(help: "The first seed of --seeds.")
    var from: UInt64 = 0

    @Flag(
        help:
            "Measure the core alone: commits per second of CPU on a perfect network, for --ticks ticks with --batch proposals each."
    )
    var throughput = false

    @Option(help: "Proposals per tick for --throughput.")
    var batch: Int = 16

    @Option(
        help:
            "Run with a deliberate bug, to see the checks catch it: send-before-persist, forget-disk, forget-promise, always-leader-alive, reads-without-lease, skip-lease-wait, recover-from-quorum (with --amnesia)."
    )
    var bug: String?

    @Option(help: "Per tick: the chance that a node crashes (default 0.004).")
    var crash: Double?

    @Option(help: "Per tick: the chance that the operator adds or removes a replica (default 0.003).")
    var reconfigure: Double?

    @Option(help: "Per tick: the chance that the leader hands over to a peer (default 0.005).")
    var transfer: Double?

    @Option(help: "Per restart: the chance of an empty disk to recover from (default 0; needs --reconfigure 0).")
    var amnesia: Double?

    @Option(help: "Per Ready of the model replica: the chance that its persist takes 1-3 ticks (default 0).")
    var syncDelay: Double?

    var faults: FaultProfile {
        var faults = FaultProfile()
        if let crash { faults.crash = crash; faults.restart = min(1, crash * 10) }
        if let reconfigure { faults.reconfigure = reconfigure }
        if let transfer { faults.transfer = transfer }
        if let amnesia { faults.amnesia = amnesia }
        if let syncDelay { faults.syncDelay = syncDelay }
        return faults
    }

    @Option(help: "Ticks with faults before the liveness phase.")
    var ticks: Int = 2000

    @Option(help: "Replicas in the group (3 or 5, or any other count).")
    var replicas: Int = 3

    @Option(
        help:
            "How many of the founding replicas are log-only (they vote and keep the log, hold no state machine, never lead)."
    )
    var logOnly: Int = 0

    @Flag(
        help:
            "Run the shipped replica (the replication driver over the WAL and B-tree, on a faulty disk) instead of the model of one."
    )
    var shipped = false

    /// The options that replay a seed, besides --seed.
    var replayOptions: String {
        var options = ["--ticks \(ticks)", "--replicas \(replicas)", "--log-only \(logOnly)"]
        if let crash { options.append("--crash \(crash)") }
        if let reconfigure { options.append("--reconfigure \(reconfigure)") }
        if let transfer { options.append("--transfer \(transfer)") }
        if let amnesia { options.append("--amnesia \(amnesia)") }
        if let syncDelay { options.append("--sync-delay \(syncDelay)") }
        if shipped { options.append("--shipped") }
        if let bug { options.append("--bug \(bug)") }
        return options.joined(separator: " ")
    }

    func deliberateBug() throws -> Simulation.DeliberateBug? {
        switch bug {
        case nil: nil
        case "send-before-persist": .sendBeforePersist
        case "forget-disk": .forgetDiskOnRestart
        case "forget-promise": .forgetPromiseOnRestart
        case "always-leader-alive": .alwaysSayLeaderAlive
        case "reads-without-lease": .readsWithoutLease
        case "skip-lease-wait": .newLeaderSkipsLeaseWait
        case "recover-from-quorum": .recoveryTrustsAQuorum
        default: throw ValidationError("unknown --bug \(bug!)")
        }
    }

    func run() throws {
        let bug = try deliberateBug()
        guard (1...9).contains(replicas) else { throw ValidationError("--replicas must be 1...9") }
        guard logOnly >= 0 && logOnly < replicas else { throw ValidationError("--log-only must be 0..<replicas") }
        guard ticks >= 0 && ticks <= 10_000_000 else { throw ValidationError("--ticks must be 0...10000000") }
        guard faults.amnesia == 0 || faults.reconfigure == 0 else {
            throw ValidationError("--amnesia needs --reconfigure 0: a recovering replica asks the founding voters")
        }
        if throughput {
            guard (1...10_000).contains(batch) else { throw ValidationError("--batch must be 1...10000") }
            let measurement = Simulation.measureThroughput(replicas: replicas, ticks: ticks, proposalsPerTick: batch)
            print(measurement)
            return
        }
        if let seed {
            let report = Simulation(
                seed: seed, replicas: replicas, logOnly: logOnly, faults: faults, bug: bug,
                code: shipped ? .shipped : .model
            ).run(
                faultTicks: ticks)
            print(report)
            print("trace \(String(report.traceHash, radix: 16))")
            if !report.passed { throw ExitCode(1) }
            return
        }
        let count = seeds ?? 100
        guard count <= UInt64.max - from else { throw ValidationError("--from plus --seeds must stay below 2^64") }
        var acknowledged = 0, operations = 0, strongReads = 0, inconclusive = 0, amnesias = 0
        for seed in from..<from + count {
            let report = Simulation(
                seed: seed, replicas: replicas, logOnly: logOnly, faults: faults, bug: bug,
                code: shipped ? .shipped : .model
            ).run(
                faultTicks: ticks)
            acknowledged += report.acknowledged
            operations += report.operations
            strongReads += report.strongReads
            inconclusive += report.inconclusiveKeys
            amnesias += report.amnesias
            if !report.passed {
                print(report)
                print(
                    "FAILED: seed \(seed) (replay: granary-sim --seed \(seed) \(replayOptions))"
                )
                throw ExitCode(1)
            }
        }
        print(
            "\(count) seeds passed (\(from)..<\(from + count)), \(replicas) \(shipped ? "shipped " : "")replicas (\(logOnly) log-only), \(ticks) fault ticks each, \(acknowledged) acknowledged proposals checked, "
                + "\(operations) client operations (\(strongReads) lease reads) linearizable, \(inconclusive) keys inconclusive"
                + (amnesias > 0 ? ", \(amnesias) restarts with an empty disk" : "")
        )
    }
}
