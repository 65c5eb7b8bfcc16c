/// One replica of a Multi-Paxos group, as a state machine without I/O, clock or randomness
/// of its own: the caller feeds it ticks (`tick`), messages (`step`) and proposals
/// (`propose`), then takes what it must do (`ready`: persist, then send, then apply) and
/// confirms it (`advance`). The shape is etcd-io/raft's.
///
/// The protocol: a replica that hears no leader for an election timeout runs phase 1 with
/// a higher ballot over every slot from its first unknown one; with promises from a
/// majority it re-proposes, in its own ballot, each slot's highest-ballot accepted value
/// (a no-op where no one accepted anything) and leads. Phase 2 is pipelined and batched; a
/// slot is chosen when a majority has accepted it in the leader's ballot; the leader
/// carries its commit slot to followers, who apply chosen slots in order.
///
/// Leases (for strongly consistent reads at the leader without a round trip): every append
/// carries the leader's clock; a quorum's answers date the lease from the send time of what
/// they answered, and it lasts `leaseTicks - clockDriftTicks` of the leader's clock. Any
/// later leader was elected by a quorum that includes one of those answerers, after it
/// answered; so a new leader that waits `leaseTicks` of its own clock from its election
/// before serving reads starts after the old lease ended, as long as clocks drift within
/// the bound (see `clockDriftTicks`). A replica (re)started waits a full lease before it
/// may lead at all. Before running for leader a follower asks its peers whether they hear a
/// leader (one that lost only its own link does not depose a live one), and a leader that
/// has not heard from a quorum for an election timeout stands down.
///
/// Membership changes go through the log, one at a time (see `Membership.isOneChange`): a
/// change chosen at slot s governs the slots after s, and the leader proposes nothing past s
/// until s is chosen, so every slot's quorum is known from the chosen prefix. A change that
/// is not one change from the membership before it in the log is void (a new leader must
/// re-propose what an old one left accepted, even a change made from a view since replaced).
/// A candidate gathers a quorum of every membership that governs a slot it recovers, as the
/// values it would propose there say (the highest-ballot ones the promises report so far).
/// Log-only replicas vote and keep the log until every replica with a state machine has it,
/// but never lead or apply. The caller compacts the
/// log behind a snapshot of its state machine (`compact`); a replica that needs compacted
/// slots gets the snapshot instead.
public struct Replica: Sendable {
    public struct Configuration: Sendable {
        public var id: NodeID
        /// The group's founding membership, in force until a change is chosen. A replica that
        /// joins a running group is given the founding membership too: it learns the rest
        /// from the log (or a snapshot), and votes only once the log makes it a voter.
        public var founding: Membership
        /// This replica holds no state machine (it must be log-only in the memberships).
        public var isLogOnly = false
        /// Ticks without a leader's message before a follower runs for leader; each wait is
        /// drawn from [electionTicks, 2 x electionTicks) so that candidates rarely collide.
        public var electionTicks = 10
        /// A leader's heartbeat (and resend) interval, in ticks.
        public var heartbeatTicks = 2
        public var maxEntriesPerMessage = 64
        /// An append carries entries of at most this many bytes of commands (at least one
        /// entry), and a leader has at most `maxInflightAppends` of them unanswered per
        /// follower: a follower that lags is fed as fast as it answers, never flooded.
        public var maxBytesPerMessage = 1 << 20
        public var maxInflightAppends = 16
        /// How long a leader's lease lasts (from the send time of what a quorum answered)
        /// and how long a new leader waits before serving strong reads, in ticks.
        public var leaseTicks = 10
        /// What the lease gives up for clock drift. With clocks whose rates differ from
        /// real time by at most a fraction r, the lease is safe when
        /// (leaseTicks - clockDriftTicks) / (1 - r) <= (leaseTicks - 1) / (1 + r)
        /// (the 1 is a tick's rounding): 10 and 3 allow r up to 12.5%.
        public var clockDriftTicks = 3
        /// A log-only replica drops its log up to the slot every full replica knows chosen,
        /// once that is this many slots past where its log starts.
        public var logOnlyCompactionSlots: Slot = 32
        /// The replica starts without its disk, or after a crash during such a start: it
        /// recovers before it votes (see `Recovery`).
        public var recovering = false
        /// Off only in tests that show the checks catch a recovering replica that trusts a
        /// quorum's answers.
        public var recoveryAsksEveryVoter = true
        /// Off only in tests that show the checks catch a leader serving reads at once.
        public var newLeaderWaitsOutOldLease = true
        /// Seeds the election-timeout draws (the caller owns randomness).
        public var seed: UInt64

