/// Roles and phase 1: the leader check, elections, promises, and taking over as leader.
extension Replica {
    // MARK: Roles

    mutating func resetElectionTimer() {
        electionElapsed = 0
        electionTimeout = configuration.electionTicks + Int(random.next() % UInt64(configuration.electionTicks))
    }

    mutating func noteRound(_ round: UInt64) { highestRound = max(highestRound, round) }

    mutating func promise(_ ballot: Ballot) {
        precondition(ballot >= durable.promised, "a promise never goes back")
        if ballot != durable.promised {
            durable.promised = ballot
            promisedChanged = true
        }
        noteRound(ballot.round)
    }

    mutating func becomeFollower(leader: NodeID?) {
        role = .follower
        self.leader = leader
        promises = [:]
        recovered = [:]
        matched = [:]
        nextSend = [:]
        inflight = [:]
        matchedAtHeartbeat = [:]
        followerChosen = [:]
        answeredSentAt = [:]
        transfer = nil
        noLeaderVotes = nil
        resetElectionTimer()
    }

    /// Log-only replicas never lead, nor do recovering ones; nor does a replica the log has
    /// not made a voter (in the chosen membership or a pending one: a stale change may remove
    /// it, and still it must run if the replicas that could otherwise are gone).
    var mayRunForLeader: Bool {
        !configuration.isLogOnly && recovery == nil && currentMemberships.contains { $0.canLead(id) }
    }

    /// The election timer fired: ask the peers whether they hear a leader; a quorum of
    /// "no" (this replica's own included) starts an election.
    mutating func askWhetherLeaderIsAlive() {
        resetElectionTimer()
        guard now >= mayLeadAt, mayRunForLeader else { return }
        noLeaderVotes = [id]
        let voters = Set(currentMemberships.flatMap(\.voters))
        for peer in voters.sorted() where peer != id { send(.leaderQuery, to: peer) }
        if isQuorumOfEach(noLeaderVotes!, currentMemberships) { startElection() }
    }

    mutating func startElection() {
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
    var electionMemberships: [Membership] {
        let from = max(prepareFrom, chosen + 1)
        let changes: [(slot: Slot, membership: Membership)] = recovered.values.compactMap { entry in
            guard entry.slot >= from, case .membership(let membership) = entry.command else { return nil }
            return (entry.slot, membership)
        }
        return Self.fold(membership(at: from), changes)
    }

    mutating func noteRecovered(_ entries: [Entry]) {
        for entry in entries where entry.ballot >= (recovered[entry.slot]?.ballot ?? .zero) {
            recovered[entry.slot] = entry
        }
    }

    mutating func sendPrepares() {
        for membership in electionMemberships {
            for voter in membership.voters where !prepared.contains(voter) {
                prepared.insert(voter)
                send(.prepare(ballot: durable.promised, fromSlot: prepareFrom), to: voter)
            }
        }
    }

    func acceptedEntries(from slot: Slot) -> [Entry] {
        durable.log.values.filter { $0.slot >= slot }.sorted { $0.slot < $1.slot }
    }

    mutating func handlePrepare(_ ballot: Ballot, fromSlot: Slot, from: NodeID) {
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

    mutating func handlePromise(_ ballot: Ballot, accepted: [Entry], snapshot: Snapshot?, from: NodeID) {
        guard role == .candidate, ballot == durable.promised else { return }
        if let snapshot, snapshot.slot > chosen {
            if snapshot.data != nil {
                install(snapshot)
            } else if snapshot.membership.canLead(id),
                (chosen + 1...snapshot.slot).allSatisfy({ durable.log[$0] != nil })
            {
                // A log-only replica dropped these slots: every full replica of the
                // membership they leave in force, this one included, knew them chosen and
                // has them on disk. (A replica whose addition was never chosen may hold
                // other values there: it steps down below.)
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

    mutating func becomeLeaderIfPromised() {
        if isQuorumOfEach(Set(promises.keys), electionMemberships) { becomeLeader() }
    }

    /// Phase 1 is done: each slot from the first not known chosen gets the highest-ballot
    /// value any promiser accepted, or a no-op; all are proposed again in this ballot.
    mutating func becomeLeader() {
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
        matched = [id: chosen]  // its acceptances of the re-proposed slots count once persisted
        for peer in peers {
            matched[peer] = 0
            nextSend[peer] = from
        }
        // Announce the new ballot at once (with the re-proposed slots, if any).
        for peer in peers { sendAppend(to: peer, resend: false, evenIfEmpty: true) }
        advanceCommit()
    }
}
