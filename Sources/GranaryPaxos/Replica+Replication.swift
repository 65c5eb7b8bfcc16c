/// Phase 2 and catch-up: accepting entries, appends and their answers, the commit, the
/// chosen prefix, snapshots, and leadership hand-over.
extension Replica {
    // MARK: Phase 2

    /// Stores an entry in this replica's log, to be persisted before anything is sent.
    mutating func accept(_ entry: Entry) {
        precondition(entry.slot > baseSlot, "compacted slots are chosen")
        durable.log[entry.slot] = entry
        unpersisted[entry.slot] = entry
        if case .membership(let membership) = entry.command {
            changes[entry.slot] = membership
        } else {
            changes[entry.slot] = nil
        }
    }

    /// Sends a follower the entries it lacks: from what it has not been sent yet, or, on a
    /// resend, from the first slot it does not know chosen (resending what may be lost);
    /// the snapshot if it lacks slots compacted here.
    mutating func sendAppend(to peer: NodeID, resend: Bool, evenIfEmpty: Bool = false) {
        let first = resend ? (followerChosen[peer] ?? 0) + 1 : (nextSend[peer] ?? 1)
        if resend { inflight[peer] = [] }
        if first <= baseSlot, let snapshot = durable.snapshot {
            nextSend[peer] = baseSlot + 1
            send(.snapshot(ballot: durable.promised, snapshot: snapshot, sentAt: now), to: peer)
            return
        }
        var entries: [Entry] = []
        var bytes = 0
        for slot in first...max(first, min(lastSlot, first + Slot(configuration.maxEntriesPerMessage) - 1))
        where slot <= lastSlot {
            let entry = durable.log[slot]!
            bytes += entry.command.byteCount
            if !entries.isEmpty && bytes > configuration.maxBytesPerMessage { break }
            entries.append(entry)
        }
        if let last = entries.last?.slot {
            nextSend[peer] = last + 1
            inflight[peer, default: []].append(last)
        }
        if entries.isEmpty && !resend && !evenIfEmpty { return }
        send(
            .append(ballot: durable.promised, entries: entries, commit: chosen, sentAt: now, retain: retainSlot),
            to: peer)
    }

    /// Whether a follower has entries it was not sent, and room for another append.
    func maySendMore(to peer: NodeID) -> Bool {
        (nextSend[peer] ?? 1) <= lastSlot && (inflight[peer]?.count ?? 0) < configuration.maxInflightAppends
    }

    /// A leader's heartbeat to `peer`: the commit and the lease's evidence, and the entries
    /// it lacks again if it made no progress since the last heartbeat (what was sent may be
    /// lost); a follower that is catching up is left to the appends on their way.
    mutating func heartbeat(_ peer: NodeID) {
        let progress = matched[peer] ?? 0
        defer { matchedAtHeartbeat[peer] = progress }
        let outstanding = (nextSend[peer] ?? 1) > progress + 1
        if outstanding && progress > (matchedAtHeartbeat[peer] ?? 0) {
            send(
                .append(ballot: durable.promised, entries: [], commit: chosen, sentAt: now, retain: retainSlot),
                to: peer)
        } else {
            sendAppend(to: peer, resend: true)
        }
    }

    /// Every replica with a state machine knows every slot up to here chosen.
    var retainSlot: Slot {
        let full = latestMembership.voters.filter { !latestMembership.logOnly.contains($0) }
        return full.map { $0 == id ? chosen : followerChosen[$0] ?? 0 }.min() ?? 0
    }

    /// A message from a leader in `ballot`: follow it, unless this replica promised higher.
    mutating func followLeader(_ ballot: Ballot, from: NodeID) -> Bool {
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

    mutating func handleAppend(
        _ ballot: Ballot, entries: [Entry], commit: Slot, sentAt: UInt64, retain: Slot, from: NodeID
    ) {
        for entry in entries where entry.slot > chosen && !learned.contains(entry.slot) {
            // Chosen slots keep the ballot they were chosen in; the rest are this ballot's.
            precondition(entry.slot <= commit || entry.ballot == ballot, "a leader proposes in its own ballot")
            if durable.log[entry.slot] != entry { accept(entry) }
            if entry.slot <= commit { learned.insert(entry.slot) }
        }
        // A slot is chosen if the leader said so for it, or if it is at or below the
        // leader's commit and holds the leader's own entry (one value per slot per ballot).
        while let next = durable.log[chosen + 1],
            learned.contains(chosen + 1) || (next.ballot == ballot && chosen + 1 <= commit)
        {
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

    mutating func answerLeader(_ ballot: Ballot, sentAt: UInt64, to leader: NodeID) {
        var matchedSlot = chosen
        while durable.log[matchedSlot + 1]?.ballot == ballot { matchedSlot += 1 }
        send(.appended(ballot: ballot, matched: matchedSlot, chosen: chosen, sentAt: sentAt), to: leader)
    }

    mutating func choose(_ slot: Slot) {
        precondition(slot == chosen + 1 && durable.log[slot] != nil, "slots are chosen in order, from the log")
        chosen = slot
        durable.chosen = slot
        chosenChanged = true
        learned.remove(slot)
    }

    mutating func advanceChosenThroughLearned() {
        while learned.contains(chosen + 1) && durable.log[chosen + 1] != nil { choose(chosen + 1) }
    }

    /// A leader's own acceptances count towards the commit once they are on disk: each
    /// slot of its ballot below the first it has not persisted yet.
    mutating func countOwnAcceptances() {
        guard role == .leader else { return }
        let persisted = min(lastSlot, (unpersisted.keys.min() ?? lastSlot + 1) - 1)
        guard persisted > (matched[id] ?? 0) else { return }
        matched[id] = persisted
        advanceCommit()
    }

    /// The leader's commit: each next slot is chosen once a quorum of the membership that
    /// governs it has accepted it in this ballot (or knows it chosen).
    mutating func advanceCommit() {
        while chosen < lastSlot {
            let slot = chosen + 1
            let membership = membership(at: slot)
            let accepted = membership.voters.reduce(0) { $0 + ((matched[$1] ?? 0) >= slot ? 1 : 0) }
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
    mutating func replaceLog(with snapshot: Snapshot) {
        precondition(
            snapshot.slot > baseSlot && snapshot.slot <= chosen, "a snapshot holds chosen slots past the last one")
        durable.snapshot = snapshot
        base = snapshot.membership
        baseSlot = snapshot.slot
        durable.log = durable.log.filter { $0.key > snapshot.slot }
        unpersisted = unpersisted.filter { $0.key > snapshot.slot }
        changes = changes.filter { $0.key > snapshot.slot }
        unpersistedSnapshot = snapshot
    }

    /// A snapshot from the leader (or a promise) past what this replica knows chosen.
    mutating func install(_ snapshot: Snapshot) {
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

    mutating func sendTimeoutNowIfCaughtUp() {
        guard let transfer, !transfer.sent else { return }
        if (matched[transfer.target] ?? 0) >= lastSlot {
            self.transfer!.sent = true
            send(.timeoutNow(ballot: durable.promised), to: transfer.target)
        } else {
            sendAppend(to: transfer.target, resend: false)
        }
    }

    mutating func send(_ message: Message, to peer: NodeID) {
        outbox.append(Envelope(from: id, to: peer, message: message))
    }
}
