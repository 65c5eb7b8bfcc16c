import GranaryCommands
import GranaryModel

/// Carries global index changes from the partitions that hold the items to the partitions
/// that hold the entries (`GlobalIndexOutbox`): a pass reads a page of one partition's
/// outbox and each record's item as it is now, puts the item's entries and deletes the
/// keys it left in each index partition, then drops the records shipped (those a later
/// write changed meanwhile stay for the next pass). The
/// node runs it for the partitions whose replica here leads; a pass that fails part way
/// is repeated whole, which the records' whole-entry writes make harmless.
public enum GlobalIndexShipper {
    /// Records read in one pass, and entry bytes sent in one request.
    public static let recordsPerPass = 256
    static let requestBytesMax = 256 << 10

    /// One pass over `partition`'s outbox; returns how many records it shipped.
    @discardableResult
    public static func ship(_ partition: Int, over transport: some PartitionTransport) async throws(DynamoError) -> Int
    {
        let page = try await transport.outboxPage(limit: recordsPerPass, at: partition)
        let records = page.map(\.record)
        guard !records.isEmpty else { return 0 }
        var batches: [Int: [(deletes: [[UInt8]], puts: [SystemEntry], bytes: Int)]] = [:]
        func add(_ key: [UInt8], put: SystemEntry?) {
            let target = transport.map.index(hash: KeyEncoding.hash(ofKey: key))
            var list = batches[target, default: [([], [], 0)]]
            if list[list.count - 1].bytes > requestBytesMax { list.append(([], [], 0)) }
            if let put { list[list.count - 1].puts.append(put) } else { list[list.count - 1].deletes.append(key) }
            list[list.count - 1].bytes += key.count + (put?.value.count ?? 0)
            batches[target] = list
        }
        for (record, stored) in page {
            guard let outbox = GlobalIndexOutbox(encoded: record.value) else {
                throw DynamoError("InternalServerError", "an outbox record of partition \(partition) does not decode")
            }
            // The item as it is now: a record stands for every change since it was shipped.
            let item = try stored.map { (stored) throws(DynamoError) in try StoredItem.decode(stored) }
            let (deletes, puts) = outbox.writes(for: item)
            for key in deletes { add(key, put: nil) }
            for put in puts { add(put.key, put: put) }
        }
        // All at once: a pass names each entry key once (an entry's key names its item), so
        // their order does not matter, and batches for one partition share its log's syncs.
        let work = batches.flatMap { target, list in list.map { (target, $0.deletes, $0.puts) } }
        _ = try await concurrently(work) { [transport] (target, deletes, puts) throws(DynamoError) in
            try await transport.applyIndex(deletes: deletes, puts: puts, at: target)
        }
        try await transport.settleOutbox(records, at: partition)
        return records.count
    }

    /// How many outbox records `partition` holds (for a test or an operator waiting for
    /// the global indexes to catch up), counting at most `limit`.
    public static func pending(
        _ partition: Int, over transport: some PartitionTransport, limit: Int = recordsPerPass
    ) async throws(DynamoError) -> Int {
        let reply = try await transport.send(
            .systemScan(prefix: GlobalIndexOutbox.prefix, after: nil, limit: limit), to: partition)
        guard case .entries(let records) = reply else {
            throw DynamoError("InternalServerError", "partition \(partition) answered out of protocol")
        }
        return records.count
    }
}
