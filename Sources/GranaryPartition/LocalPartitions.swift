import Atomics
import GranaryCommands
import GranaryIO
import GranaryModel

/// The partitions this node holds, as a `PartitionTransport`: a request is a call to the
/// partition's actor, which runs it on the partition's core.
///
/// A call from another core is a job on that core's queue, which cannot refuse one; so a
/// request that starts work takes one of the partition's permits before the hop, and a
/// partition with none left refuses it with ThrottlingException (SDKs back off and retry
/// it). A transaction's apply and release never wait for a permit: they finish work that
/// holds locks.
public final class LocalPartitions: PartitionTransport {
    public let map: PartitionMap
    private let partitions: [Partition]
    private let inFlight: [ManagedAtomic<Int>]
    private let requestsInFlightMax: Int

    /// Requests in flight per partition. The HTTP servers take at most 4096 connections
    /// per core, each with one request at a time, and a request fans out to at most 100
    /// partition requests (a batch or a transaction); this bound is met only by a burst far
    /// past what a core can serve, and keeps each core's job queue bounded then.
    public static let requestsInFlightDefault = 4096

    /// `partitions` by index; the map places items over the first `map.count` of them (a
    /// data directory written by an older build keeps its placement: `Node`).
    public init(
        _ partitions: [Partition], map: PartitionMap, requestsInFlightMax: Int = LocalPartitions.requestsInFlightDefault
    ) {
        precondition(partitions.enumerated().allSatisfy { $0.offset == $0.element.index }, "partitions out of order")
        precondition(map.count <= partitions.count, "a map over partitions this node does not hold")
        self.partitions = partitions
        self.map = map
        self.requestsInFlightMax = requestsInFlightMax
        inFlight = partitions.map { _ in ManagedAtomic(0) }
    }

    public func send(_ request: PartitionRequest, to partition: Int) async throws(DynamoError) -> PartitionReply {
        guard partitions.indices.contains(partition) else {
            throw DynamoError("InternalServerError", "Internal server error: no partition \(partition) on this node")
        }
        guard request.startsWork else { return try await partitions[partition].handle(request) }
        let counter = inFlight[partition]
        guard counter.loadThenWrappingIncrement(ordering: .relaxed) < requestsInFlightMax else {
            counter.wrappingDecrement(ordering: .relaxed)
            throw DynamoError("ThrottlingException", "Rate of requests exceeds the allowed throughput.")
        }
        defer { counter.wrappingDecrement(ordering: .relaxed) }
        return try await partitions[partition].handle(request)
    }

    public func localCore(of partition: Int) -> Int? {
        partitions.indices.contains(partition) ? partitions[partition].reactor.index : nil
    }
}
