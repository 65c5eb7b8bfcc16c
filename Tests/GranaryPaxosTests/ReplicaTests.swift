import GranaryPaxos
import Testing

/// The protocol by hand, message by message: an election, a commit, a stale leader.
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

    mutating func tickUntilCandidate(_ id: NodeID) {
        for _ in 0..<100 where replicas[id]!.role == .follower {
            replicas[id]!.tick()
        }
        flush(id)
    }

    @Test mutating func electsCommitsAndApplies() {
        tickUntilCandidate(1)
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
        for _ in 0..<2 { replicas[1]!.tick() }
        flush(1)
        deliver(to: [1, 2, 3])
        #expect(applied[2] == [.value([7])] && applied[3] == [.value([7])])
    }

    @Test mutating func aNewLeaderKeepsWhatAMajorityAcceptedAndFillsGaps() {
        tickUntilCandidate(1)
        deliver(to: [1, 2, 3])
        _ = replicas[1]!.propose(.value([1]))
        _ = replicas[1]!.propose(.value([2]))
        flush(1)
        // Only node 2 hears slots 1 and 2; the leader then falls silent.
        deliver(to: [2])
        #expect(replicas[1]!.chosen == 0)
        // Node 3 runs for leader; node 2's promise reports what it accepted.
        tickUntilCandidate(3)
        deliver(to: [2, 3])
        #expect(replicas[3]!.role == .leader)
        for _ in 0..<2 { replicas[3]!.tick() }
        flush(3)
        deliver(to: [2, 3])
        #expect(applied[3] == [.value([1]), .value([2])])
        // The old leader hears the new ballot and steps down, keeping the chosen values.
        for _ in 0..<2 { replicas[3]!.tick() }
        flush(3)
        deliver(to: [1, 2, 3])
        #expect(replicas[1]!.role == .follower)
        #expect(applied[1] == [.value([1]), .value([2])])
    }

    @Test mutating func aStaleLeaderCannotCommit() {
        tickUntilCandidate(1)
        deliver(to: [1, 2, 3])
        // Node 2 moves to a higher ballot with node 3; node 1 does not hear of it.
        tickUntilCandidate(2)
        deliver(to: [2, 3])
        #expect(replicas[2]!.role == .leader && replicas[1]!.role == .leader)
        _ = replicas[1]!.propose(.value([9]))
        flush(1)
        // Node 3 has promised the higher ballot: it rejects, and node 1 stands down.
        deliver(to: [1, 3])
        #expect(replicas[1]!.chosen == 0)
        #expect(replicas[1]!.role == .follower)
    }
}
