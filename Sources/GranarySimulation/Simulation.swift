import GranaryLinearizability
import GranaryPaxos
import GranaryReplication
import GranaryStorage
import GranaryStorageFaults

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
    /// A node crashes while persisting: the disk keeps a prefix of what the Ready asked for
    /// (a torn log tail) and loses the rest, and nothing was sent.
    public var crashWhilePersisting = 0.002
    /// Per input to a shipped replica: a write or sync of its disk fails with EIO.
    public var diskError = 0.001
    /// Each node's clock runs at a rate within 1 +- clockDrift of real time (redrawn now and
    /// then); the replicas' lease is configured for drift up to 12.5%.
    public var clockDrift = 0.1
    /// Per tick: the leader is asked to hand leadership to a random peer (a planned restart).
    public var transfer = 0.005
    /// Per tick: the operator adds a fresh replica or removes one (retiring it for good).
    public var reconfigure = 0.003
    /// Per Ready of the model replica: its persist takes one to three ticks, during which
    /// the replica takes messages and ticks but no other Ready (as the shipped driver, whose
    /// log syncs while its core goes on); a crash meanwhile loses what it was writing.
    public var syncDelay = 0.0
    /// Per restart: the node comes back with an empty disk (a replaced drive) and recovers
    /// before it votes (`Replica.Recovery`). Only with a fixed membership, as in a cluster
    /// (a recovering replica asks the founding voters).
    public var amnesia = 0.0

    public init() {}
    public static let none: FaultProfile = {
        var profile = FaultProfile()
        profile.drop = 0; profile.duplicate = 0; profile.maxDelay = 1
        profile.crash = 0; profile.restart = 0; profile.partition = 0; profile.crashBeforeSend = 0;
        profile.crashWhilePersisting = 0; profile.diskError = 0
        profile.clockDrift = 0; profile.transfer = 0; profile.reconfigure = 0
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
    /// Restarts with an empty disk (`FaultProfile.amnesia`).
    public var amnesias = 0
    public var snapshotsSent = 0
    public var membershipChanges = 0
    public var diskErrors = 0
    /// Shipped replicas: snapshots installed from a leader, and checkpoints of their trees.
    public var snapshotsInstalled = 0
    public var checkpoints = 0
    /// Client operations in the history the linearizability checker saw, and how many of
    /// them were strong reads served under a lease.
    public var operations = 0
    public var strongReads = 0
    public var inconclusiveKeys = 0
    public var violations: [String] = []
    public var traceHash: UInt64 = 0xCBF2_9CE4_8422_2325

    public var passed: Bool { violations.isEmpty }

    public var description: String {
        var text =
            "seed \(seed): \(ticks) ticks, \(proposed) proposed, \(acknowledged) acknowledged, \(chosenSlots) slots chosen, "
            + "\(messages) messages, \(crashes) crashes\(amnesias > 0 ? " (\(amnesias) restarted with an empty disk)" : ""), \(diskErrors) disk errors, \(snapshotsSent) snapshots sent, \(membershipChanges) membership changes, "
            + "\(operations) client operations (\(strongReads) lease reads) linearizable"
        if inconclusiveKeys > 0 { text += " (\(inconclusiveKeys) keys inconclusive)" }
        if checkpoints > 0 {
            text += "; shipped replicas: \(checkpoints) checkpoints, \(snapshotsInstalled) snapshots installed"
        }
        for violation in violations.prefix(5) { text += "\n  VIOLATION: \(violation)" }
        return text
    }
}

