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
public struct Replica: Sendable {
    public struct Configuration: Sendable {
        public var id: NodeID
        public var members: [NodeID]
        /// Ticks without a leader's message before a follower runs for leader; each wait is
        /// drawn from [electionTicks, 2 x electionTicks) so that candidates rarely collide.
        public var electionTicks = 10
        /// A leader's heartbeat (and resend) interval, in ticks.
        public var heartbeatTicks = 2
        public var maxEntriesPerMessage = 64
        /// How long a leader's lease lasts (from the send time of what a quorum answered)
        /// and how long a new leader waits before serving strong reads, in ticks.
        public var leaseTicks = 10
        /// What the lease gives up for clock drift. With clocks whose rates differ from
        /// real time by at most a fraction r, the lease is safe when
        /// (leaseTicks - clockDriftTicks) / (1 - r) <= (leaseTicks - 1) / (1 + r)
        /// (the 1 is a tick's rounding): 10 and 3 allow r up to 12.5%.
        public var clockDriftTicks = 3
        /// Off only in tests that show the checks catch a leader serving reads at once.
        public var newLeaderWaitsOutOldLease = true
        /// Seeds the election-timeout draws (the caller owns randomness).
        public var seed: UInt64

        public init(id: NodeID, members: [NodeID], seed: UInt64) {
            precondition(members.contains(id), "a replica is a member of its own group")
            precondition(Set(members).count == members.count, "members are distinct")
            self.id = id
            self.members = members
            self.seed = seed
        }

        var quorum: Int { members.count / 2 + 1 }
    }

    public enum Role: Sendable, Equatable { case follower, candidate, leader }

    public let configuration: Configuration
    public private(set) var role: Role = .follower
    /// The leader this replica last heard from (or itself), for redirecting clients.
    public private(set) var leader: NodeID?
    public private(set) var durable: DurableState
    /// Every slot up to here is chosen and held in the log.
    public private(set) var chosen: Slot = 0
    /// Every slot up to here has been handed to the caller to apply.
    public private(set) var applied: Slot = 0

    /// The highest ballot this replica has promised (its own, when it leads).
    public var promised: Ballot { durable.promised }

    private var id: NodeID { configuration.id }
    private var peers: [NodeID] { configuration.members.filter { $0 != id } }
    /// Slots beyond `chosen` already known to be chosen (learned from a leader).
    private var learned: Set<Slot> = []
    private var highestRound: UInt64
    private var random: SeededRandom
    private var electionElapsed = 0
    private var electionTimeout = 0
    private var heartbeatElapsed = 0
    /// This replica's clock: ticks since it started. Only ever compared with itself.
    public private(set) var now: UInt64 = 0
    /// A restarted replica may have answered a leader's heartbeat just before it went
    /// down; it does not lead before a full lease from its start.
    private let mayLeadAt: UInt64
    /// Ticks since the leader was last heard from.
    private var ticksSinceLeader: UInt64 = 0
    /// While asking peers whether a leader is alive: who said "no leader" (self included).
    private var noLeaderVotes: Set<NodeID>?

    // Candidate state.
    private var promises: [NodeID: [Entry]] = [:]
    private var prepareFrom: Slot = 1
    // Leader state.
    private var lastSlot: Slot = 0
    /// Per member: every slot up to here is accepted in this ballot or known chosen there
    /// (acceptances are durable, so this only grows within a ballot; commit counts it).
    private var matched: [NodeID: Slot] = [:]
    /// Per follower: its chosen prefix, as its latest answer said. A restarted follower
    /// forgets what it knew chosen; resends start here so that it learns it again.
    private var followerChosen: [NodeID: Slot] = [:]
    private var nextSend: [NodeID: Slot] = [:]
    /// Per follower: the latest `sentAt` it echoed in this ballot (the lease's evidence).
    private var answeredSentAt: [NodeID: UInt64] = [:]
    private var electedAt: UInt64 = 0
    /// The last slot at the election: reads wait until it is applied, so they see every
    /// write chosen in earlier ballots.
    private var readBarrier: Slot = 0
    /// A leadership transfer in progress: its target, when it gives up, whether TimeoutNow went.
    private var transfer: (target: NodeID, deadline: UInt64, sent: Bool)?

    // What `ready` hands out.
    private var promisedChanged = false
    private var unpersisted: [Slot: Entry] = [:]
    private var outbox: [Envelope] = []

