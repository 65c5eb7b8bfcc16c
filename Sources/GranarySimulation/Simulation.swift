import GranaryLinearizability
import GranaryPaxos

/// The simulation's only source of randomness, so one seed replays one run.
public typealias SimulationRandom = SeededRandom

extension SeededRandom {
    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    public mutating func chance(_ probability: Double) -> Bool { Double(next() >> 11) * 0x1.0p-53 < probability }
}

/// How hostile the simulated world is while faults are on.
public struct FaultProfile: Sendable {
    public var drop = 0.05
    public var duplicate = 0.03
    /// Messages take 1...maxDelay ticks; different delays reorder them.
    public var maxDelay = 4
    /// Per tick: a node crashes (it loses everything not persisted), or a crashed one restarts.
    public var crash = 0.004
    public var restart = 0.05
    /// Per tick: the links change: all healed, one node cut off, a one-way cut, or one link clogged.
    public var partition = 0.01
    /// A node crashes after persisting but before sending (the window persist-before-send guards).
    public var crashBeforeSend = 0.002
    /// Each node's clock runs at a rate within 1 +- clockDrift of real time (redrawn now and
    /// then); the replicas' lease is configured for drift up to 12.5%.
    public var clockDrift = 0.1
    /// Per tick: the leader is asked to hand leadership to a random peer (a planned restart).
    public var transfer = 0.005

    public init() {}
    public static let none: FaultProfile = {
        var profile = FaultProfile()
        profile.drop = 0; profile.duplicate = 0; profile.maxDelay = 1
        profile.crash = 0; profile.restart = 0; profile.partition = 0; profile.crashBeforeSend = 0
        profile.clockDrift = 0
        profile.transfer = 0
        return profile
    }()
}

/// What a run found.
public struct SimulationReport: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var ticks: Int
    public var proposed = 0
    public var acknowledged = 0
    public var chosenSlots = 0
    public var messages = 0
    public var crashes = 0
    /// Client operations in the history the linearizability checker saw, and how many of
    /// them were strong reads served under a lease.
    public var operations = 0
    public var strongReads = 0
    public var inconclusiveKeys = 0
    public var violations: [String] = []
    public var traceHash: UInt64 = 0xCBF2_9CE4_8422_2325

    public var passed: Bool { violations.isEmpty }

    public var description: String {
        var text = "seed \(seed): \(ticks) ticks, \(proposed) proposed, \(acknowledged) acknowledged, \(chosenSlots) slots chosen, \(messages) messages, \(crashes) crashes, \(operations) client operations (\(strongReads) lease reads) linearizable"
        if inconclusiveKeys > 0 { text += " (\(inconclusiveKeys) keys inconclusive)" }
        for violation in violations.prefix(5) { text += "\n  VIOLATION: \(violation)" }
        return text
    }
}

/// A group of replicas, a network and disks, all simulated in one thread, driven tick by
/// tick from one seed. After `faultTicks` of faults it heals everything and demands that
/// the group make progress again within `livenessTicks` (the liveness phase).
public final class Simulation {
    struct Node {
        var replica: Replica?
        /// What survives a crash: what the replica persisted.
        var disk = DurableState()
        /// The state machine: applied commands in slot order (rebuilt after a restart).
        var applied: [Command] = []
        var store = KeyValueStore()
        /// The node's clock: it ticks when its share of real time reaches a whole tick.
        var clockRate = 1.0
        var clockShare = 0.0
    }

    struct InFlight {
        var deliverAt: Int
        var order: UInt64
        var envelope: Envelope
    }

