import GranaryPaxos
import Testing

/// A replica that lost its disk (`Replica.Recovery`): it asks every other voter, promises
/// the highest ballot they report, and votes only once it knows their logs' ends chosen.
@Suite struct RecoveryTests {
    var cluster = Cluster()

    static func recovering(_ id: NodeID, members: [NodeID] = [1, 2, 3]) -> Replica {
        var configuration = Replica.Configuration(id: id, members: members, seed: 5)
        configuration.recovering = true
        return Replica(configuration: configuration)
    }

    func messages(from id: NodeID) -> [Message] { cluster.sent.filter { $0.from == id }.map(\.message) }

    @Test mutating func aReplicaThatLostItsDiskVotesOnlyOnceCaughtUp() {
        cluster.elect(1)
        for value: UInt8 in 1...3 { _ = cluster.replicas[1]!.propose(.value([value])) }
        cluster.flush(1)
        cluster.deliver(to: [1, 2, 3])
        let ballot = cluster.replicas[1]!.promised
        // Node 3 comes back empty; node 2 is unreachable.
        cluster.replicas[3] = Self.recovering(3)
        cluster.tick(3, 1)
        #expect(messages(from: 3) == [.recoveryQuery, .recoveryQuery])
        cluster.deliver(to: [1, 3])
        #expect(cluster.replicas[3]!.isRecovering && cluster.replicas[3]!.recoveringThrough == nil)
        // Until every other voter answered, it follows no leader and promises nothing.
        cluster.tick(1, 2)
        cluster.replicas[3]!.step(
            Envelope(from: 2, to: 3, message: .prepare(ballot: Ballot(round: 9, node: 2), fromSlot: 1)))
        cluster.flush(3)
        #expect(!messages(from: 3).contains { if case .promise = $0 { true } else { false } })
        cluster.sent = []
        // Node 2 answers too: node 3 promises the highest ballot and must learn slots 1...3 chosen.
        cluster.tick(3, 2)
        cluster.deliver(to: [1, 2, 3])
        #expect(cluster.replicas[3]!.recoveringThrough == 3)
        #expect(cluster.replicas[3]!.promised >= ballot)
        // The leader's heartbeats resend from what node 3 says it has chosen (nothing).
        for _ in 0..<3 {
            cluster.tick(1, 2)
            cluster.deliver(to: [1, 2, 3])
        }
        #expect(!cluster.replicas[3]!.isRecovering)
        #expect(cluster.applied[3] == [.value([1]), .value([2]), .value([3])])
        // Now it promises like any replica.
        let higher = Ballot(round: cluster.replicas[3]!.promised.round + 1, node: 2)
        cluster.replicas[3]!.step(Envelope(from: 2, to: 3, message: .prepare(ballot: higher, fromSlot: 1)))
        cluster.flush(3)
        #expect(messages(from: 3).contains { if case .promise = $0 { true } else { false } })
    }

    @Test mutating func aNewGroupStartsOnceEveryVoterHasAnswered() {
        // Every replica of a new cluster starts recovering (its directory is empty): with
        // node 3 absent, nodes 1 and 2 cannot tell a new group from one node 3 ran with.
        for id: NodeID in [1, 2] { cluster.replicas[id] = Self.recovering(id) }
        cluster.replicas[3] = nil
        cluster.tick(1, 1)
        cluster.tick(2, 1)
        cluster.deliver(to: [1, 2])
        #expect(cluster.replicas[1]!.isRecovering && cluster.replicas[2]!.isRecovering)
        cluster.replicas[3] = Self.recovering(3)
        for id: NodeID in [1, 2, 3] { cluster.tick(id, 2) }
        cluster.deliver(to: [1, 2, 3])
        #expect([1, 2, 3].allSatisfy { !cluster.replicas[$0]!.isRecovering })
        cluster.elect(1)
    }

    @Test func aGroupOfOneHasNoOneToAsk() {
        var replica = Self.recovering(1, members: [1])
        #expect(!replica.isRecovering)
        let ready = replica.ready()
        #expect(ready.recovered)
        replica.advance(ready)
        #expect(!replica.hasReady)
    }
}