        public init(id: NodeID, members: [NodeID], logOnly: Set<NodeID> = [], seed: UInt64) {
            self.id = id
            founding = Membership(voters: members, logOnly: logOnly)
            isLogOnly = logOnly.contains(id)
            self.seed = seed
        }
    }

    public enum Role: Sendable, Equatable { case follower, candidate, leader }

    public let configuration: Configuration
    public internal(set) var role: Role = .follower
    /// The leader this replica last heard from (or itself), for redirecting clients.
    public internal(set) var leader: NodeID?
    public internal(set) var durable: DurableState
    /// Every slot up to here is chosen (held in the log, or in the snapshot).
    public internal(set) var chosen: Slot = 0
    /// Every slot up to here has been handed to the caller to apply (or restored).
    public internal(set) var applied: Slot = 0
    /// This replica's clock: ticks since it started. Only ever compared with itself.
    public internal(set) var now: UInt64 = 0

    /// The highest ballot this replica has promised (its own, when it leads).
    public var promised: Ballot { durable.promised }

    var id: NodeID { configuration.id }
    /// The membership in force after `baseSlot` (the snapshot's, or the founding one).
    var base: Membership
    var baseSlot: Slot = 0
    /// Membership changes in the log after `baseSlot`, by slot (accepted, maybe not chosen).
    var changes: [Slot: Membership] = [:]
    /// Slots beyond `chosen` already known to be chosen (learned from a leader).
    var learned: Set<Slot> = []
    var highestRound: UInt64
    var random: SeededRandom
    var electionElapsed = 0
    var electionTimeout = 0
    var heartbeatElapsed = 0
    /// A restarted replica may have answered a leader's heartbeat just before it went
    /// down; it does not lead before a full lease from its start.
    let mayLeadAt: UInt64
    /// Ticks since the leader was last heard from.
    var ticksSinceLeader: UInt64 = 0
    /// While asking peers whether a leader is alive: who said "no leader" (self included).
    var noLeaderVotes: Set<NodeID>?
    /// Set while a replica that started without its disk catches up (see `Recovery`).
    var recovery: Recovery?

    // Candidate state.
    var promises: [NodeID: [Entry]] = [:]
    var prepareFrom: Slot = 1
    /// For each slot being recovered, the highest-ballot entry reported so far (this
    /// replica's own included): what this candidate would propose there.
    var recovered: [Slot: Entry] = [:]
    var prepared: Set<NodeID> = []
    // Leader state.
    var lastSlot: Slot = 0
    /// Per member: every slot up to here is accepted in this ballot or known chosen there
    /// (acceptances are durable, so this only grows within a ballot; commit counts it).
    var matched: [NodeID: Slot] = [:]
    /// Per follower: its chosen prefix, as its latest answer said. A restarted follower
    /// forgets what it knew chosen; resends start here so that it learns it again.
    var followerChosen: [NodeID: Slot] = [:]
    /// A follower's chosen prefix, as its latest answer to this leader said.
    public func chosen(by follower: NodeID) -> Slot? { followerChosen[follower] }
    var nextSend: [NodeID: Slot] = [:]
    /// Per follower: the last slot of each append sent past what it has answered.
    var inflight: [NodeID: [Slot]] = [:]
    /// Per follower: its `matched` at the last heartbeat (a heartbeat resends only to a
    /// follower that made no progress since the one before).
    var matchedAtHeartbeat: [NodeID: Slot] = [:]
    /// Per follower: the latest `sentAt` it echoed in this ballot (the lease's evidence).
    var answeredSentAt: [NodeID: UInt64] = [:]
    var electedAt: UInt64 = 0
    /// The last slot at the election: reads wait until it is applied, so they see every
    /// write chosen in earlier ballots.
    var readBarrier: Slot = 0
    /// A leadership transfer in progress: its target, when it gives up, whether TimeoutNow went.
    var transfer: (target: NodeID, deadline: UInt64, sent: Bool)?