    public let seed: UInt64
    let members: [NodeID]
    let faults: FaultProfile
    let proposalChance: Double
    let bug: DeliberateBug?
    let checkLeasesOnEveryStep: Bool
    var random: SimulationRandom
    var nodes: [NodeID: Node] = [:]
    var network: [InFlight] = []
    var blocked: Set<[NodeID]> = []  // directed links [from, to] that drop everything
    var now = 0
    var nextValue: UInt64 = 1
    var report: SimulationReport
    /// Proposals in flight: (leader, slot) -> the command it proposed there.
    var pending: [NodeID: [Slot: Command]] = [:]
    var acknowledged: [Command: Slot] = [:]
    var chosenValues: [Slot: Command] = [:]
    var leaderOfBallot: [Ballot: NodeID] = [:]
    /// The clients' history for the linearizability checker: one clock for calls and
    /// returns, and the history index of each proposal in flight.
    var history = KeyValueHistory()
    var historyClock: UInt64 = 0
    var pendingOperation: [Command: Int] = [:]
    /// History entries of proposals known never to be chosen (their slot chose another).
    var failedOperations: Set<Int> = []
    static let keys: UInt64 = 3

    /// Deliberate bugs, for tests that show the checks catch them.
    public enum DeliberateBug: Sendable {
        /// Messages go out before the state they report is persisted.
        case sendBeforePersist
        /// A replica restarts with an empty disk (it forgets its promises and votes).
        case forgetDiskOnRestart
        /// Strong reads are served by any replica that believes it leads, lease or not.
        case readsWithoutLease
        /// A new leader serves strong reads without waiting out its predecessor's lease.
        case newLeaderSkipsLeaseWait
    }

    /// `checkLeases: false` leaves overlapping leases to the linearizability checker alone.
    public init(seed: UInt64, replicas: Int = 3, faults: FaultProfile = FaultProfile(), proposalChance: Double = 0.3,
                bug: DeliberateBug? = nil, checkLeases: Bool = true) {
        precondition(replicas >= 1)
        self.seed = seed
        members = (1...replicas).map { NodeID($0) }
        self.faults = faults
        self.proposalChance = proposalChance
        self.bug = bug
        self.checkLeasesOnEveryStep = checkLeases
        random = SimulationRandom(seed: seed)
        report = SimulationReport(seed: seed, ticks: 0)
        for id in members {
            nodes[id] = Node(replica: Replica(configuration: configuration(id)))
            nodes[id]!.clockRate = drawClockRate()
        }
    }

    func configuration(_ id: NodeID) -> Replica.Configuration {
        var configuration = Replica.Configuration(id: id, members: members, seed: seed &+ UInt64(id) &* 7919)
        configuration.newLeaderWaitsOutOldLease = bug != .newLeaderSkipsLeaseWait
        return configuration
    }

    func drawClockRate() -> Double {
        faults.clockDrift == 0 ? 1 : 1 - faults.clockDrift + 2 * faults.clockDrift * Double(random.below(1001)) / 1000
    }

    // MARK: Running

    /// Runs `faultTicks` ticks with faults, then heals and runs the liveness phase.
    public func run(faultTicks: Int, livenessTicks: Int = 200) -> SimulationReport {
        for _ in 0..<faultTicks {
            step(faulty: true)
            if !report.violations.isEmpty { return finish() }
        }
        heal()
        // Liveness: with no faults, a leader emerges and a new proposal commits everywhere.
        let probe = Command.value(Array("probe-\(seed)".utf8))
        var probeAcknowledged = false
        for _ in 0..<livenessTicks {
            if !probeAcknowledged, acknowledged[probe] == nil, let leader = currentLeader() {
                if !(pending[leader]?.values.contains(probe) ?? false) { propose(probe, to: leader) }
            }
            step(faulty: false)
            if !report.violations.isEmpty { return finish() }
            if let slot = acknowledged[probe] {
                probeAcknowledged = true
                if members.allSatisfy({ (nodes[$0]!.replica?.chosen ?? 0) >= slot }) { break }
            }
        }
        if acknowledged[probe] == nil {
            report.violations.append("liveness: no proposal committed within \(livenessTicks) ticks after faults stopped (\(state()))")
        } else if let slot = acknowledged[probe], !members.allSatisfy({ (nodes[$0]!.replica?.chosen ?? 0) >= slot }) {
            report.violations.append("liveness: not every replica learned slot \(slot) within \(livenessTicks) ticks (\(state()))")
        }
        return finish()
    }

