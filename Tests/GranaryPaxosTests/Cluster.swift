import GranaryPaxos

/// Replicas driven by hand, as a caller would drive them (persist, send, apply), with the
/// network in the test's hands: what was sent waits in `sent` until delivered or dropped.
struct Cluster {
    var replicas: [NodeID: Replica] = [:]
    var sent: [Envelope] = []
    var applied: [NodeID: [Command]] = [:]
    /// Each replica's state machine: the bytes of the one-byte values it applied, in order
    /// (what its snapshots hold).
    var states: [NodeID: [UInt8]] = [:]
    let founding: [NodeID]
    let foundingLogOnly: Set<NodeID>

    init(members: [NodeID] = [1, 2, 3], logOnly: Set<NodeID> = []) {
        founding = members
        foundingLogOnly = logOnly
        for id in members { start(id) }
    }

    /// Starts a replica with an empty disk (a founding member, or one about to be added).
    mutating func start(_ id: NodeID, seed: UInt64 = 1) {
        replicas[id] = Replica(
            configuration: Replica.Configuration(id: id, members: founding, logOnly: foundingLogOnly, seed: seed))
    }

    /// Snapshots `id`'s state machine and compacts its log through what it applied.
    mutating func compact(_ id: NodeID) {
        replicas[id]!.compact(through: replicas[id]!.applied, snapshot: states[id, default: []])
        flush(id)
    }

    /// Takes each replica's Ready (as the caller would: persist, send, apply).
    mutating func flush(_ id: NodeID) {
        while replicas[id]!.hasReady {
            let ready = replicas[id]!.ready()
            if let snapshot = ready.snapshot, ready.restoreSnapshot { states[id] = snapshot.data }
            sent += ready.earlyMessages + ready.messages
            applied[id, default: []] += ready.committed.map(\.command)
            for entry in ready.committed {
                if case .value(let bytes) = entry.command, bytes.count == 1 { states[id, default: []].append(bytes[0]) }
            }
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
        for _ in 0..<100 where replicas[id]!.role == .follower && !sent.contains(where: { $0.message == .leaderQuery })
        {
            tick(id, 1)
        }
        var answers: [Envelope] = []
        for query in sent where voters.contains(query.to) {
            replicas[query.to]!.step(query)
            let ready = replicas[query.to]!.ready()
            answers += ready.earlyMessages + ready.messages
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
}