    // What `ready` hands out.
    var promisedChanged = false
    var unpersisted: [Slot: Entry] = [:]
    var outbox: [Envelope] = []
    var unpersistedSnapshot: Snapshot?
    var restoreSnapshot = false
    var chosenChanged = false
    var recoveredUnpersisted = false

    /// A replica starting (or restarting) with what it had on disk. The caller restores its
    /// state machine from `durable.snapshot` (if any) before applying what `ready` hands out.
    public init(configuration: Configuration, durable: DurableState = DurableState()) {
        self.configuration = configuration
        self.durable = durable
        base = durable.snapshot?.membership ?? configuration.founding
        baseSlot = durable.snapshot?.slot ?? 0
        chosen = baseSlot
        applied = baseSlot
        for (slot, entry) in durable.log {
            precondition(slot > baseSlot, "the log starts after the snapshot")
            if case .membership(let membership) = entry.command { changes[slot] = membership }
        }
        while chosen < durable.chosen && durable.log[chosen + 1] != nil { chosen += 1 }
        highestRound = durable.promised.round
        random = SeededRandom(seed: configuration.seed ^ (UInt64(configuration.id) &* 0x9E37_79B9_7F4A_7C15))
        mayLeadAt = UInt64(configuration.leaseTicks)
        resetElectionTimer()
        if configuration.recovering {
            recovery = .asking([:])
            concludeAskingIfAnswered()  // a group of one has no one to ask
        }
    }

    // MARK: Inputs

    /// One unit of time.
    public mutating func tick() {
        now += 1
        switch role {
        case .leader:
            // Check quorum: a leader cut off from a majority stops pretending.
            let contact = max(electedAt, leaseStart ?? 0)
            if now - contact >= UInt64(configuration.electionTicks) {
                becomeFollower(leader: nil)
                return
            }
            if let transfer, now >= transfer.deadline { self.transfer = nil }
            heartbeatElapsed += 1
            if heartbeatElapsed >= configuration.heartbeatTicks {
                heartbeatElapsed = 0
                for peer in peers { heartbeat(peer) }
            }
        case .follower, .candidate:
            if isAskingToRecover && (now - 1) % UInt64(configuration.heartbeatTicks) == 0 { askToRecover() }
            ticksSinceLeader += 1
            electionElapsed += 1
            if electionElapsed >= electionTimeout { askWhetherLeaderIsAlive() }
        }
    }

    /// Offers a command for the next slot. Returns its slot if this replica leads (the
    /// command is chosen only if that slot commits with it), nil otherwise, and nil while a
    /// membership change or a leadership transfer is under way.
    public mutating func propose(_ command: Command) -> Slot? {
        if case .membership = command { return nil }
        return appendProposal(command)
    }

    /// Proposes a new membership, one change from the latest (see `Membership.isOneChange`).
    /// Returns its slot, or nil if this replica does not lead, another change is not yet
    /// chosen, or the change is not a single one.
    public mutating func proposeMembership(_ membership: Membership) -> Slot? {
        guard membership.isOneChange(from: latestMembership) else { return nil }
        return appendProposal(.membership(membership))
    }

    mutating func appendProposal(_ command: Command) -> Slot? {
        guard role == .leader, transfer == nil, !hasPendingChange else { return nil }
        lastSlot += 1
        accept(Entry(slot: lastSlot, ballot: durable.promised, command: command))
        return lastSlot
    }