/// A group of replicas, a network and disks, all simulated in one thread, driven tick by
/// tick from one seed. After `faultTicks` of faults it heals everything and demands that
/// the group make progress again within `livenessTicks` (the liveness phase). Clients
/// write, conditionally write and read a few keys (Simulation+Clients.swift); the checks
/// run on every step and the history is checked for linearizability at the end.
public final class Simulation: @unchecked Sendable {
    // @unchecked: a simulation runs on one thread, its shipped replicas' tasks included
    // (`SimulatorExecutor` checks it).
    struct Node {
        var replica: Replica?
        /// Never started (a spare the operator may add), or removed from the group for good.
        var spare = false
        var retired = false
        /// What survives a crash: what the replica persisted, and whether it has recovered
        /// since it last lost its disk (the mark a node keeps until then).
        var disk = DurableState()
        var recovering = false
        /// The Ready being persisted (`FaultProfile.syncDelay`), and the step it is done.
        var syncing: (ready: Ready, doneAt: Int)?
        /// The state machine, and the slot it has applied through (rebuilt after a restart
        /// from the snapshot on disk, then the log).
        var store = KeyValueStore()
        var appliedThrough: Slot = 0
        var incarnation = 0
        /// The shipped replica (`ReplicaCode.shipped`) and its disk; `replica` then mirrors
        /// its core after each input.
        var storage: FaultyStorage?
        var driver: ReplicationDriver<FaultyStorage>?
        var servesStrongReads = false
        /// The disk's count of injected failures when the replica started: a failure of
        /// its store with none injected since is a bug.
        var failuresAtStart = 0
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
    let founding: Membership
    /// Every node id: the founding members, then spares for the operator to add.
    let nodeIDs: [NodeID]
    let faults: FaultProfile
    let code: ReplicaCode
    let executor = SimulatorExecutor()
    /// Whether the current step injects faults (the shipped replica's callbacks ask).
    var stepIsFaulty = false
    /// Shipped replicas that crash once their current input is done, having sent nothing.
    var crashAfterSend: Set<NodeID> = []
    /// What a client is told when its proposal commits, where the log does not say it (a
    /// conditional write the shipped replica's leader evaluated and logged as a put).
    var outputOnCommit: [Command: KeyValueModel.Output] = [:]
    let proposalChance: Double
    let bug: DeliberateBug?
    let checkLeasesOnEveryStep: Bool
    var random: SimulationRandom
    /// By node id (index 0 unused): an array, so that reading a node's field copies nothing.
    var nodes: [Node] = []
    var network: [InFlight] = []
    var blocked: Set<[NodeID]> = []  // directed links [from, to] that drop everything
    var now = 0
    var nextValue: UInt64 = 1
    var report: SimulationReport
    /// Proposals in flight: (leader, slot) -> the command it proposed there.
    var pending: [NodeID: [Slot: Command]] = [:]
    var acknowledged: [Command: Slot] = [:]
    var chosenValues: [Slot: Command] = [:]
    /// The state machine's digest after each slot, as the first replica to apply it had it.
    var stateAfter: [Slot: UInt64] = [:]
    /// Who led in each ballot: the node and its incarnation (a restart is a new one: a node
    /// that leads a ballot again after a restart could propose two values for one slot).
    var leaderOfBallot: [Ballot: (id: NodeID, incarnation: Int)] = [:]
    /// The membership of the chosen log's prefix, as first applied, and the replicas it
    /// removed that the operator has yet to retire.
    var current: Membership
    var retiring: [(slot: Slot, removed: [NodeID], membership: Membership)] = []
    /// The clients' history for the linearizability checker: one clock for calls and
    /// returns, and the history index of each proposal in flight.
    var history = KeyValueHistory()
    var historyClock: UInt64 = 0
    var pendingOperation: [Command: Int] = [:]
    /// History entries of proposals known never to be chosen (their slot chose another).
    var failedOperations: Set<Int> = []
    static let keys: UInt64 = 3
    /// Full replicas snapshot their state machine and compact their log this often.
    static let compactionSlots: Slot = 40

    /// Deliberate bugs, for tests that show the checks catch them.
    public enum DeliberateBug: Sendable {
        /// Messages go out before the state they report is persisted.
        case sendBeforePersist
        /// A replica restarts with an empty disk (it forgets its promises and votes).
        case forgetDiskOnRestart
        /// A replica restarts without its promise (its log kept): it may run in a ballot again.
        case forgetPromiseOnRestart
        /// Replicas always answer that they hear a leader, so no follower ever runs.
        case alwaysSayLeaderAlive
        /// Strong reads are served by any replica that believes it leads, lease or not.
        case readsWithoutLease
        /// A new leader serves strong reads without waiting out its predecessor's lease.
        case newLeaderSkipsLeaseWait
        /// A replica that lost its disk votes again once a quorum (itself included) has told
        /// it their ballots and logs' ends: the others may lack what it chose with the rest.
        case recoveryTrustsAQuorum
    }

