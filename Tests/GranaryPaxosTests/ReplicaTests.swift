import GranaryPaxos
import Testing

/// The protocol by hand, message by message: elections, commits, a stale leader, leases,
/// the leader check before an election, check-quorum and leadership transfer.
@Suite struct ReplicaTests {
    var replicas: [NodeID: Replica] = [:]
    var sent: [Envelope] = []
    var applied: [NodeID: [Command]] = [:]

    init() {
        for id: NodeID in [1, 2, 3] {
            replicas[id] = Replica(configuration: Replica.Configuration(id: id, members: [1, 2, 3], seed: 1))
        }
    }

    /// Takes each replica's Ready (as the caller would: persist, send, apply).
    mutating func flush(_ id: NodeID) {
        while replicas[id]!.hasReady {
            let ready = replicas[id]!.ready()
            sent += ready.messages
            applied[id, default: []] += ready.committed.map(\.command)
            replicas[id]!.advance(ready)
        }
    }

    /// Delivers every sent message whose recipient is in `to`, dropping the others.
    mutating func deliver(to recipients: Set<NodeID>) {
        while !sent.isEmpty {
            let batch = sent
            sent = []
            for envelope in batch where recipients.contains(envelope.to) {
                replicas[envelope.to]!.step(envelope)
                flush(envelope.to)
            }
        }
    }

    mutating func tick(_ id: NodeID, _ count: Int) {
        for _ in 0..<count { replicas[id]!.tick() }
        flush(id)
    }

    /// `id` times out and asks `voters` whether they hear a leader; the others among them
    /// first go an election timeout without hearing one (what their own timers send is lost).
    /// Ends with `id` a candidate whose prepares are in `sent`, if the voters said "no leader".
    mutating func campaign(_ id: NodeID, voters: Set<NodeID>) {
        for other in voters where other != id {
            tick(other, 10)
        }
        sent = []
        for _ in 0..<100 where replicas[id]!.role == .follower && !sent.contains(where: { $0.message == .leaderQuery }) {
            tick(id, 1)
        }
        var answers: [Envelope] = []
        for query in sent where voters.contains(query.to) {
            replicas[query.to]!.step(query)
            let ready = replicas[query.to]!.ready()
            answers += ready.messages
            replicas[query.to]!.advance(ready)
        }
        sent = []
        for answer in answers {
            replicas[id]!.step(answer)
        }
        flush(id)
    }

    mutating func elect(_ id: NodeID) {
        campaign(id, voters: [1, 2, 3])
        deliver(to: [1, 2, 3])
        precondition(replicas[id]!.role == .leader)
    }

    @Test mutating func electsCommitsAndApplies() {
        campaign(1, voters: [1, 2, 3])
        #expect(replicas[1]!.role == .candidate)
        #expect(sent.count == 2 && sent.allSatisfy { if case .prepare = $0.message { true } else { false } })
        deliver(to: [1, 2, 3])
        #expect(replicas[1]!.role == .leader)
        #expect(replicas[2]!.leader == 1 && replicas[3]!.leader == 1)
        let slot = replicas[1]!.propose(.value([7]))
        #expect(slot == 1)
        #expect(replicas[2]!.propose(.value([8])) == nil)  // only the leader proposes
        flush(1)
        deliver(to: [1, 2, 3])
        #expect(replicas[1]!.chosen == 1)
        #expect(applied[1] == [.value([7])])
        // Followers learn the commit with the next message (a heartbeat).
        tick(1, 2)
        deliver(to: [1, 2, 3])
        #expect(applied[2] == [.value([7])] && applied[3] == [.value([7])])
    }

    @Test mutating func aNewLeaderKeepsWhatAMajorityAcceptedAndFillsGaps() {
        elect(1)
        _ = replicas[1]!.propose(.value([1]))
        _ = replicas[1]!.propose(.value([2]))
        flush(1)
        // Only node 2 hears slots 1 and 2; the leader then falls silent.
        deliver(to: [2])
        #expect(replicas[1]!.chosen == 0)
        // Node 3 runs for leader; node 2's promise reports what it accepted.
        campaign(3, voters: [2, 3])
        deliver(to: [2, 3])
        #expect(replicas[3]!.role == .leader)
        tick(3, 2)
        deliver(to: [2, 3])
        #expect(applied[3] == [.value([1]), .value([2])])
        // The old leader hears the new ballot and steps down, keeping the chosen values.
        tick(3, 2)
        deliver(to: [1, 2, 3])
        #expect(replicas[1]!.role == .follower)
        #expect(applied[1] == [.value([1]), .value([2])])
    }