    /// Hands leadership to `target` (before a planned restart): no new proposals or strong
    /// reads here; once the target has every slot, it is told to run for leader at once.
    /// Gives up after an election timeout. Returns false if this replica does not lead or
    /// the target cannot lead.
    public mutating func transferLeadership(to target: NodeID) -> Bool {
        guard role == .leader, target != id, latestMembership.canLead(target) else { return false }
        transfer = (target, now + UInt64(configuration.electionTicks), false)
        sendTimeoutNowIfCaughtUp()
        return true
    }

    /// Replaces the log through `slot` with a snapshot of the caller's state machine, taken
    /// when it had applied exactly `slot`. `ready` then asks to persist the snapshot and
    /// drop those entries; a replica that needs them later is sent the snapshot.
    public mutating func compact(through slot: Slot, snapshot data: [UInt8]) {
        precondition(!configuration.isLogOnly, "a log-only replica has no state machine to snapshot")
        precondition(slot <= applied, "a snapshot holds applied slots only")
        guard slot > baseSlot else { return }
        replaceLog(with: Snapshot(slot: slot, membership: membership(at: slot + 1), data: data))
    }

    /// Handles a message from another replica.
    public mutating func step(_ envelope: Envelope) {
        guard envelope.to == id, envelope.from != id else { return }
        defer { finishRecoveryIfCaughtUp() }
        if isAskingToRecover {
            // It may have forgotten a promise: it follows no one until it knows the ballots.
            switch envelope.message {
            case .recoveryQuery, .recoveryStatus, .leaderQuery: break
            default: return
            }
        }
        switch envelope.message {
        case .prepare(let ballot, let fromSlot):
            // A recovering replica makes no promise: its report of what it accepted is not whole.
            if isRecovering { return noteRound(ballot.round) }
            handlePrepare(ballot, fromSlot: fromSlot, from: envelope.from)
        case .promise(let ballot, let accepted, let snapshot):
            handlePromise(ballot, accepted: accepted, snapshot: snapshot, from: envelope.from)
        case .reject(let promised):
            noteRound(promised.round)
            if promised > durable.promised && role != .follower { becomeFollower(leader: nil) }
        case .append(let ballot, let entries, let commit, let sentAt, let retain):
            guard followLeader(ballot, from: envelope.from) else { return }
            handleAppend(ballot, entries: entries, commit: commit, sentAt: sentAt, retain: retain, from: envelope.from)
        case .snapshot(let ballot, let snapshot, let sentAt):
            guard followLeader(ballot, from: envelope.from) else { return }
            if snapshot.slot > chosen && (snapshot.data != nil || configuration.isLogOnly) { install(snapshot) }
            answerLeader(ballot, sentAt: sentAt, to: envelope.from)
        case .appended(let ballot, let matchedSlot, let chosenSlot, let sentAt):
            guard role == .leader, ballot == durable.promised else { return }
            matched[envelope.from] = max(matched[envelope.from] ?? 0, matchedSlot, chosenSlot)
            inflight[envelope.from]?.removeAll { $0 <= matched[envelope.from]! }
            followerChosen[envelope.from] = chosenSlot
            answeredSentAt[envelope.from] = max(answeredSentAt[envelope.from] ?? 0, sentAt)
            advanceCommit()
            if transfer?.target == envelope.from { sendTimeoutNowIfCaughtUp() }
        case .leaderQuery:
            // As etcd-raft's pre-vote with check-quorum: alive only if a known leader spoke lately.
            let alive =
                role == .leader
                || (role == .follower && leader != nil && ticksSinceLeader < UInt64(configuration.electionTicks))
            send(.leaderStatus(alive: alive), to: envelope.from)
        case .leaderStatus(let alive):
            guard !alive, role != .leader, noLeaderVotes != nil else { return }
            noLeaderVotes!.insert(envelope.from)
            if isQuorumOfEach(noLeaderVotes!, currentMemberships) { startElection() }
        case .timeoutNow(let ballot):
            // Only from the leader this replica follows, in its ballot: a stale one is ignored.
            guard role == .follower, leader == envelope.from, ballot == durable.promised, mayRunForLeader else {
                return
            }
            startElection()
        case .recoveryQuery:
            answerRecoveryQuery(from: envelope.from)
        case .recoveryStatus(let promised, let last):
            handleRecoveryStatus(promised: promised, last: last, from: envelope.from)
        }
    }

