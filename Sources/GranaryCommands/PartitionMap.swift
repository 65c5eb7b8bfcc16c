import GranaryModel

/// Which partition owns a partition key: the 64-bit hash space of partition keys
/// (`KeyEncoding.hash`) cut into `count` consecutive ranges, partition 0 the lowest. The
/// count belongs to the data (fixed when a data directory is created), not to the number
/// of cores serving it; the router sends each command to the partition this names.
public struct PartitionMap: Sendable, Codable, Equatable {
    public let count: Int

    public init(count: Int) {
        precondition(count > 0, "a map of no partitions")
        self.count = count
    }

    /// The partition that owns hash `hash`.
    public func index(hash: UInt64) -> Int {
        Int(((hash >> 32) &* UInt64(count)) >> 32)
    }

    /// The partition that owns items with this partition key.
    public func index(of partitionKey: AttributeValue) -> Int {
        index(hash: KeyEncoding.hash(partitionKey))
    }
}
