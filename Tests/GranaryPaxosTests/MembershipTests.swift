import GranaryPaxos
import Testing

/// Membership changes, log-only replicas and catch-up by snapshot, by hand.
@Suite struct MembershipTests {
    var cluster = Cluster()

    /// The leader proposes and commits one-byte values 1...count with everyone listening.
    mutating func commitValues(_ values: ClosedRange<UInt8>, leader: NodeID = 1, to: Set<NodeID> = [1, 2, 3]) {
        for value in values { _ = cluster.replicas[leader]!.propose(.value([value])) }
        cluster.flush(leader)
        cluster.deliver(to: to)
        cluster.tick(leader, 2)
        cluster.deliver(to: to)
    }

    @Test mutating func anAddedReplicaCatchesUpFromASnapshot() {
        cluster.elect(1)
        commitValues(1...5)
        cluster.compact(1)
        #expect(cluster.replicas[1]!.durable.log.isEmpty && cluster.replicas[1]!.durable.snapshot?.slot == 5)
        // The operator starts replica 4 empty, then adds it through the log.
        cluster.start(4)
        let latest = cluster.replicas[1]!.latestMembership
        let slot = cluster.replicas[1]!.proposeMembership(latest.adding(4))
        #expect(slot == 6)
        cluster.flush(1)
        cluster.deliver(to: [1, 2, 3, 4])
        cluster.tick(1, 2)
        cluster.deliver(to: [1, 2, 3, 4])
        #expect(cluster.replicas[1]!.chosen == 6)
        #expect(cluster.replicas[4]!.chosen == 6 && cluster.states[4] == [1, 2, 3, 4, 5])
        #expect(cluster.replicas[4]!.latestMembership.voters == [1, 2, 3, 4])
        // Four voters: a quorum is three. With 3 and 4 silent, nothing commits.
        _ = cluster.replicas[1]!.propose(.value([6]))
        cluster.flush(1)
        cluster.deliver(to: [1, 2])
        #expect(cluster.replicas[1]!.chosen == 6)
        cluster.tick(1, 2)
        cluster.deliver(to: [1, 2, 4])
        #expect(cluster.replicas[1]!.chosen == 7)
        cluster.tick(1, 2)
        cluster.deliver(to: [1, 2, 4])
        #expect(cluster.states[4] == [1, 2, 3, 4, 5, 6])
    }

    @Test mutating func oneChangeAtATime() {
        cluster.elect(1)
        let latest = cluster.replicas[1]!.latestMembership
        // Two voters at once could make majorities that do not meet: refused.
        #expect(cluster.replicas[1]!.proposeMembership(latest.adding(4).adding(5)) == nil)
        #expect(cluster.replicas[1]!.proposeMembership(latest.adding(4)) == 1)
        // While it is not chosen, neither another change nor a command goes in behind it.
        #expect(cluster.replicas[1]!.proposeMembership(latest.removing(3)) == nil)
        #expect(cluster.replicas[1]!.propose(.value([1])) == nil)
        #expect(cluster.replicas[2]!.proposeMembership(latest.adding(4)) == nil)  // only the leader
        cluster.start(4)
        cluster.flush(1)
        cluster.deliver(to: [1, 2, 3, 4])
        #expect(cluster.replicas[1]!.chosen == 1)
        #expect(cluster.replicas[1]!.propose(.value([1])) == 2)
    }

    /// Replacing replica 1 (the leader) by replica 4: add 4, then remove 1. The removed
    /// leader tells the rest that its removal is chosen and stands down; it never runs again.
    @Test mutating func replacingTheLeader() {
        cluster.elect(1)
        commitValues(1...3)
        cluster.start(4)
        #expect(cluster.replicas[1]!.proposeMembership(cluster.replicas[1]!.latestMembership.adding(4)) != nil)
        cluster.flush(1)
        cluster.deliver(to: [1, 2, 3, 4])
        #expect(cluster.replicas[1]!.proposeMembership(cluster.replicas[1]!.latestMembership.removing(1)) != nil)
        cluster.flush(1)
        cluster.deliver(to: [1, 2, 3, 4])
        #expect(cluster.replicas[1]!.role == .follower)
        for id: NodeID in [2, 3, 4] {
            #expect(cluster.replicas[id]!.latestMembership.voters == [2, 3, 4])
            #expect(cluster.replicas[id]!.chosen == cluster.replicas[1]!.chosen)
        }
        // Node 1 never asks to lead again; one of the others does, and the group goes on.
        cluster.tick(1, 50)
        #expect(!cluster.sent.contains { $0.from == 1 && $0.message == .leaderQuery })
        cluster.sent = []
        cluster.campaign(4, voters: [2, 3, 4])
        cluster.deliver(to: [2, 3, 4])
        #expect(cluster.replicas[4]!.role == .leader)
        commitValues(4...4, leader: 4, to: [2, 3, 4])
        #expect(cluster.states[4] == [1, 2, 3, 4] && cluster.states[2] == [1, 2, 3, 4])
    }