    func finish() -> SimulationReport {
        // No acknowledged proposal lost: each is chosen in its slot.
        for (command, slot) in acknowledged.sorted(by: { $0.value < $1.value }) where chosenValues[slot] != command {
            report.violations.append("acknowledged \(command) at slot \(slot) but \(chosenValues[slot].map { "\($0)" } ?? "nothing") is chosen there")
        }
        report.ticks = now
        report.acknowledged = acknowledged.count
        report.chosenSlots = chosenValues.count
        // Every client's history, less proposals known never chosen, is linearizable.
        let checked = KeyValueHistory(history.entries.enumerated().filter { !failedOperations.contains($0.offset) }.map(\.element))
        let verdict = checked.check()
        report.operations = checked.entries.count
        report.inconclusiveKeys = verdict.inconclusiveKeys.count
        for (key, operations) in verdict.violations {
            report.violations.append("key \(key): the history is not linearizable:\n    " + operations.sorted { $0.call < $1.call }.map(\.description).joined(separator: "\n    "))
        }
        return report
    }

    /// Each replica's role, ballot and chosen slot, for failure messages.
    func state() -> String {
        members.map { id in
            guard let replica = nodes[id]!.replica else { return "\(id): down" }
            return "\(id): \(replica.role) ballot \(replica.promised) chosen \(replica.chosen) log \(replica.durable.log.count)"
        }.joined(separator: "; ")
    }

    func heal() {
        blocked = []
        for id in members where nodes[id]!.replica == nil { restart(id) }
    }

    func currentLeader() -> NodeID? {
        let leaders = members.filter { nodes[$0]!.replica?.role == .leader }
        guard !leaders.isEmpty else { return nil }
        // Stale leaders may linger; clients try the one with the highest ballot.
        return leaders.max { nodes[$0]!.replica!.promised < nodes[$1]!.replica!.promised }
    }

    func step(faulty: Bool) {
        now += 1
        if faulty { injectFaults() }
        // Clients write to whoever leads, blindly or conditionally, and read anywhere:
        // only a replica that may serve a strong read answers.
        if random.chance(proposalChance), let leader = currentLeader() {
            let key = UInt64(random.below(Int(Simulation.keys)))
            let value = nextValue
            nextValue += 1
            let operation: KeyValueCommand = random.chance(0.3)
                ? .compareAndSet(key: key, expected: random.chance(0.5) ? nil : UInt64(random.below(Int(value))), new: value)
                : .write(key: key, value: value)
            report.proposed += 1
            propose(operation.encoded, to: leader)
        }
        if random.chance(proposalChance) {
            read(key: UInt64(random.below(Int(Simulation.keys))), at: members[random.below(members.count)])
        }
        // Deliver what is due, in an order the seed picks.
        var due: [InFlight] = []
        network.removeAll { message in
            if message.deliverAt <= now { due.append(message); return true }
            return false
        }
        due.sort { $0.order < $1.order }
        for message in due {
            trace(1, UInt64(message.envelope.from), UInt64(message.envelope.to), UInt64(message.envelope.message.kind))
            // In place: a copy of a replica would copy its whole log.
            guard nodes[message.envelope.to]!.replica != nil else { continue }
            nodes[message.envelope.to]!.replica!.step(message.envelope)
            process(message.envelope.to, faulty: faulty)
        }
        for id in members where nodes[id]!.replica != nil {
            // Clocks drift: a node ticks zero, one or two times in a step of real time.
            nodes[id]!.clockShare += nodes[id]!.clockRate
            while nodes[id]!.clockShare >= 1 && nodes[id]!.replica != nil {
                nodes[id]!.clockShare -= 1
                nodes[id]!.replica!.tick()
                process(id, faulty: faulty)
            }
        }
    }