    /// `logOnly` of the founding replicas (the last ones) hold no state machine.
    /// `checkLeases: false` leaves overlapping leases to the linearizability checker alone.
    public init(
        seed: UInt64, replicas: Int = 3, logOnly: Int = 0, faults: FaultProfile = FaultProfile(),
        proposalChance: Double = 0.3,
        bug: DeliberateBug? = nil, checkLeases: Bool = true, code: ReplicaCode = .model
    ) {
        precondition(replicas >= 1 && logOnly < replicas)
        self.seed = seed
        let voters = (1...replicas).map { NodeID($0) }
        founding = Membership(voters: voters, logOnly: Set(voters.suffix(logOnly)))
        current = founding
        nodeIDs = (1...replicas + 4).map { NodeID($0) }
        self.faults = faults
        self.code = code
        self.proposalChance = proposalChance
        self.bug = bug
        self.checkLeasesOnEveryStep = checkLeases
        random = SimulationRandom(seed: seed)
        report = SimulationReport(seed: seed, ticks: 0)
        nodes = [Node(spare: true)]
        for id in nodeIDs {
            nodes.append(Node())
            nodes[Int(id)].clockRate = drawClockRate()
            nodes[Int(id)].spare = !founding.contains(id)
        }
        for id in founding.voters { startReplica(id) }
    }

    func configuration(_ id: NodeID) -> Replica.Configuration {
        var configuration = Replica.Configuration(
            id: id, members: founding.voters, logOnly: founding.logOnly, seed: seed &+ UInt64(id) &* 7919)
        configuration.newLeaderWaitsOutOldLease = bug != .newLeaderSkipsLeaseWait
        configuration.recoveryAsksEveryVoter = bug != .recoveryTrustsAQuorum
        configuration.recovering = nodes[Int(id)].recovering
        return configuration
    }

    func drawClockRate() -> Double {
        faults.clockDrift == 0 ? 1 : 1 - faults.clockDrift + 2 * faults.clockDrift * Double(random.below(1001)) / 1000
    }

    var running: [NodeID] { nodeIDs.filter { nodes[Int($0)].replica != nil } }

    // MARK: Running

    /// Runs `faultTicks` ticks with faults, then heals and runs the liveness phase.
    public func run(faultTicks: Int, livenessTicks: Int = 200) -> SimulationReport {
        for _ in 0..<faultTicks {
            step(faulty: true)
            if !report.violations.isEmpty { return finish() }
        }
        heal()
        // Liveness: with no faults, a leader emerges and a new proposal commits at every voter.
        let probe =
            code == .model
            ? Command.value(Array("probe-\(seed)".utf8))
            : .value(LogCommand.writes([.put(key: Array("probe".utf8), value: Simulation.treeValue(seed))]).encoded)
        var probeAcknowledged = false
        for _ in 0..<livenessTicks {
            if !probeAcknowledged, acknowledged[probe] == nil, let leader = currentLeader() {
                if !(pending[leader]?.values.contains(probe) ?? false) { propose(probe, to: leader) }
            }
            step(faulty: false)
            if !report.violations.isEmpty { return finish() }
            // A disk fault injected before the heal may still stop a node (a checkpoint's
            // sync that failed): restarted, as an operator would.
            heal()
            if let slot = acknowledged[probe] {
                probeAcknowledged = true
                if everyVoterHasChosen(slot) { break }
            }
        }
        if acknowledged[probe] == nil {
            report.violations.append(
                "liveness: no proposal committed within \(livenessTicks) ticks after faults stopped (\(state()))")
        } else if let slot = acknowledged[probe], !everyVoterHasChosen(slot) {
            report.violations.append(
                "liveness: not every voter learned slot \(slot) within \(livenessTicks) ticks (\(state()))")
        }
        return finish()
    }

    func everyVoterHasChosen(_ slot: Slot) -> Bool {
        guard let leader = currentLeader() else { return false }
        return nodes[Int(leader)].replica!.latestMembership.voters.allSatisfy {
            (nodes[Int($0)].replica?.chosen ?? 0) >= slot
        }
    }

    /// Each replica's role, ballot and chosen slot, for failure messages.
    func state() -> String {
        nodeIDs.filter { !nodes[Int($0)].spare }.map { id in
            if nodes[Int(id)].retired { return "\(id): retired" }
            guard let replica = nodes[Int(id)].replica else { return "\(id): down" }
            let changes = replica.durable.log.values.filter { if case .membership = $0.command { true } else { false } }
                .sorted { $0.slot < $1.slot }.map { "\($0.slot)@\($0.ballot)=\($0.command)" }.joined(separator: " ")
            return
                "\(id): \(replica.role) ballot \(replica.promised) chosen \(replica.chosen) log \(replica.durable.log.count) "
                + "snapshot \(replica.durable.snapshot.map { "\($0.slot) \($0.membership)" } ?? "none") members \(replica.latestMembership) changes [\(changes)]"
        }.joined(separator: "; ")
    }

