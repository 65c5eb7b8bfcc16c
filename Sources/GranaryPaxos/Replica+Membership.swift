/// Which replicas a slot's quorum counts, and the leader's lease over them.
extension Replica {
    // MARK: Membership

    /// The memberships in force after each change, in slot order, from `start` on: a
    /// change that is not one change from the membership before it is void.
    static func fold(_ start: Membership, _ changes: [(slot: Slot, membership: Membership)]) -> [Membership] {
        var memberships = [start]
        for change in changes.sorted(by: { $0.slot < $1.slot })
        where change.membership.isOneChange(from: memberships.last!) {
            memberships.append(change.membership)
        }
        return memberships
    }

    func changes(in range: ClosedRange<Slot>) -> [(slot: Slot, membership: Membership)] {
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
    var hasPendingChange: Bool { changes.keys.contains { $0 > chosen } }

    /// The memberships that may govern the next slots: the chosen one, and every change in
    /// the log after it (at most one, at a leader; more at a replica with a stale log).
    var currentMemberships: [Membership] {
        if changes.isEmpty { return [base] }
        return Self.fold(membership(at: chosen + 1), changes(in: chosen + 1...Slot.max))
    }

    func isQuorumOfEach(_ ids: Set<NodeID>, _ memberships: [Membership]) -> Bool {
        memberships.allSatisfy { membership in membership.voters.filter(ids.contains).count >= membership.quorum }
    }

    /// Everyone a leader talks to: the voters of every membership from its chosen prefix on.
    var peers: [NodeID] {
        var all = Set(currentMemberships.flatMap(\.voters))
        all.remove(id)
        return all.sorted()
    }

    // MARK: Leases

    /// The start of the current lease: the latest send time that a quorum (this leader,
    /// at `now`, and the followers' echoes) has answered, in every membership in force.
    var leaseStart: UInt64? {
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
        if configuration.newLeaderWaitsOutOldLease && now < electedAt + UInt64(configuration.leaseTicks) {
            return false
        }
        return now < start + UInt64(configuration.leaseTicks - configuration.clockDriftTicks)
    }
}
