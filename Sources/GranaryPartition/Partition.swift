import GranaryIO
import GranaryModel
import GranaryStorage

/// Keys from `lower` (inclusive) to `upper` (exclusive), in B-tree order.
public struct KeyRange: Sendable, Codable {
    public var lower: [UInt8]
    public var upper: [UInt8]
    public init(lower: [UInt8], upper: [UInt8]) { self.lower = lower; self.upper = upper }
}

/// One page of a range walk: the items in walk order, their DynamoDB size, the key of the
/// last one, and whether the range holds more.
public struct RangePage: Sendable, Codable {
    /// The items in their stored form (`ItemCodec`): the reader decodes what it must look
    /// into (a filter, a projection) and writes the rest out as it is stored.
    public var storedItems: [[UInt8]] = []
    public var bytes = 0
    public var lastKey: [UInt8]?
    public var more = false
}

/// One write of a committed transaction: the final image of an item (nil: deleted).
public struct TransactionWrite: Sendable {
    public var table: UInt32
    public var key: [UInt8]
    public var item: Item?
    public init(table: UInt32, key: [UInt8], item: Item?) { self.table = table; self.key = key; self.item = item }
}

/// One partition of the node: a replica (write-ahead log and B-tree) owned by one core,
/// holding the hash range `index`/`count` of every table's partition keys.
///
/// Reads and writes hop onto the owning core by calling this actor, whose executor is that
/// core's reactor: crossing cores is a message. A write is a `WriteCommand`: the partition
/// reads the stored item, checks the condition, applies the update and logs the result.
/// Writes to one key are serialized by a per-key lock, so a condition is never checked
/// against a value that another write is replacing. Writes to different keys run side by
/// side and share the log's group commit.
public actor Partition {
    public nonisolated let index: Int
    public nonisolated let reactor: Reactor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }

    private let store: ReplicaStore<ReactorStorage>
    /// Keys with a write or transaction in flight, and the writers queued behind each.
    private let keyLocks = FIFOLocks<[UInt8]>()
    /// The locked keys a transaction holds: another transaction reaching one conflicts
    /// instead of waiting, so transactions never wait for each other in a cycle.
    private var transactionKeys: Set<[UInt8]> = []
    /// Items and bytes per table in this partition (for DescribeTable), rebuilt at open.
    private var statistics: [UInt32: TableStatistics] = [:]

    public struct TableStatistics: Sendable {
        public var items = 0
        public var bytes = 0
        public init() {}
    }

    /// Opens (recovering) the partition stored in `directory`. Call on `reactor`.
    public static func open(
        index: Int, directory: String, reactor: Reactor, options: ReplicaStore<ReactorStorage>.Options
    ) async throws(StorageError) -> Partition {
        let storage = ReactorStorage(path: directory, reactor: reactor)
        let store = try await ReplicaStore.open(storage: storage, options: options, executor: reactor)
        let partition = Partition(index: index, reactor: reactor, store: store)
        try await partition.countItems()
        return partition
    }

    private init(index: Int, reactor: Reactor, store: ReplicaStore<ReactorStorage>) {
        self.index = index
        self.reactor = reactor
        self.store = store
    }

    private func countItems() async throws(StorageError) {
        var start: [UInt8]? = KeyEncoding.tablePrefix(1)  // table 0 is the catalog
        while let from = start {
            let batch = try await store.scan(from: from, limit: 1024)
            for (key, value) in batch {
                let table = UInt32(key[0]) << 24 | UInt32(key[1]) << 16 | UInt32(key[2]) << 8 | UInt32(key[3])
                statistics[table, default: TableStatistics()].items += 1
                statistics[table, default: TableStatistics()].bytes += value.count
            }
            start = batch.count == 1024 ? batch.last!.key + [0] : nil
        }
    }

    // MARK: Items

    public func getItem(_ key: [UInt8]) async throws(DynamoError) -> Item? {
        try await read(key)?.item
    }

    /// The item under `key` as it is stored (`ItemCodec`), for a reader that writes it out
    /// without needing it decoded.
    public func getStoredItem(_ key: [UInt8]) async throws(DynamoError) -> [UInt8]? {
        do throws(StorageError) {
            return try await store.get(key)
        } catch {
            throw Self.internalError(error)
        }
    }

    /// Decodes an item `getStoredItem` returned.
    public static func decode(stored: [UInt8]) throws(DynamoError) -> Item {
        do { return try ItemCodec.decode(stored) } catch { throw corrupt(error) }
    }

    /// Writes the JSON of an item `getStoredItem` returned, without decoding it.
    public static func writeJSON(stored: [UInt8], to output: inout [UInt8]) throws(DynamoError) {
        do { try ItemCodec.writeJSON(stored, to: &output) } catch { throw corrupt(error) }
    }

    /// DynamoDB's size of an item `getStoredItem` returned, without decoding it.
    public static func size(stored: [UInt8]) throws(DynamoError) -> Int {
        do { return try ItemCodec.storedSize(stored) } catch { throw corrupt(error) }
    }

    private static func corrupt(_ error: ItemCodec.DecodingError) -> DynamoError {
        DynamoError("InternalServerError", "\(error)")
    }

    /// The item under `key` (decoded only when `decoding`) and the size of its stored form.
    private func read(
        _ key: [UInt8], decoding: Bool = true
    ) async throws(DynamoError) -> (item: Item?, storedBytes: Int)? {
        guard let stored = try await getStoredItem(key) else { return nil }
        return (decoding ? try Self.decode(stored: stored) : nil, stored.count)
    }

    /// Runs a single-item write with the key locked: reads the stored item (decoded only
    /// when the command needs it), lets the command decide, and logs the result durably.
    public func execute(_ command: WriteCommand) async throws(DynamoError) -> WriteOutcome {
        await lock(command.key)
        defer { unlock(command.key) }
        let old = try await read(command.key, decoding: command.readsOld)
        let new = try command.newItem(replacing: old?.item)
        try await store(table: command.table, key: command.key, replacing: old, with: new)
        return WriteOutcome(old: old?.item, new: new)
    }

    /// A transaction's first phase in this partition: locks the commands' keys (in key
    /// order) and evaluates each command against its stored item, storing nothing. On
    /// success the keys stay locked until `unlock(transactionKeys:)` (after the commit's
    /// `applyTransaction`, or to abort). A key another transaction holds is a conflict:
    /// nothing stays locked.
    public func prepare(_ commands: [WriteCommand]) async throws(DynamoError) -> PrepareOutcome {
        let keys = commands.map(\.key).sorted { $0.lexicographicallyPrecedes($1) }
        if let conflicting = await lockForTransaction(keys) {
            return .conflict(commands.firstIndex { $0.key == conflicting }!)
        }
        var prepared: [PreparedWrite] = []
        for command in commands {
            let old: (item: Item?, storedBytes: Int)?
            do throws(DynamoError) {
                old = try await read(command.key)
            } catch {
                unlock(transactionKeys: keys)
                throw error
            }
            do throws(DynamoError) {
                let new = try command.newItem(replacing: old?.item)
                prepared.append(.ready(WriteOutcome(old: old?.item, new: new)))
            } catch {
                prepared.append(.refused(error))
            }
        }
        return .prepared(prepared)
    }

    /// A committed transaction's writes to keys it holds locked (or, at recovery, before
    /// anything else runs). Idempotent: each write is the item's final image. They run side
    /// by side, so that they share the log's group commits.
    public func applyTransaction(_ writes: [TransactionWrite]) async throws(DynamoError) {
        _ = try await concurrently(writes) { (write) throws(DynamoError) in
            try await self.store(
                table: write.table, key: write.key, replacing: self.read(write.key, decoding: false), with: write.item)
        }
    }

    /// Stores `new` (or deletes, for nil) under `key`, which holds `old`, and keeps the
    /// table's statistics.
    private func store(
        table: UInt32, key: [UInt8], replacing old: (item: Item?, storedBytes: Int)?, with new: Item?
    ) async throws(DynamoError) {
        var newBytes: Int?
        do throws(StorageError) {
            if let new {
                let encoded = ItemCodec.encode(new)
                try await store.put(key, encoded)
                newBytes = encoded.count
            } else if old != nil {
                try await store.delete(key)
            }
        } catch {
            throw Self.internalError(error)
        }
        var entry = statistics[table, default: TableStatistics()]
        if let old {
            entry.items -= 1
            entry.bytes -= old.storedBytes
        }
        if let newBytes {
            entry.items += 1
            entry.bytes += newBytes
        }
        statistics[table] = entry
    }

    /// One page of a range walk (`RangeRead`): the keys in `[lower, upper)`, forward or
    /// backward, resuming after the last key a previous page returned; it stops after
    /// `limit` items or once the items read add up to `byteLimit`, and says whether keys in
    /// the range remain.
    public func readRange(_ read: RangeRead) async throws(DynamoError) -> RangePage {
        guard read.limit > 0, read.byteLimit > 0 else {
            throw DynamoError("InternalServerError", "a range read needs a positive limit and byte limit")
        }
        let (range, after, reverse, limit, byteLimit) = (
            read.range, read.after, read.reverse, read.limit, read.byteLimit
        )
        var page = RangePage()
        // Forward: from the first key at or above the start. Backward: the store scans down
        // from its start inclusive, so an exclusive bound shows up first and is skipped.
        var start: [UInt8]? = reverse ? (after ?? range.upper) : (after.map { $0 + [0] } ?? range.lower)
        var skip: [UInt8]? = reverse ? (after ?? range.upper) : nil
        while let from = start {
            let batch: [(key: [UInt8], value: [UInt8])]
            let wanted = min(limit - page.storedItems.count, 255) + 2  // one to skip, one to see if more remain
            do throws(StorageError) {
                batch = try await store.scan(
                    from: from, reverse: reverse, bound: reverse ? range.lower : range.upper, limit: wanted)
            } catch {
                throw Self.internalError(error)
            }
            start = nil
            for (key, value) in batch {
                if let skipped = skip, key == skipped { continue }
                let inside =
                    reverse ? !key.lexicographicallyPrecedes(range.lower) : key.lexicographicallyPrecedes(range.upper)
                guard inside else { return page }
                if page.storedItems.count == limit || page.bytes >= byteLimit {
                    page.more = true
                    return page
                }
                page.bytes += try Self.size(stored: value)
                page.storedItems.append(value)
                page.lastKey = key
            }
            if batch.count == wanted, let last = batch.last {  // a short batch reached the end of the range
                start = reverse ? last.key : last.key + [0]
                skip = reverse ? last.key : nil
            }
        }
        return page
    }

    public func statistics(table: UInt32) -> TableStatistics {
        statistics[table] ?? TableStatistics()
    }

    /// Deletes every item of a deleted table, in batches, so that other work goes on
    /// between them.
    public func purge(table: UInt32) async {
        let prefix = KeyEncoding.tablePrefix(table)
        while true {
            guard let batch = try? await store.scan(from: prefix, limit: 256) else { return }
            let keys = batch.map(\.key).filter { $0.starts(with: prefix) }
            if keys.isEmpty { break }
            for key in keys {
                do throws(StorageError) { try await store.delete(key) } catch { return }
            }
        }
        statistics[table] = nil
    }

    // MARK: Raw access for the catalog (table 0)

    public func rawGet(_ key: [UInt8]) async throws(StorageError) -> [UInt8]? {
        try await store.get(key)
    }

    public func rawPut(_ key: [UInt8], _ value: [UInt8]) async throws(StorageError) {
        try await store.put(key, value)
    }

    public func rawDelete(_ key: [UInt8]) async throws(StorageError) {
        try await store.delete(key)
    }

    /// Every entry whose key starts with `prefix`, read in bounded batches.
    public func rawScan(prefix: [UInt8]) async throws(StorageError) -> [(key: [UInt8], value: [UInt8])] {
        var found: [(key: [UInt8], value: [UInt8])] = []
        var start = prefix
        while true {
            let batch = try await store.scan(from: start, limit: 256)
            let matching = batch.filter { $0.key.starts(with: prefix) }
            found += matching
            guard matching.count == 256 else { return found }
            start = matching.last!.key + [0]
        }
    }

    public func close() async {
        await store.close()
    }

    // MARK: Key locks

    private func lock(_ key: [UInt8]) async {
        precondition(reactor.isOwnerThread, "partition \(index) ran off its core")
        await keyLocks.acquire(key)
    }

    private func unlock(_ key: [UInt8]) {
        keyLocks.release(key)  // the lock passes straight to the next writer of this key
    }

    /// Locks `keys` for a transaction, in order. A key held by another transaction is a
    /// conflict: the keys taken so far are released and the conflicting one returned. A key
    /// held by a single-item write is waited for (that write is short and waits for
    /// nothing else).
    public func lockForTransaction(_ keys: [[UInt8]]) async -> [UInt8]? {
        for (position, key) in keys.enumerated() {
            if transactionKeys.contains(key) {
                unlock(transactionKeys: Array(keys[..<position]))
                return key
            }
            await lock(key)
            transactionKeys.insert(key)
        }
        return nil
    }

    public func unlock(transactionKeys keys: [[UInt8]]) {
        for key in keys {
            precondition(transactionKeys.remove(key) != nil, "a transaction unlocks a key it does not hold")
            unlock(key)
        }
    }

    static func internalError(_ error: StorageError) -> DynamoError {
        DynamoError("InternalServerError", "Internal server error: \(error)")
    }
}