    func heal() {
        stepIsFaulty = false
        blocked = []
        for id in nodeIDs where nodes[Int(id)].replica == nil && !nodes[Int(id)].spare && !nodes[Int(id)].retired {
            restart(id)
        }
    }

    func currentLeader() -> NodeID? {
        let leaders = running.filter { nodes[Int($0)].replica!.role == .leader }
        // Stale leaders may linger; clients try the one with the highest ballot.
        return leaders.max { nodes[Int($0)].replica!.promised < nodes[Int($1)].replica!.promised }
    }

    func step(faulty: Bool) {
        now += 1
        stepIsFaulty = faulty
        if faulty { injectFaults() }
        runClients()
        // Deliver what is due, in an order the seed picks.
        var due: [InFlight] = []
        network.removeAll { message in
            if message.deliverAt <= now { due.append(message); return true }
            return false
        }
        due.sort { $0.order < $1.order }
        for message in due {
            trace(1, UInt64(message.envelope.from), UInt64(message.envelope.to), UInt64(message.envelope.message.kind))
            deliver(message.envelope)
        }
        if faults.syncDelay > 0 { finishSyncs() }
        for id in running {
            // Clocks drift: a node ticks zero, one or two times in a step of real time.
            nodes[Int(id)].clockShare += nodes[Int(id)].clockRate
            while nodes[Int(id)].clockShare >= 1 && nodes[Int(id)].replica != nil {
                nodes[Int(id)].clockShare -= 1
                tickReplica(id)
            }
        }
        retire()
    }

    // MARK: Faults

    func injectFaults() {
        if random.chance(faults.crash) {
            let live = running
            if !live.isEmpty { crash(live[random.below(live.count)]) }
        }
        for id in nodeIDs
        where nodes[Int(id)].replica == nil && !nodes[Int(id)].spare && !nodes[Int(id)].retired
            && random.chance(faults.restart)
        {
            restart(id)
        }
        if random.chance(0.01) {
            let id = nodeIDs[random.below(nodeIDs.count)]
            nodes[Int(id)].clockRate = drawClockRate()
        }
        if random.chance(faults.transfer), let leader = currentLeader() {
            let candidates = nodes[Int(leader)].replica!.latestMembership.voters.filter { $0 != leader }
            if !candidates.isEmpty {
                let target = candidates[random.below(candidates.count)]
                transferLeadership(from: leader, to: target)
                trace(7, UInt64(leader), UInt64(target), 0)
            }
        }
        if random.chance(faults.reconfigure) { reconfigure() }
        if random.chance(faults.partition) {
            blocked = []
            let a = nodeIDs[random.below(nodeIDs.count)]
            var b = nodeIDs[random.below(nodeIDs.count)]
            if b == a { b = nodeIDs[(nodeIDs.firstIndex(of: a)! + 1) % nodeIDs.count] }
            switch random.below(4) {
            case 0: break  // healed
            case 1: for other in nodeIDs where other != a { blocked.insert([a, other]); blocked.insert([other, a]) }
            case 2: for other in nodeIDs where other != a { blocked.insert([a, other]) }  // a can hear but not speak
            default: blocked.insert([a, b])  // one clogged link
            }
            trace(5, UInt64(a), UInt64(b), UInt64(blocked.count))
        }
    }

    /// The operator adds a replica (a fresh spare, started empty) or removes one, keeping the
    /// group between one fewer and one more voter than it was founded with. A removed replica
    /// is retired once its removal is chosen.
    func reconfigure() {
        guard let leader = currentLeader() else { return }
        let latest = nodes[Int(leader)].replica!.latestMembership
        let spares = nodeIDs.filter { nodes[Int($0)].spare }
        if random.chance(0.5) && latest.voters.count > max(1, founding.voters.count - 1) {
            let full = latest.voters.filter { !latest.logOnly.contains($0) }
            let removable = latest.voters.filter { latest.logOnly.contains($0) || full.count > 1 }
            guard !removable.isEmpty else { return }
            let victim = removable[random.below(removable.count)]
            if proposeMembership(latest.removing(victim), at: leader) {
                report.membershipChanges += 1
                trace(8, UInt64(victim), 0, 0)
            }
        } else if latest.voters.count < founding.voters.count + 1, let spare = spares.first {
            guard proposeMembership(latest.adding(spare), at: leader) else { return }
            nodes[Int(spare)].spare = false
            startReplica(spare)
            report.membershipChanges += 1
            trace(9, UInt64(spare), 0, 0)
        }
    }