    /// A log-only replica votes, so the leader and it are a quorum, but it never runs for
    /// leader, applies nothing, and drops its log once every full replica knows it chosen.
    @Test mutating func aLogOnlyReplicaVotesButNeverLeadsOrApplies() {
        cluster = Cluster(members: [1, 2, 3], logOnly: [3])
        cluster.tick(3, 100)
        #expect(!cluster.sent.contains { $0.from == 3 && $0.message == .leaderQuery })
        cluster.sent = []
        cluster.elect(1)
        // Node 2 is away: node 1 and the log-only node 3 commit together.
        commitValues(1...40, to: [1, 3])
        #expect(cluster.replicas[1]!.chosen == 40 && cluster.states[1]?.count == 40)
        #expect(cluster.applied[3, default: []].isEmpty)
        // Node 2 has not got the slots: node 3 keeps them all.
        #expect(cluster.replicas[3]!.durable.log.count == 40)
        #expect(!cluster.replicas[3]!.transferLeadership(to: 1) && !cluster.replicas[1]!.transferLeadership(to: 3))
        // Node 2 catches up; then node 3 may drop what both full replicas have.
        cluster.tick(1, 2)
        cluster.deliver(to: [1, 2, 3])
        cluster.tick(1, 2)
        cluster.deliver(to: [1, 2, 3])
        #expect(cluster.states[2]?.count == 40)
        #expect(cluster.replicas[3]!.durable.snapshot?.slot == 40 && cluster.replicas[3]!.durable.snapshot?.data == nil)
        #expect(cluster.replicas[3]!.durable.log.isEmpty)
    }

    /// A replica restarted after the leader compacted what it lacks gets the snapshot, and
    /// a candidate whose promises include a newer snapshot installs it before it leads.
    @Test mutating func snapshotsCatchUpAFollowerAndACandidate() {
        cluster.elect(1)
        commitValues(1...3, to: [1, 2])
        cluster.compact(1)
        cluster.compact(2)
        #expect(cluster.replicas[3]!.chosen == 0)
        cluster.tick(1, 2)
        cluster.deliver(to: [1, 2, 3])
        #expect(cluster.sent.isEmpty)
        #expect(cluster.replicas[3]!.chosen == 3 && cluster.states[3] == [1, 2, 3])
        // Replica 3 restarts with an empty disk's worth of state: its state comes back from the snapshot.
        commitValues(4...6, to: [1, 2])
        cluster.compact(2)
        cluster.start(3, seed: 7)
        cluster.states[3] = []
        // Node 1 falls silent; node 3 runs with node 2, whose promise carries its snapshot.
        cluster.campaign(3, voters: [2, 3])
        cluster.deliver(to: [2, 3])
        #expect(cluster.replicas[3]!.role == .leader)
        #expect(cluster.replicas[3]!.chosen >= 6 && cluster.states[3] == [1, 2, 3, 4, 5, 6])
    }