    /// A replica starting (or restarting) with what it had on disk.
    public init(configuration: Configuration, durable: DurableState = DurableState()) {
        self.configuration = configuration
        self.durable = durable
        highestRound = durable.promised.round
        random = SeededRandom(seed: configuration.seed ^ (UInt64(configuration.id) &* 0x9E37_79B9_7F4A_7C15))
        mayLeadAt = UInt64(configuration.leaseTicks)
        resetElectionTimer()
    }

    // MARK: Leases

    /// The start of the current lease: the latest send time that a quorum (this leader,
    /// at `now`, and the followers' echoes) has answered.
    private var leaseStart: UInt64? {
        guard role == .leader else { return nil }
        var times = peers.compactMap { answeredSentAt[$0] }
        times.append(now)
        guard times.count >= configuration.quorum else { return nil }
        return times.sorted(by: >)[configuration.quorum - 1]
    }

    /// Whether this replica may answer a strongly consistent read from its applied state now:
    /// it leads, holds a lease, has waited out any earlier leader's lease, applied every slot
    /// chosen before its election, and is not handing leadership over.
    public var canServeStrongRead: Bool {
        guard role == .leader, transfer == nil, applied >= readBarrier, let start = leaseStart else { return false }
        if configuration.newLeaderWaitsOutOldLease && now < electedAt + UInt64(configuration.leaseTicks) { return false }
        return now < start + UInt64(configuration.leaseTicks - configuration.clockDriftTicks)
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
                for peer in peers { sendAppend(to: peer, resend: true) }
            }
        case .follower, .candidate:
            ticksSinceLeader += 1
            electionElapsed += 1
            if electionElapsed >= electionTimeout { askWhetherLeaderIsAlive() }
        }
    }

    /// Hands leadership to `target` (before a planned restart): no new proposals or strong
    /// reads here; once the target has every slot, it is told to run for leader at once.
    /// Gives up after an election timeout. Returns false if this replica does not lead.
    public mutating func transferLeadership(to target: NodeID) -> Bool {
        guard role == .leader, peers.contains(target) else { return false }
        transfer = (target, now + UInt64(configuration.electionTicks), false)
        sendTimeoutNowIfCaughtUp()
        return true
    }

    private mutating func sendTimeoutNowIfCaughtUp() {
        guard let transfer, !transfer.sent else { return }
        if (matched[transfer.target] ?? 0) >= lastSlot {
            self.transfer!.sent = true
            send(.timeoutNow(ballot: durable.promised), to: transfer.target)
        } else {
            sendAppend(to: transfer.target, resend: false)
        }
    }

    /// Offers a command for the next slot. Returns its slot if this replica leads (the
    /// command is chosen only if that slot commits with it), nil otherwise.
    public mutating func propose(_ command: Command) -> Slot? {
        guard role == .leader, transfer == nil else { return nil }
        lastSlot += 1
        accept(Entry(slot: lastSlot, ballot: durable.promised, command: command))
        matched[id] = lastSlot
        if configuration.members.count == 1 { advanceCommit() }
        return lastSlot
    }

    /// Handles a message from another replica.
    public mutating func step(_ envelope: Envelope) {
        guard envelope.to == id, configuration.members.contains(envelope.from), envelope.from != id else { return }
        switch envelope.message {
        case .prepare(let ballot, let fromSlot):
            handlePrepare(ballot, fromSlot: fromSlot, from: envelope.from)
        case .promise(let ballot, let accepted):
            handlePromise(ballot, accepted: accepted, from: envelope.from)
        case .reject(let promised):
            noteRound(promised.round)
            if promised > durable.promised && role != .follower { becomeFollower(leader: nil) }
        case .append(let ballot, let entries, let commit, let sentAt):
            handleAppend(ballot, entries: entries, commit: commit, sentAt: sentAt, from: envelope.from)
        case .appended(let ballot, let matchedSlot, let chosenSlot, let sentAt):
            guard role == .leader, ballot == durable.promised else { return }
            matched[envelope.from] = max(matched[envelope.from] ?? 0, matchedSlot, chosenSlot)
            followerChosen[envelope.from] = chosenSlot
            answeredSentAt[envelope.from] = max(answeredSentAt[envelope.from] ?? 0, sentAt)
            advanceCommit()
            if transfer?.target == envelope.from { sendTimeoutNowIfCaughtUp() }
        case .leaderQuery:
            // As etcd-raft's pre-vote with check-quorum: alive only if a known leader spoke lately.
            let alive = role == .leader || (role == .follower && leader != nil && ticksSinceLeader < UInt64(configuration.electionTicks))
            send(.leaderStatus(alive: alive), to: envelope.from)
        case .leaderStatus(let alive):
            guard !alive, role != .leader, noLeaderVotes != nil else { return }
            noLeaderVotes!.insert(envelope.from)
            if noLeaderVotes!.count >= configuration.quorum { startElection() }
        case .timeoutNow(let ballot):
            // Only from the leader this replica follows, in its ballot: a stale one is ignored.
            guard role == .follower, leader == envelope.from, ballot == durable.promised else { return }
            startElection()
        }
    }

    // MARK: Output

    public var hasReady: Bool {
        promisedChanged || !unpersisted.isEmpty || !outbox.isEmpty || chosen > applied
            || (role == .leader && peers.contains { (nextSend[$0] ?? 1) <= lastSlot })
    }

    /// What to persist, send and apply now. Call `advance` once it is done. Proposals
    /// made since the last call go out together here: one message per follower (batching).
    public mutating func ready() -> Ready {
        if role == .leader {
            for peer in peers where (nextSend[peer] ?? 1) <= lastSlot { sendAppend(to: peer, resend: false) }
        }
        var ready = Ready()
        if promisedChanged { ready.promised = durable.promised }
        ready.entries = unpersisted.values.sorted { $0.slot < $1.slot }
        ready.messages = outbox
        if chosen > applied {
            ready.committed = (applied + 1...chosen).map { durable.log[$0]! }
        }
        return ready
    }

    /// The caller persisted, sent and applied what `ready` returned.
    public mutating func advance(_ ready: Ready) {
        promisedChanged = false
        for entry in ready.entries where unpersisted[entry.slot] == entry { unpersisted[entry.slot] = nil }
        outbox.removeFirst(min(ready.messages.count, outbox.count))
        if let last = ready.committed.last { applied = max(applied, last.slot) }
    }

    // MARK: Roles

    private mutating func resetElectionTimer() {
        electionElapsed = 0
        electionTimeout = configuration.electionTicks + Int(random.next() % UInt64(configuration.electionTicks))
    }

    private mutating func noteRound(_ round: UInt64) { highestRound = max(highestRound, round) }

    private mutating func promise(_ ballot: Ballot) {
        precondition(ballot >= durable.promised, "a promise never goes back")
        if ballot != durable.promised {
            durable.promised = ballot
            promisedChanged = true
        }
        noteRound(ballot.round)
    }

    private mutating func becomeFollower(leader: NodeID?) {
        role = .follower
        self.leader = leader
        promises = [:]
        matched = [:]
        nextSend = [:]
        followerChosen = [:]
        answeredSentAt = [:]
        transfer = nil
        noLeaderVotes = nil
        resetElectionTimer()
    }

    /// The election timer fired: ask the peers whether they hear a leader; a quorum of
    /// "no" (this replica's own included) starts an election.
    private mutating func askWhetherLeaderIsAlive() {
        resetElectionTimer()
        guard now >= mayLeadAt else { return }
        noLeaderVotes = [id]
        for peer in peers { send(.leaderQuery, to: peer) }
        if noLeaderVotes!.count >= configuration.quorum { startElection() }
    }

    private mutating func startElection() {
        noLeaderVotes = nil
        let ballot = Ballot(round: highestRound + 1, node: id)
        promise(ballot)
        role = .candidate
        leader = nil
        prepareFrom = chosen + 1
        promises = [id: acceptedEntries(from: prepareFrom)]
        resetElectionTimer()
        for peer in peers { send(.prepare(ballot: ballot, fromSlot: prepareFrom), to: peer) }
        if promises.count >= configuration.quorum { becomeLeader() }
    }

    private func acceptedEntries(from slot: Slot) -> [Entry] {
        durable.log.values.filter { $0.slot >= slot }.sorted { $0.slot < $1.slot }
    }

    private mutating func handlePrepare(_ ballot: Ballot, fromSlot: Slot, from: NodeID) {
        noteRound(ballot.round)
        guard ballot >= durable.promised else {
            send(.reject(promised: durable.promised), to: from)
            return
        }
        if ballot > durable.promised && role != .follower { becomeFollower(leader: nil) }
        promise(ballot)
        resetElectionTimer()
        // Entries known chosen are reported too: the candidate's choice rule picks them.
        send(.promise(ballot: ballot, accepted: acceptedEntries(from: fromSlot)), to: from)
    }

    private mutating func handlePromise(_ ballot: Ballot, accepted: [Entry], from: NodeID) {
        guard role == .candidate, ballot == durable.promised else { return }
        promises[from] = accepted
        if promises.count >= configuration.quorum { becomeLeader() }
    }

    /// Phase 1 is done: each slot from `prepareFrom` gets the highest-ballot value any
    /// promiser accepted, or a no-op; all are proposed again in this ballot.
    private mutating func becomeLeader() {
        let ballot = durable.promised
        var best: [Slot: Entry] = [:]
        for (_, accepted) in promises {
            for entry in accepted where entry.slot >= prepareFrom {
                if let current = best[entry.slot], current.ballot >= entry.ballot { continue }
                best[entry.slot] = entry
            }
        }
        role = .leader
        leader = id
        promises = [:]
        heartbeatElapsed = 0
        electedAt = now
        answeredSentAt = [:]
        lastSlot = max(chosen, best.keys.max() ?? 0)
        if lastSlot >= prepareFrom {
            for slot in prepareFrom...lastSlot {
                accept(Entry(slot: slot, ballot: ballot, command: best[slot]?.command ?? .noop))
            }
        }
        readBarrier = lastSlot
        matched = [id: lastSlot]
        for peer in peers {
            matched[peer] = 0
            nextSend[peer] = prepareFrom
        }
        // Announce the new ballot at once (with the re-proposed slots, if any).
        for peer in peers { sendAppend(to: peer, resend: false, evenIfEmpty: true) }
        advanceCommit()
    }

    // MARK: Phase 2

    /// Stores an entry in this replica's log, to be persisted before anything is sent.
    private mutating func accept(_ entry: Entry) {
        durable.log[entry.slot] = entry
        unpersisted[entry.slot] = entry
    }

    /// Sends a follower the entries it lacks: from what it has not been sent yet, or, on a
    /// heartbeat, from the first slot it does not know chosen (resending what may be lost).
    private mutating func sendAppend(to peer: NodeID, resend: Bool, evenIfEmpty: Bool = false) {
        let first = resend ? (followerChosen[peer] ?? 0) + 1 : (nextSend[peer] ?? 1)
        var entries: [Entry] = []
        if first <= lastSlot {
            let last = min(lastSlot, first + Slot(configuration.maxEntriesPerMessage) - 1)
            entries = (first...last).map { durable.log[$0]! }
            nextSend[peer] = last + 1
        }
        if entries.isEmpty && !resend && !evenIfEmpty { return }
        send(.append(ballot: durable.promised, entries: entries, commit: chosen, sentAt: now), to: peer)
    }

    private mutating func handleAppend(_ ballot: Ballot, entries: [Entry], commit: Slot, sentAt: UInt64, from: NodeID) {
        noteRound(ballot.round)
        guard ballot >= durable.promised else {
            send(.reject(promised: durable.promised), to: from)
            return
        }
        precondition(!(role == .leader && ballot == durable.promised), "two leaders in ballot \(ballot)")
        if role != .follower || leader != from { becomeFollower(leader: from) }
        promise(ballot)
        resetElectionTimer()
        ticksSinceLeader = 0
        noLeaderVotes = nil
        for entry in entries where entry.slot > chosen && !learned.contains(entry.slot) {
            // Chosen slots keep the ballot they were chosen in; the rest are this ballot's.
            precondition(entry.slot <= commit || entry.ballot == ballot, "a leader proposes in its own ballot")
            if durable.log[entry.slot] != entry { accept(entry) }
            if entry.slot <= commit { learned.insert(entry.slot) }
        }
        // A slot is chosen if the leader said so for it, or if it is at or below the
        // leader's commit and holds the leader's own entry (one value per slot per ballot).
        while let next = durable.log[chosen + 1],
              learned.contains(chosen + 1) || (next.ballot == ballot && chosen + 1 <= commit) {
            chosen += 1
            learned.remove(chosen)
        }
        var matchedSlot = chosen
        while durable.log[matchedSlot + 1]?.ballot == ballot { matchedSlot += 1 }
        send(.appended(ballot: ballot, matched: matchedSlot, chosen: chosen, sentAt: sentAt), to: from)
    }

    /// The leader's commit: the highest slot that a majority has accepted in this ballot
    /// (or knows chosen), every slot below it included.
    private mutating func advanceCommit() {
        let confirmed = configuration.members.map { matched[$0] ?? 0 }.sorted(by: >)
        let majority = confirmed[configuration.quorum - 1]
        if majority > chosen {
            chosen = min(majority, lastSlot)
        }
    }

    private mutating func send(_ message: Message, to peer: NodeID) {
        outbox.append(Envelope(from: id, to: peer, message: message))
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