    func crash(_ id: NodeID) {
        if code == .shipped { crashShipped(id) }
        nodes[Int(id)].replica = nil
        nodes[Int(id)].syncing = nil
        nodes[Int(id)].store = KeyValueStore()
        nodes[Int(id)].appliedThrough = 0
        pending[id] = nil
        report.crashes += 1
        trace(2, UInt64(id), 0, 0)
    }

    func restart(_ id: NodeID) {
        // One replica without its disk at a time: two would be a majority of three lost.
        // (No draw without amnesia: a seed replays as it did before the fault existed.)
        let amnesia =
            faults.amnesia > 0 && stepIsFaulty && !nodeIDs.contains(where: { nodes[Int($0)].recovering })
            && random.chance(faults.amnesia)
        if bug == .forgetDiskOnRestart || amnesia {
            nodes[Int(id)].disk = DurableState()
            nodes[Int(id)].storage = nil
            nodes[Int(id)].recovering = amnesia
            if amnesia { report.amnesias += 1 }
        }
        if bug == .forgetPromiseOnRestart { nodes[Int(id)].disk.promised = .zero }
        nodes[Int(id)].incarnation += 1
        startReplica(id)
        trace(3, UInt64(id), 0, 0)
    }

    // MARK: Inputs, to the model replica or the shipped one

    func deliver(_ envelope: Envelope) {
        guard nodes[Int(envelope.to)].replica != nil else { return }
        if code == .shipped { return onDriver(envelope.to) { await $0.receive(envelope) } }
        // In place: a copy of a replica would copy its whole log.
        nodes[Int(envelope.to)].replica!.step(envelope)
        process(envelope.to, faulty: stepIsFaulty)
    }

    func tickReplica(_ id: NodeID) {
        if code == .shipped { return onDriver(id) { await $0.tick() } }
        nodes[Int(id)].replica!.tick()
        process(id, faulty: stepIsFaulty)
    }

    func transferLeadership(from leader: NodeID, to target: NodeID) {
        if code == .shipped { return onDriver(leader) { _ = await $0.transferLeadership(to: target) } }
        if nodes[Int(leader)].replica!.transferLeadership(to: target) { process(leader, faulty: stepIsFaulty) }
    }

    func proposeMembership(_ membership: Membership, at leader: NodeID) -> Bool {
        switch code {
        case .model:
            guard nodes[Int(leader)].replica!.proposeMembership(membership) != nil else { return false }
            process(leader, faulty: stepIsFaulty)
            return true
        case .shipped:
            let slot = Box<Slot?>(nil)
            onDriver(leader) { slot.value = await $0.proposeMembership(membership) }
            return slot.value != nil
        }
    }

    /// Proposes a client's command at `leader`; its slot if the leader took it.
    func proposeCommand(_ command: Command, at leader: NodeID) -> Slot? {
        switch code {
        case .model:
            // Sent with the leader's next Ready: proposals of one step go out together.
            return nodes[Int(leader)].replica!.propose(command)
        case .shipped:
            guard case .value(let bytes) = command, case .writes(let writes)? = LogCommand(decoding: bytes) else {
                preconditionFailure("the simulator proposes writes to a shipped replica")
            }
            let slot = Box<Slot?>(nil)
            onDriver(leader) { slot.value = await $0.propose(writes) }
            return slot.value
        }
    }

    /// Does what a replica's Ready asks: persist, then send, then apply (checking as it goes).
    /// With `syncDelay`, a persist may end at a later step (`finishSyncs`).
    func process(_ id: NodeID, faulty: Bool) {
        while nodes[Int(id)].syncing == nil && nodes[Int(id)].replica?.hasReady == true {
            let ready = nodes[Int(id)].replica!.ready()
            send(ready.earlyMessages, faulty: faulty)  // a leader's appends leave as its log syncs
            if faults.syncDelay > 0 && faulty && random.chance(faults.syncDelay) {
                nodes[Int(id)].syncing = (ready, now + 1 + random.below(3))
                return
            }
            guard finish(ready, at: id, faulty: faulty) else { return }
        }
    }