    /// Whether a replica would answer a strong read now (as the caller decides it).
    func servesStrongReads(_ id: NodeID) -> Bool {
        guard let replica = nodes[id]!.replica else { return false }
        return bug == .readsWithoutLease ? replica.role == .leader : replica.canServeStrongRead
    }

    /// A strongly consistent read at `id`: answered from its applied state if it may serve one.
    func read(key: UInt64, at id: NodeID) {
        guard servesStrongReads(id) else { return }
        let value = nodes[id]!.store.values[key]
        historyClock += 2
        history.append(.init(key: key, input: .read, output: .read(value), call: historyClock - 1, returned: historyClock))
        report.strongReads += 1
        trace(6, UInt64(id), key, value ?? .max)
    }

    /// A client's proposal to `leader`; remembered so that its commit acknowledges it.
    func propose(_ command: Command, to leader: NodeID) {
        guard nodes[leader]!.replica != nil else { return }
        guard let slot = nodes[leader]!.replica!.propose(command) else { return }
        pending[leader, default: [:]][slot] = command
        if let operation = KeyValueCommand(command) {
            historyClock += 1
            pendingOperation[command] = history.entries.count
            history.append(.init(key: operation.key, input: operation.input, output: nil, call: historyClock, returned: nil))
        }
    }

    func injectFaults() {
        if random.chance(faults.crash) {
            let live = members.filter { nodes[$0]!.replica != nil }
            if !live.isEmpty { crash(live[random.below(live.count)]) }
        }
        for id in members where nodes[id]!.replica == nil && random.chance(faults.restart) { restart(id) }
        if random.chance(0.01) {
            let id = members[random.below(members.count)]
            nodes[id]!.clockRate = drawClockRate()
        }
        if random.chance(faults.transfer), let leader = currentLeader(), members.count > 1 {
            var target = members[random.below(members.count)]
            if target == leader { target = members[(members.firstIndex(of: leader)! + 1) % members.count] }
            if nodes[leader]!.replica!.transferLeadership(to: target) { process(leader, faulty: true) }
            trace(7, UInt64(leader), UInt64(target), 0)
        }
        if random.chance(faults.partition) {
            blocked = []
            let a = members[random.below(members.count)]
            var b = members[random.below(members.count)]
            if b == a { b = members[(members.firstIndex(of: a)! + 1) % members.count] }
            switch random.below(4) {
            case 0: break  // healed
            case 1: for other in members where other != a { blocked.insert([a, other]); blocked.insert([other, a]) }
            case 2: for other in members where other != a { blocked.insert([a, other]) }  // a can hear but not speak
            default: blocked.insert([a, b])  // one clogged link
            }
            trace(5, UInt64(a), UInt64(b), UInt64(blocked.count))
        }
    }

    func crash(_ id: NodeID) {
        nodes[id]!.replica = nil
        nodes[id]!.applied = []
        nodes[id]!.store = KeyValueStore()
        pending[id] = nil
        report.crashes += 1
        trace(2, UInt64(id), 0, 0)
    }

    func restart(_ id: NodeID) {
        if bug == .forgetDiskOnRestart { nodes[id]!.disk = DurableState() }
        nodes[id]!.replica = Replica(configuration: configuration(id), durable: nodes[id]!.disk)
        trace(3, UInt64(id), 0, 0)
    }

    /// Does what a replica's Ready asks: persist, then send, then apply (checking as it goes).
    func process(_ id: NodeID, faulty: Bool) {
        while nodes[id]!.replica?.hasReady == true {
            let ready = nodes[id]!.replica!.ready()
            if bug == .sendBeforePersist {
                send(ready.messages, faulty: faulty)
                if faulty && random.chance(faults.crashBeforeSend * 10) {
                    crash(id)
                    return
                }
            }
            if let promised = ready.promised { nodes[id]!.disk.promised = promised }
            for entry in ready.entries { nodes[id]!.disk.log[entry.slot] = entry }
            if bug != .sendBeforePersist {
                if faulty && random.chance(faults.crashBeforeSend) {
                    crash(id)
                    return
                }
                send(ready.messages, faulty: faulty)
            }
            for entry in ready.committed { apply(entry, at: id) }
            nodes[id]!.replica!.advance(ready)
            checkLeadership(id)
            if checkLeasesOnEveryStep { checkLeases() }
        }
    }

