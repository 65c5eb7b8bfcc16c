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
/// values it would propose there say (the highest-ballot ones the promises report so far). Log-only replicas vote and keep the log until every
/// replica with a state machine has it, but never lead or apply. The caller compacts the
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
    public private(set) var role: Role = .follower
    /// The leader this replica last heard from (or itself), for redirecting clients.
    public private(set) var leader: NodeID?
    public private(set) var durable: DurableState
    /// Every slot up to here is chosen (held in the log, or in the snapshot).
    public private(set) var chosen: Slot = 0
    /// Every slot up to here has been handed to the caller to apply (or restored).
    public private(set) var applied: Slot = 0
    /// This replica's clock: ticks since it started. Only ever compared with itself.
    public private(set) var now: UInt64 = 0

    /// The highest ballot this replica has promised (its own, when it leads).
    public var promised: Ballot { durable.promised }

    private var id: NodeID { configuration.id }
    /// The membership in force after `baseSlot` (the snapshot's, or the founding one).
    private var base: Membership
    private var baseSlot: Slot = 0
    /// Membership changes in the log after `baseSlot`, by slot (accepted, maybe not chosen).
    private var changes: [Slot: Membership] = [:]
    /// Slots beyond `chosen` already known to be chosen (learned from a leader).
    private var learned: Set<Slot> = []
    private var highestRound: UInt64
    private var random: SeededRandom
    private var electionElapsed = 0
    private var electionTimeout = 0
    private var heartbeatElapsed = 0
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
    /// For each slot being recovered, the highest-ballot entry reported so far (this
    /// replica's own included): what this candidate would propose there.
    private var recovered: [Slot: Entry] = [:]
    private var prepared: Set<NodeID> = []
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
    private var unpersistedSnapshot: Snapshot?
    private var restoreSnapshot = false
    private var chosenChanged = false

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
    }

    // MARK: Membership

    /// The memberships in force after each change, in slot order, from `start` on: a
    /// change that is not one change from the membership before it is void.
    private static func fold(_ start: Membership, _ changes: [(slot: Slot, membership: Membership)]) -> [Membership] {
        var memberships = [start]
        for change in changes.sorted(by: { $0.slot < $1.slot }) where change.membership.isOneChange(from: memberships.last!) {
            memberships.append(change.membership)
        }
        return memberships
    }

    private func changes(in range: ClosedRange<Slot>) -> [(slot: Slot, membership: Membership)] {
        changes.filter { range.contains($0.key) }.map { ($0.key, $0.value) }
    }

    /// The membership that governs `slot`: the base, changed by each change before it.
    public func membership(at slot: Slot) -> Membership {
        if changes.isEmpty || slot <= baseSlot + 1 { return base }  // the common case, on every commit
        return Self.fold(base, changes(in: baseSlot + 1...slot - 1)).last!
    }

    /// The membership after every change in the log (chosen or not).
    public var latestMembership: Membership { membership(at: .max) }

    /// A change in the log not yet known chosen: nothing is proposed past it until it is.
    private var hasPendingChange: Bool { changes.keys.contains { $0 > chosen } }

    /// The memberships that may govern the next slots: the chosen one, and every change in
    /// the log after it (at most one, at a leader; more at a replica with a stale log).
    private var currentMemberships: [Membership] {
        if changes.isEmpty { return [base] }
        return Self.fold(membership(at: chosen + 1), changes(in: chosen + 1...Slot.max))
    }

    private func isQuorumOfEach(_ ids: Set<NodeID>, _ memberships: [Membership]) -> Bool {
        memberships.allSatisfy { membership in membership.voters.filter(ids.contains).count >= membership.quorum }
    }

    /// Everyone a leader talks to: the voters of every membership from its chosen prefix on.
    private var peers: [NodeID] {
        var all = Set(currentMemberships.flatMap(\.voters))
        all.remove(id)
        return all.sorted()
    }

    // MARK: Leases

    /// The start of the current lease: the latest send time that a quorum (this leader,
    /// at `now`, and the followers' echoes) has answered, in every membership in force.
    private var leaseStart: UInt64? {
        guard role == .leader else { return nil }
        var start = UInt64.max
        for membership in currentMemberships {
            var times = membership.voters.compactMap { $0 == id ? now : answeredSentAt[$0] }
            guard times.count >= membership.quorum else { return nil }
            times.sort(by: >)
            start = min(start, times[membership.quorum - 1])
        }
        return start
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

    private mutating func appendProposal(_ command: Command) -> Slot? {
        guard role == .leader, transfer == nil, !hasPendingChange else { return nil }
        lastSlot += 1
        accept(Entry(slot: lastSlot, ballot: durable.promised, command: command))
        matched[id] = lastSlot
        advanceCommit()
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
        switch envelope.message {
        case .prepare(let ballot, let fromSlot):
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
            if isQuorumOfEach(noLeaderVotes!, currentMemberships) { startElection() }
        case .timeoutNow(let ballot):
            // Only from the leader this replica follows, in its ballot: a stale one is ignored.
            guard role == .follower, leader == envelope.from, ballot == durable.promised, mayRunForLeader else { return }
            startElection()
        }
    }

    // MARK: Output

    public var hasReady: Bool {
        promisedChanged || chosenChanged || unpersistedSnapshot != nil || !unpersisted.isEmpty || !outbox.isEmpty || chosen > applied
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
        ready.snapshot = unpersistedSnapshot
        ready.restoreSnapshot = restoreSnapshot
        ready.entries = unpersisted.values.sorted { $0.slot < $1.slot }
        if chosenChanged { ready.chosen = chosen }
        ready.messages = outbox
        if chosen > applied && !configuration.isLogOnly {
            ready.committed = (applied + 1...chosen).map { durable.log[$0]! }
        }
        return ready
    }

    /// The caller persisted, sent and applied what `ready` returned.
    public mutating func advance(_ ready: Ready) {
        promisedChanged = false
        if ready.chosen == chosen { chosenChanged = false }
        if let snapshot = ready.snapshot, snapshot == unpersistedSnapshot {
            unpersistedSnapshot = nil
            restoreSnapshot = false
        }
        for entry in ready.entries where unpersisted[entry.slot] == entry { unpersisted[entry.slot] = nil }
        outbox.removeFirst(min(ready.messages.count, outbox.count))
        if let last = ready.committed.last { applied = max(applied, last.slot) }
        if configuration.isLogOnly { applied = chosen }
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
        recovered = [:]
        matched = [:]
        nextSend = [:]
        followerChosen = [:]
        answeredSentAt = [:]
        transfer = nil
        noLeaderVotes = nil
        resetElectionTimer()
    }

    /// Log-only replicas never lead; nor does a replica the log has not made a voter (in the
    /// chosen membership or a pending one: a stale change may remove it, and still it must run
    /// if the replicas that could otherwise are gone).
    private var mayRunForLeader: Bool {
        !configuration.isLogOnly && currentMemberships.contains { $0.canLead(id) }
    }

    /// The election timer fired: ask the peers whether they hear a leader; a quorum of
    /// "no" (this replica's own included) starts an election.
    private mutating func askWhetherLeaderIsAlive() {
        resetElectionTimer()
        guard now >= mayLeadAt, mayRunForLeader else { return }
        noLeaderVotes = [id]
        let voters = Set(currentMemberships.flatMap(\.voters))
        for peer in voters.sorted() where peer != id { send(.leaderQuery, to: peer) }
        if isQuorumOfEach(noLeaderVotes!, currentMemberships) { startElection() }
    }

    private mutating func startElection() {
        noLeaderVotes = nil
        let ballot = Ballot(round: highestRound + 1, node: id)
        promise(ballot)
        role = .candidate
        leader = nil
        prepareFrom = chosen + 1
        promises = [id: acceptedEntries(from: prepareFrom)]
        recovered = [:]
        noteRecovered(promises[id]!)
        prepared = [id]
        resetElectionTimer()
        sendPrepares()
        becomeLeaderIfPromised()
    }

    /// The memberships that govern the slots being recovered: the one in force at the first
    /// of them, and every change at or after it that this replica or a promise holds.
    private var electionMemberships: [Membership] {
        let from = max(prepareFrom, chosen + 1)
        let changes: [(slot: Slot, membership: Membership)] = recovered.values.compactMap { entry in
            guard entry.slot >= from, case .membership(let membership) = entry.command else { return nil }
            return (entry.slot, membership)
        }
        return Self.fold(membership(at: from), changes)
    }

    private mutating func noteRecovered(_ entries: [Entry]) {
        for entry in entries where entry.ballot >= (recovered[entry.slot]?.ballot ?? .zero) {
            recovered[entry.slot] = entry
        }
    }

    private mutating func sendPrepares() {
        for membership in electionMemberships {
            for voter in membership.voters where !prepared.contains(voter) {
                prepared.insert(voter)
                send(.prepare(ballot: durable.promised, fromSlot: prepareFrom), to: voter)
            }
        }
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
        let snapshot = baseSlot >= fromSlot ? durable.snapshot : nil
        send(.promise(ballot: ballot, accepted: acceptedEntries(from: fromSlot), snapshot: snapshot), to: from)
    }

    private mutating func handlePromise(_ ballot: Ballot, accepted: [Entry], snapshot: Snapshot?, from: NodeID) {
        guard role == .candidate, ballot == durable.promised else { return }
        if let snapshot, snapshot.slot > chosen {
            if snapshot.data != nil {
                install(snapshot)
            } else if (chosen + 1...snapshot.slot).allSatisfy({ durable.log[$0] != nil }) {
                // A log-only replica dropped these slots: every full replica, this one
                // included, knew them chosen and has them on disk.
                for slot in chosen + 1...snapshot.slot { learned.insert(slot) }
                advanceChosenThroughLearned()
            } else {
                // Slots chosen long ago that this replica never had: it cannot recover them,
                // so it cannot lead; a replica that has them will.
                becomeFollower(leader: nil)
                return
            }
        }
        promises[from] = accepted
        noteRecovered(accepted)
        sendPrepares()
        becomeLeaderIfPromised()
    }

    private mutating func becomeLeaderIfPromised() {
        if isQuorumOfEach(Set(promises.keys), electionMemberships) { becomeLeader() }
    }

    /// Phase 1 is done: each slot from the first not known chosen gets the highest-ballot
    /// value any promiser accepted, or a no-op; all are proposed again in this ballot.
    private mutating func becomeLeader() {
        let ballot = durable.promised
        let from = max(prepareFrom, chosen + 1)
        let best = recovered.filter { $0.key >= from }
        role = .leader
        leader = id
        promises = [:]
        recovered = [:]
        heartbeatElapsed = 0
        electedAt = now
        answeredSentAt = [:]
        lastSlot = max(chosen, best.keys.max() ?? 0)
        if lastSlot >= from {
            for slot in from...lastSlot {
                accept(Entry(slot: slot, ballot: ballot, command: best[slot]?.command ?? .noop))
            }
        }
        readBarrier = lastSlot
        matched = [id: lastSlot]
        for peer in peers {
            matched[peer] = 0
            nextSend[peer] = from
        }
        // Announce the new ballot at once (with the re-proposed slots, if any).
        for peer in peers { sendAppend(to: peer, resend: false, evenIfEmpty: true) }
        advanceCommit()
    }

    // MARK: Phase 2

    /// Stores an entry in this replica's log, to be persisted before anything is sent.
    private mutating func accept(_ entry: Entry) {
        precondition(entry.slot > baseSlot, "compacted slots are chosen")
        durable.log[entry.slot] = entry
        unpersisted[entry.slot] = entry
        if case .membership(let membership) = entry.command { changes[entry.slot] = membership } else { changes[entry.slot] = nil }
    }

    /// Sends a follower the entries it lacks: from what it has not been sent yet, or, on a
    /// heartbeat, from the first slot it does not know chosen (resending what may be lost);
    /// the snapshot if it lacks slots compacted here.
    private mutating func sendAppend(to peer: NodeID, resend: Bool, evenIfEmpty: Bool = false) {
        let first = resend ? (followerChosen[peer] ?? 0) + 1 : (nextSend[peer] ?? 1)
        if first <= baseSlot, let snapshot = durable.snapshot {
            nextSend[peer] = baseSlot + 1
            send(.snapshot(ballot: durable.promised, snapshot: snapshot, sentAt: now), to: peer)
            return
        }
        var entries: [Entry] = []
        if first <= lastSlot {
            let last = min(lastSlot, first + Slot(configuration.maxEntriesPerMessage) - 1)
            entries = (first...last).map { durable.log[$0]! }
            nextSend[peer] = last + 1
        }
        if entries.isEmpty && !resend && !evenIfEmpty { return }
        send(.append(ballot: durable.promised, entries: entries, commit: chosen, sentAt: now, retain: retainSlot), to: peer)
    }

    /// Every replica with a state machine knows every slot up to here chosen.
    private var retainSlot: Slot {
        let full = latestMembership.voters.filter { !latestMembership.logOnly.contains($0) }
        return full.map { $0 == id ? chosen : followerChosen[$0] ?? 0 }.min() ?? 0
    }

    /// A message from a leader in `ballot`: follow it, unless this replica promised higher.
    private mutating func followLeader(_ ballot: Ballot, from: NodeID) -> Bool {
        noteRound(ballot.round)
        guard ballot >= durable.promised else {
            send(.reject(promised: durable.promised), to: from)
            return false
        }
        precondition(!(role == .leader && ballot == durable.promised), "two leaders in ballot \(ballot)")
        if role != .follower || leader != from { becomeFollower(leader: from) }
        promise(ballot)
        resetElectionTimer()
        ticksSinceLeader = 0
        noLeaderVotes = nil
        return true
    }

    private mutating func handleAppend(_ ballot: Ballot, entries: [Entry], commit: Slot, sentAt: UInt64, retain: Slot, from: NodeID) {
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
            choose(chosen + 1)
        }
        if configuration.isLogOnly {
            let through = min(retain, chosen)
            if through >= baseSlot + configuration.logOnlyCompactionSlots {
                replaceLog(with: Snapshot(slot: through, membership: membership(at: through + 1), data: nil))
            }
        }
        answerLeader(ballot, sentAt: sentAt, to: from)
    }

    private mutating func answerLeader(_ ballot: Ballot, sentAt: UInt64, to leader: NodeID) {
        var matchedSlot = chosen
        while durable.log[matchedSlot + 1]?.ballot == ballot { matchedSlot += 1 }
        send(.appended(ballot: ballot, matched: matchedSlot, chosen: chosen, sentAt: sentAt), to: leader)
    }

    private mutating func choose(_ slot: Slot) {
        precondition(slot == chosen + 1 && durable.log[slot] != nil, "slots are chosen in order, from the log")
        chosen = slot
        durable.chosen = slot
        chosenChanged = true
        learned.remove(slot)
    }

    private mutating func advanceChosenThroughLearned() {
        while learned.contains(chosen + 1) && durable.log[chosen + 1] != nil { choose(chosen + 1) }
    }

    /// The leader's commit: each next slot is chosen once a quorum of the membership that
    /// governs it has accepted it in this ballot (or knows it chosen).
    private mutating func advanceCommit() {
        while chosen < lastSlot {
            let slot = chosen + 1
            let membership = membership(at: slot)
            let accepted = membership.voters.filter { (matched[$0] ?? 0) >= slot }.count
            guard accepted >= membership.quorum else { break }
            choose(slot)
        }
        // A leader the chosen log has removed tells the rest, and stands down (its successor
        // comes from them).
        if role == .leader && !hasPendingChange && !latestMembership.contains(id) {
            for peer in peers { sendAppend(to: peer, resend: true) }
            becomeFollower(leader: nil)
        }
    }

    // MARK: Snapshots

    /// Drops the log through the snapshot's slot, which the caller persists first.
    private mutating func replaceLog(with snapshot: Snapshot) {
        precondition(snapshot.slot > baseSlot && snapshot.slot <= chosen, "a snapshot holds chosen slots past the last one")
        durable.snapshot = snapshot
        base = snapshot.membership
        baseSlot = snapshot.slot
        durable.log = durable.log.filter { $0.key > snapshot.slot }
        unpersisted = unpersisted.filter { $0.key > snapshot.slot }
        changes = changes.filter { $0.key > snapshot.slot }
        unpersistedSnapshot = snapshot
    }

    /// A snapshot from the leader (or a promise) past what this replica knows chosen.
    private mutating func install(_ snapshot: Snapshot) {
        precondition(snapshot.slot > chosen)
        chosen = snapshot.slot
        durable.chosen = snapshot.slot
        chosenChanged = true
        replaceLog(with: snapshot)
        learned = learned.filter { $0 > snapshot.slot }
        applied = snapshot.slot
        restoreSnapshot = !configuration.isLogOnly
        advanceChosenThroughLearned()
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