    /// Ends the persists that are due, each followed by what its Ready asked next.
    func finishSyncs() {
        for id in nodeIDs {
            guard let syncing = nodes[Int(id)].syncing, syncing.doneAt <= now else { continue }
            nodes[Int(id)].syncing = nil
            if finish(syncing.ready, at: id, faulty: stepIsFaulty) { process(id, faulty: stepIsFaulty) }
        }
    }

    /// Persists, sends and applies one Ready; false if the node crashed on the way.
    func finish(_ ready: Ready, at id: NodeID, faulty: Bool) -> Bool {
        if bug == .sendBeforePersist {
            send(ready.messages, faulty: faulty)
            if faulty && random.chance(faults.crashBeforeSend * 10) {
                crash(id)
                return false
            }
        }
        if faulty && random.chance(faults.crashWhilePersisting) {
            persist(ready, at: id, records: random.below(ready.entries.count + 3))
            crash(id)
            return false
        }
        persist(ready, at: id, records: .max)
        if ready.recovered { nodes[Int(id)].recovering = false }
        if let snapshot = ready.snapshot, ready.restoreSnapshot, let data = snapshot.data {
            restore(id, data: data, through: snapshot.slot)
        }
        if bug != .sendBeforePersist {
            if faulty && random.chance(faults.crashBeforeSend) {
                crash(id)
                return false
            }
            send(ready.messages, faulty: faulty)
        }
        for entry in ready.committed { apply(entry, at: id) }
        nodes[Int(id)].replica!.advance(ready)
        checkLeadership(id)
        if checkLeasesOnEveryStep { checkLeases() }
        compactIfDue(id)
        return true
    }

    /// Writes the first `records` of what a Ready asks to persist, in the order a log would
    /// hold them: the promise, the snapshot, the entries, the chosen mark.
    func persist(_ ready: Ready, at id: NodeID, records: Int) {
        var left = records
        func take() -> Bool {
            guard left > 0 else { return false }
            left -= 1
            return true
        }
        if let promised = ready.promised, take() { nodes[Int(id)].disk.promised = promised }
        if let snapshot = ready.snapshot, take() {
            nodes[Int(id)].disk.snapshot = snapshot
            nodes[Int(id)].disk.log = nodes[Int(id)].disk.log.filter { $0.key > snapshot.slot }
        }
        for entry in ready.entries where take() { nodes[Int(id)].disk.log[entry.slot] = entry }
        if let chosen = ready.chosen, take() { nodes[Int(id)].disk.chosen = chosen }
    }

    /// A full replica snapshots its state machine every `compactionSlots` applied slots.
    func compactIfDue(_ id: NodeID) {
        guard let replica = nodes[Int(id)].replica, !replica.configuration.isLogOnly else { return }
        let through = nodes[Int(id)].appliedThrough
        if through >= (replica.durable.snapshot?.slot ?? 0) + Simulation.compactionSlots {
            nodes[Int(id)].replica!.compact(through: through, snapshot: nodes[Int(id)].store.encoded)
        }
    }

    func send(_ messages: [Envelope], faulty: Bool) {
        for var envelope in messages {
            if bug == .alwaysSayLeaderAlive, case .leaderStatus = envelope.message {
                envelope.message = .leaderStatus(alive: true)
            }
            report.messages += 1
            if case .snapshot = envelope.message { report.snapshotsSent += 1 }
            if blocked.contains([envelope.from, envelope.to]) { continue }
            if faulty && random.chance(faults.drop) { continue }
            let copies = faulty && random.chance(faults.duplicate) ? 2 : 1
            for _ in 0..<copies {
                let delay = 1 + random.below(max(1, faulty ? faults.maxDelay : 1))
                network.append(InFlight(deliverAt: now + delay, order: random.next(), envelope: envelope))
            }
        }
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
        case .snapshot: 9
        case .recoveryQuery: 10
        case .recoveryStatus: 11
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

/// A value a simulated operation hands back from the simulator's scheduler.
final class Box<T>: @unchecked Sendable {
    // @unchecked: used on the simulator's thread only.
    var value: T
    init(_ value: T) { self.value = value }
}
