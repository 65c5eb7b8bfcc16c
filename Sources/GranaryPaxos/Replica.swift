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
        resetElectionTimer()
    }

    // MARK: Inputs

    /// One unit of time.
    public mutating func tick() {
        switch role {
        case .leader:
            heartbeatElapsed += 1
            if heartbeatElapsed >= configuration.heartbeatTicks {
                heartbeatElapsed = 0
                for peer in peers { sendAppend(to: peer, resend: true) }
            }
        case .follower, .candidate:
            electionElapsed += 1
            if electionElapsed >= electionTimeout { startElection() }
        }
    }

    /// Offers a command for the next slot. Returns its slot if this replica leads (the
    /// command is chosen only if that slot commits with it), nil otherwise.
    public mutating func propose(_ command: Command) -> Slot? {
        guard role == .leader else { return nil }
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
        case .append(let ballot, let entries, let commit):
            handleAppend(ballot, entries: entries, commit: commit, from: envelope.from)
        case .appended(let ballot, let matchedSlot, let chosenSlot):
            guard role == .leader, ballot == durable.promised else { return }
            matched[envelope.from] = max(matched[envelope.from] ?? 0, matchedSlot, chosenSlot)
            followerChosen[envelope.from] = chosenSlot
            advanceCommit()
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
        resetElectionTimer()
    }

    private mutating func startElection() {
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
        lastSlot = max(chosen, best.keys.max() ?? 0)
        if lastSlot >= prepareFrom {
            for slot in prepareFrom...lastSlot {
                accept(Entry(slot: slot, ballot: ballot, command: best[slot]?.command ?? .noop))
            }
        }
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
        send(.append(ballot: durable.promised, entries: entries, commit: chosen), to: peer)
    }

    private mutating func handleAppend(_ ballot: Ballot, entries: [Entry], commit: Slot, from: NodeID) {
        noteRound(ballot.round)
        guard ballot >= durable.promised else {
            send(.reject(promised: durable.promised), to: from)
            return
        }
        precondition(!(role == .leader && ballot == durable.promised), "two leaders in ballot \(ballot)")
        if role != .follower || leader != from { becomeFollower(leader: from) }
        promise(ballot)
        resetElectionTimer()
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
        send(.appended(ballot: ballot, matched: matchedSlot, chosen: chosen), to: from)
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