    func send(_ messages: [Envelope], faulty: Bool) {
        for envelope in messages {
            report.messages += 1
            if blocked.contains([envelope.from, envelope.to]) { continue }
            if faulty && random.chance(faults.drop) { continue }
            let copies = faulty && random.chance(faults.duplicate) ? 2 : 1
            for _ in 0..<copies {
                let delay = 1 + random.below(max(1, faulty ? faults.maxDelay : 1))
                network.append(InFlight(deliverAt: now + delay, order: random.next(), envelope: envelope))
            }
        }
    }

    // MARK: Checks

    func apply(_ entry: Entry, at id: NodeID) {
        let expectedSlot = Slot(nodes[id]!.applied.count + 1)
        if entry.slot != expectedSlot {
            report.violations.append("node \(id) applied slot \(entry.slot) when slot \(expectedSlot) was next")
        }
        nodes[id]!.applied.append(entry.command)
        let output = nodes[id]!.store.apply(entry.command)
        if let chosen = chosenValues[entry.slot] {
            if chosen != entry.command {
                report.violations.append("slot \(entry.slot): node \(id) applied \(entry.command) but \(chosen) was chosen")
            }
        } else {
            chosenValues[entry.slot] = entry.command
        }
        if let proposed = pending[id]?[entry.slot] {
            pending[id]![entry.slot] = nil
            if proposed == entry.command {
                acknowledged[proposed] = entry.slot
                if let index = pendingOperation.removeValue(forKey: proposed) {
                    historyClock += 1
                    history.entries[index].output = output
                    history.entries[index].returned = historyClock
                }
            } else if let index = pendingOperation.removeValue(forKey: proposed) {
                // Its slot chose another command, and a command lives in one slot only.
                failedOperations.insert(index)
            }
        }
        trace(4, UInt64(id), entry.slot, UInt64(entry.command.hashValueStable))
    }

    /// At most one replica serves strong reads at any moment (leases never overlap).
    func checkLeases() {
        let serving = members.filter(servesStrongReads)
        if serving.count > 1 {
            let ballots = serving.map { "\($0) in ballot \(nodes[$0]!.replica!.promised)" }.joined(separator: ", ")
            report.violations.append("tick \(now): two replicas serve strong reads at once: \(ballots)")
        }
    }

    func checkLeadership(_ id: NodeID) {
        guard nodes[id]!.replica!.role == .leader else { return }
        let ballot = nodes[id]!.replica!.promised
        if ballot.node != id { report.violations.append("node \(id) leads in ballot \(ballot), which is not its own") }
        if let other = leaderOfBallot[ballot], other != id {
            report.violations.append("two leaders in ballot \(ballot): \(other) and \(id)")
        }
        leaderOfBallot[ballot] = id
    }

    /// FNV-1a over the run's events: the same seed gives the same hash, bit for bit.
    func trace(_ values: UInt64...) {
        for value in [UInt64(now)] + values {
            var rest = value
            for _ in 0..<8 {
                report.traceHash ^= rest & 0xFF
                report.traceHash = report.traceHash &* 0x0000_0100_0000_01B3
                rest >>= 8
            }
        }
    }
}

extension Message {
    var kind: Int {
        switch self {
        case .prepare: 1
        case .promise: 2
        case .reject: 3
        case .append: 4
        case .appended: 5
        case .leaderQuery: 6
        case .leaderStatus: 7
        case .timeoutNow: 8
        }
    }
}

extension Command {
    /// A hash that does not change between processes (Swift's Hasher is seeded per process).
    var hashValueStable: UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        if case .value(let bytes) = self {
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        }
        return hash
    }
}