    /// A change that is not one change from the membership before it in the log is void:
    /// a new leader re-proposes whatever an old one left accepted, even a change made from
    /// a view a chosen change has since replaced.
    @Test func aChangeFromAStaleViewIsVoid() {
        let founding = Membership(voters: [1, 2, 3])
        var disk = DurableState()
        disk.log[1] = Entry(slot: 1, ballot: Ballot(round: 1, node: 1), command: .membership(founding.adding(4)))
        // Two from {1,2,3,4}.
        disk.log[2] = Entry(slot: 2, ballot: Ballot(round: 2, node: 2), command: .membership(founding.removing(3)))
        disk.log[3] = Entry(
            slot: 3, ballot: Ballot(round: 2, node: 2), command: .membership(founding.adding(4).removing(3)))
        disk.chosen = 3
        let replica = Replica(configuration: Replica.Configuration(id: 1, members: [1, 2, 3], seed: 1), durable: disk)
        #expect(replica.chosen == 3)
        #expect(replica.membership(at: 1).voters == [1, 2, 3])
        #expect(replica.membership(at: 2).voters == [1, 2, 3, 4])
        #expect(replica.membership(at: 3).voters == [1, 2, 3, 4])
        #expect(replica.latestMembership.voters == [1, 2, 4])
    }
}

@Suite struct WireFormTests {
    static let membership = Membership(voters: [1, 2, 3], logOnly: [3])
    static let entries = [
        Entry(slot: 1, ballot: Ballot(round: 2, node: 1), command: .noop),
        Entry(slot: 2, ballot: Ballot(round: 2, node: 1), command: .value([1, 2, 3])),
        Entry(slot: 3, ballot: Ballot(round: 3, node: 2), command: .membership(membership)),
    ]
    static let messages: [Message] = [
        .prepare(ballot: Ballot(round: 4, node: 2), fromSlot: 9),
        .promise(ballot: Ballot(round: 4, node: 2), accepted: entries, snapshot: nil),
        .promise(
            ballot: Ballot(round: 4, node: 2), accepted: [],
            snapshot: Snapshot(slot: 7, membership: membership, data: [9, 9])),
        .reject(promised: Ballot(round: 5, node: 3)),
        .append(ballot: Ballot(round: 1, node: 1), entries: entries, commit: 2, sentAt: 77, retain: 1),
        .snapshot(
            ballot: Ballot(round: 1, node: 1), snapshot: Snapshot(slot: 3, membership: membership, data: nil), sentAt: 5
        ),
        .appended(ballot: Ballot(round: 1, node: 1), matched: 3, chosen: 2, sentAt: 77),
        .leaderQuery, .leaderStatus(alive: true), .leaderStatus(alive: false),
        .timeoutNow(ballot: Ballot(round: 8, node: 1)),
        .recoveryQuery, .recoveryStatus(promised: Ballot(round: 3, node: 2), last: 12),
    ]

    @Test func everyMessageRoundTrips() {
        var writer = WireWriter()
        for message in Self.messages { Envelope(from: 1, to: 2, message: message).encode(to: &writer) }
        var reader = WireReader(writer.bytes)
        for message in Self.messages {
            #expect(Envelope(reading: &reader) == Envelope(from: 1, to: 2, message: message))
        }
        #expect(reader.isAtEnd)
    }

    /// Bytes from the network: every truncation and every single-byte change decodes to
    /// something or to nil, never a trap.
    @Test func damagedBytesNeverTrap() {
        var writer = WireWriter()
        for message in Self.messages { Envelope(from: 1, to: 2, message: message).encode(to: &writer) }
        let bytes = writer.bytes
        for cut in 0..<bytes.count {
            var reader = WireReader(Array(bytes[..<cut]))
            while !reader.isAtEnd, Envelope(reading: &reader) != nil {}
        }
        var random = SeededRandom(seed: 7)
        for _ in 0..<2000 {
            var damaged = bytes
            let at = Int(random.next() % UInt64(damaged.count))
            damaged[at] = UInt8(truncatingIfNeeded: random.next())
            var reader = WireReader(damaged)
            while !reader.isAtEnd, Envelope(reading: &reader) != nil {}
        }
        // A count that claims more entries than bytes left allocates nothing.
        var huge = WireWriter()
        Envelope(from: 1, to: 2, message: .append(ballot: .zero, entries: [], commit: 0, sentAt: 0, retain: 0))
            .encode(to: &huge)
        huge.bytes.replaceSubrange(21..<25, with: [0xFF, 0xFF, 0xFF, 0x7F])
        var reader = WireReader(huge.bytes)
        #expect(Envelope(reading: &reader) == nil)
    }
}
