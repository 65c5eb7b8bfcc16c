import GranaryCommands
import GranaryIO
import GranaryModel
import GranaryPartition
import GranaryRouter

/// The partitions of a cluster, as a `PartitionTransport`: every node holds a replica of
/// every partition, and a request that needs the leader (`PartitionRequest.needsLeader`)
/// goes to the node whose replica leads, this one included.
///
/// Where the leader is comes from this node's own replica (the leader it last heard
/// from), or from a refusal naming it. A request is tried again only when it certainly did
/// not happen: refused by a replica that does not lead, or never sent. One that was sent
/// and not answered may have happened, and fails as an internal error (the client's SDK
/// decides whether to retry), since running it twice could apply it twice.
final class ClusterPartitions: PartitionTransport {
    let map: PartitionMap
    let node: UInt32
    let local: LocalPartitions
    let cluster: Cluster
    let partitions: [Partition]
    let holdsNoTree: Bool
    let unsafeFollowerReads: Bool
    /// How long a request looks for its partition's leader before it gives up (an
    /// election takes 0.5 to 1 s, then the new leader waits out the old lease).
    static let leaderSearch = Duration.seconds(8)

    init(local: LocalPartitions, partitions: [Partition], cluster: Cluster) {
        self.map = local.map
        self.local = local
        self.partitions = partitions
        self.cluster = cluster
        node = cluster.configuration.node
        holdsNoTree = cluster.configuration.logOnly.contains(node)
        unsafeFollowerReads = cluster.configuration.unsafeFollowerReads
    }

    func localCore(of partition: Int) -> Int? { local.localCore(of: partition) }

    func send(_ request: PartitionRequest, to partition: Int) async throws(DynamoError) -> PartitionReply {
        guard partitions.indices.contains(partition), let driver = partitions[partition].replica else {
            throw DynamoError("InternalServerError", "Internal server error: no partition \(partition) in the cluster")
        }
        // A log-only replica has no tree to read: it forwards reads too.
        if !request.needsLeader && !holdsNoTree { return try await local.send(request, to: partition) }
        if unsafeFollowerReads, !holdsNoTree, case .get(let key, _) = request {
            return try await local.send(.get(key: key, consistent: false), to: partition)
        }
        let deadline = ContinuousClock.now + Self.leaderSearch
        var backoff = Duration.milliseconds(5)
        var named: UInt32?  // the leader a refusal named
        while true {
            let leader: UInt32?
            if let named { leader = named } else { leader = await driver.leader }
            named = nil
            if holdsNoTree && (leader == nil || leader == node) {
                // No leader known yet: wait for one.
            } else if leader == nil || leader == node {
                do throws(DynamoError) {
                    return try await local.send(request, to: partition)
                } catch {
                    guard let hint = error.notLeader else { throw error }
                    named = hint == node ? nil : hint
                }
            } else {
                switch await cluster.call(request, partition: partition, on: leader!) {
                case .success(let reply): return reply
                case .failure(.refused(let error)):
                    guard let hint = error.notLeader else { throw error }
                    named = hint == leader ? nil : hint
                case .failure(.unsent): break
                case .failure(.unanswered):
                    throw DynamoError(
                        "InternalServerError",
                        "Internal server error: partition \(partition)'s leader did not answer;"
                            + " the request may or may not have taken effect"
                    )
                }
            }
            guard ContinuousClock.now < deadline, let reactor = Reactor.current else {
                throw DynamoError(
                    "InternalServerError", "Internal server error: partition \(partition) has no leader within reach")
            }
            try? await reactor.sleep(for: backoff)
            backoff = min(backoff * 2, .milliseconds(100))
        }
    }
}

/// The router's way to the leader in a cluster: a single-item write or strongly
/// consistent read goes whole to the node whose replica leads its partition, as this
/// node's replica knows it, and is answered there in one step, instead of one forwarded
/// partition call after another.
final class ClusterForwarder: RequestForwarder {
    let cluster: Cluster
    let partitions: [Partition]
    let node: UInt32

    init(cluster: Cluster, partitions: [Partition]) {
        self.cluster = cluster
        self.partitions = partitions
        node = cluster.configuration.node
    }

    func forward(_ request: HTTPRequest, partition: Int) async -> ForwardOutcome {
        guard partitions.indices.contains(partition), let driver = partitions[partition].replica,
            let leader = await driver.leader, leader != node
        else { return .notForwarded }
        switch await cluster.forward(request, partition: partition, to: leader) {
        case .success(let response): return .answered(response)
        case .failure(.unsent), .failure(.refused): return .notForwarded
        case .failure(.unanswered): return .unanswered
        }
    }
}