    // MARK: Output

    public var hasReady: Bool {
        promisedChanged || chosenChanged || unpersistedSnapshot != nil || !unpersisted.isEmpty || !outbox.isEmpty
            || chosen > applied || recoveredUnpersisted
            || (role == .leader && hasEntriesToSend)
    }

    /// A leader has entries a peer has not been sent (without building `peers`: this is
    /// asked on every turn of a caller's loop).
    var hasEntriesToSend: Bool {
        let unsent = { (peer: NodeID) in peer != self.id && self.maySendMore(to: peer) }
        if changes.isEmpty { return base.voters.contains(where: unsent) }
        return currentMemberships.contains { $0.voters.contains(where: unsent) }
    }

    /// What to persist, send and apply now. Call `advance` once it is done. Proposals
    /// made since the last call go out together here: one message per follower (batching).
    public mutating func ready() -> Ready {
        if role == .leader {
            for peer in peers where maySendMore(to: peer) { sendAppend(to: peer, resend: false) }
        }
        var ready = Ready()
        if promisedChanged { ready.promised = durable.promised }
        ready.snapshot = unpersistedSnapshot
        ready.restoreSnapshot = restoreSnapshot
        ready.entries = unpersisted.values.sorted { $0.slot < $1.slot }
        if chosenChanged { ready.chosen = chosen }
        ready.recovered = recoveredUnpersisted
        if role == .leader && !promisedChanged && unpersistedSnapshot == nil {
            // A leader's appends may leave while its own log syncs (etcd-raft's order): a
            // follower's acceptance is its own vote, durable before it answers, and the
            // leader counts its own only once persisted (`countOwnAcceptances`), so nothing
            // is chosen on the strength of what it has not written. Other messages report
            // this replica's votes, and wait for them to be on disk.
            for envelope in outbox {
                if case .append = envelope.message {
                    ready.earlyMessages.append(envelope)
                } else {
                    ready.messages.append(envelope)
                }
            }
        } else {
            ready.messages = outbox
        }
        if chosen > applied && !configuration.isLogOnly {
            ready.committed = (applied + 1...chosen).map { durable.log[$0]! }
        }
        return ready
    }

    /// The caller persisted, sent and applied what `ready` returned.
    public mutating func advance(_ ready: Ready) {
        // Inputs may come between `ready` and `advance` (a driver takes them while its log
        // syncs): a promise made meanwhile is not yet persisted, and must go in the next.
        if ready.promised == durable.promised { promisedChanged = false }
        if ready.recovered { recoveredUnpersisted = false }
        if ready.chosen == chosen { chosenChanged = false }
        // By slot: a snapshot's data may be large, and a newer one has a higher slot.
        if let snapshot = ready.snapshot, snapshot.slot == unpersistedSnapshot?.slot {
            unpersistedSnapshot = nil
            restoreSnapshot = false
        }
        for entry in ready.entries where unpersisted[entry.slot] == entry { unpersisted[entry.slot] = nil }
        outbox.removeFirst(min(ready.earlyMessages.count + ready.messages.count, outbox.count))
        countOwnAcceptances()
        if let last = ready.committed.last { applied = max(applied, last.slot) }
        if configuration.isLogOnly { applied = chosen }
    }

}

/// SplitMix64 (Steele, Lea and Flood) from a caller's seed: the core's only randomness, so a
/// seed replays a run. (GranaryStorage has its own copy; this module depends on nothing.)
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