    @Test mutating func aStaleLeaderCannotCommit() {
        elect(1)
        // Node 2 moves to a higher ballot with node 3; node 1 does not hear of it.
        campaign(2, voters: [2, 3])
        deliver(to: [2, 3])
        #expect(replicas[2]!.role == .leader && replicas[1]!.role == .leader)
        _ = replicas[1]!.propose(.value([9]))
        flush(1)
        // Node 3 has promised the higher ballot: it rejects, and node 1 stands down.
        deliver(to: [1, 3])
        #expect(replicas[1]!.chosen == 0)
        #expect(replicas[1]!.role == .follower)
    }

    /// A new leader serves no strong read until a full lease has passed since its election
    /// (an old leader's lease may still run); then it serves while a quorum keeps answering
    /// its heartbeats, and stops once answers have been missing for the lease's length.
    @Test mutating func leasesGateStrongReads() {
        elect(1)
        #expect(!replicas[1]!.canServeStrongRead)
        for _ in 0..<4 {
            tick(1, 2)
            deliver(to: [1, 2, 3])
            #expect(!replicas[1]!.canServeStrongRead)
        }
        tick(1, 2)
        deliver(to: [1, 2, 3])
        #expect(replicas[1]!.canServeStrongRead)
        #expect(!replicas[2]!.canServeStrongRead && !replicas[3]!.canServeStrongRead)
        // Heartbeats go unanswered: the lease (10 - 3 ticks from the last answered send) ends.
        tick(1, 6)
        sent = []
        #expect(replicas[1]!.canServeStrongRead)
        tick(1, 1)
        sent = []
        #expect(!replicas[1]!.canServeStrongRead)
        #expect(replicas[1]!.role == .leader)
        // And after an election timeout without a quorum's answer, it stands down (check-quorum).
        tick(1, 3)
        #expect(replicas[1]!.role == .follower)
    }

    /// A follower that cannot hear the leader, while the others can, asks before running:
    /// it is told the leader is alive, and the group keeps its ballot.
    @Test mutating func aFollowerCutOffFromALiveLeaderDoesNotDeposeIt() {
        elect(1)
        let ballot = replicas[1]!.promised
        for _ in 0..<30 {
            tick(1, 1)
            tick(3, 1)
            // Node 3 hears nothing from node 1; nodes 1 and 2 talk.
            sent.removeAll { $0.from == 1 && $0.to == 3 }
            deliver(to: [1, 2, 3])
        }
        #expect(replicas[3]!.role == .follower)
        #expect(replicas[1]!.role == .leader && replicas[1]!.promised == ballot && replicas[3]!.promised == ballot)
    }

    @Test mutating func aRestartedReplicaWaitsAFullLeaseBeforeItRuns() {
        replicas[2] = Replica(configuration: Replica.Configuration(id: 2, members: [1, 2, 3], seed: 99))
        var asked = 0
        for _ in 0..<9 {
            tick(2, 1)
            asked += sent.filter { $0.message == .leaderQuery }.count
        }
        #expect(asked == 0)
        tick(2, 30)
        #expect(sent.contains { $0.message == .leaderQuery })
    }

    @Test mutating func leadershipTransfer() {
        elect(1)
        _ = replicas[1]!.propose(.value([5]))
        flush(1)
        let started = replicas[1]!.transferLeadership(to: 3)
        #expect(started)
        let refused = replicas[1]!.propose(.value([6]))
        #expect(refused == nil)  // no proposals while handing over
        #expect(!replicas[1]!.canServeStrongRead)
        // Node 3 catches up, is told to run, and wins without waiting for its election timer.
        deliver(to: [1, 2, 3])
        #expect(replicas[3]!.role == .leader)
        #expect(replicas[1]!.role == .follower)
        #expect(replicas[3]!.promised > replicas[1]!.promised || replicas[1]!.promised == replicas[3]!.promised)
        tick(3, 2)
        deliver(to: [1, 2, 3])
        #expect(applied[3] == [.value([5])])
        let slot = replicas[3]!.propose(.value([7]))
        #expect(slot == 2)
        let followerTransfers = replicas[2]!.transferLeadership(to: 1)
        #expect(!followerTransfers)  // only a leader hands over
    }
}
