import GranaryModel

// The partition's whole interface: a request and its reply, plain Codable values. The
// router, the catalog and the transaction coordinator reach a partition only through a
// `PartitionTransport` and these two types, so a partition on this core, on another core
// and (with replication) a leader on another node are one code path.

/// One attempt of one transaction: the owner of the keys it locks in each partition. A
/// fresh id per attempt (not the client's request token, which two concurrent requests
/// may share), so that releasing one attempt's locks never frees another's.
public struct TransactionID: Hashable, Sendable, Codable, CustomStringConvertible {
    public var value: String
    public init(_ value: String) { self.value = value }
    public var description: String { value }
}

/// Items and bytes of one table in one partition (DescribeTable sums them).
public struct TableStatistics: Sendable, Codable, Equatable {
    public var items = 0
    public var bytes = 0
    public init(items: Int = 0, bytes: Int = 0) {
        self.items = items
        self.bytes = bytes
    }
}

/// One of the node's own records (table id 0: the catalog, the transaction ledger).
public struct SystemEntry: Sendable, Codable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

/// What a partition is asked to do.
public enum PartitionRequest: Sendable, Codable {
    /// The item stored under a key, in its stored form (`StoredItem`). Reply: `.item`.
    /// An eventually consistent read (`consistent` false) may be answered by any replica.
    case get(key: [UInt8], consistent: Bool = true)
    /// A single-item write, evaluated against the stored item. Reply: `.written`.
    case write(WriteCommand)
    /// One page of a Query or Scan. Reply: `.page`.
    case readRange(RangeRead)
    /// A transaction's first phase: lock the commands' keys for the transaction and
    /// evaluate each command. When every command may go ahead, the locks become durable
    /// (a `TransactionLock` record naming the partition `coordinator`, whose ledger
    /// decides), so that they outlive a change of leader. Reply: `.prepared`.
    case prepare(TransactionID, [WriteCommand], coordinator: Int)
    /// Lock keys for a transaction that only reads them, in the leader's memory only.
    /// Reply: `.locked`.
    case lock(TransactionID, keys: [[UInt8]])
    /// A committed transaction's writes here (final images, possibly none), stored
    /// together with the removal of its lock record, and its locks released. Only while
    /// the transaction holds its locks: once they are gone (applied already, or aborted)
    /// it changes nothing. Reply: `.done`.
    case apply(TransactionID, [TransactionWrite])
    /// Aborts: drops the transaction's lock record, if any, and releases its keys here.
    /// Reply: `.released`, saying whether it held any (a read-only transaction's locks are
    /// lost with a change of leader, and then its reads were not isolated).
    case release(TransactionID)
    /// Reply: `.statistics`.
    case statistics(table: UInt32)
    /// Delete every item of a deleted table. Reply: `.done`.
    case purge(table: UInt32)
    /// The node's own records, under table id 0 only. Replies: `.item`, `.done`,
    /// `.done`, and `.entries` (at most `limit`, keys after `after`, in key order).
    case systemGet(key: [UInt8])
    case systemPut(key: [UInt8], value: [UInt8])
    case systemDelete(key: [UInt8])
    case systemScan(prefix: [UInt8], after: [UInt8]?, limit: Int)
    /// Stores every one of `entries` in one log entry, unless a record is already under
    /// any of their keys; refused when this replica's wall clock is past `deadline` (seconds
    /// since 1970), if given. Reply: `.entries` with the records found (none: stored).
    case systemCreate(entries: [SystemEntry], deadline: Double?)
    /// This node's replica of the partition as it sees itself, leader or not (for an
    /// operator's `GET /cluster`). Reply: `.replica` (nil on a node alone).
    case replicaStatus
    /// Global index entries shipped from a base partition's outbox (`GlobalIndexOutbox`):
    /// deleted and put together, whole. Reply: `.done`.
    case applyIndex(deletes: [[UInt8]], puts: [SystemEntry])
    /// Drops each outbox record that still holds the value shipped. Reply: `.done`.
    case settleOutbox([SystemEntry])
    /// The first `limit` outbox records, each with its item as stored now (nil: deleted).
    /// Reply: `.outbox`.
    case outboxPage(limit: Int)
    /// A global index's backfill: an outbox record (shipping every one of `indexes`) for
    /// each of the next `limit` items of table `table` after `after`. Reply: `.progress`
    /// with the last item's key, nil once the table has no more.
    case backfill(table: UInt32, indexes: IndexMaintenance, after: [UInt8]?, limit: Int)
    /// The version of table `table`'s global index set (`TableInfo.indexVersion`) is at
    /// least `version`: from then on, a write to the table that carries an older version
    /// (routed by a node whose catalog has not caught up) is refused. Reply: `.done`.
    case indexVersion(table: UInt32, version: Int)

    /// Whether the request starts work, rather than finishing work the partition already
    /// admitted (a transaction's apply and release, which hold locks until they run): a
    /// saturated partition may refuse the first kind, never the second.
    public var startsWork: Bool {
        switch self {
        case .apply, .release: false
        default: true
        }
    }
}

/// What a partition answers.
public enum PartitionReply: Sendable, Codable {
    case done
    case item([UInt8]?)
    case written(WriteOutcome)
    case page(RangePage)
    case prepared(PrepareOutcome)
    /// nil: every key is locked. Otherwise the index (in the request's order) of a key
    /// another transaction holds, and nothing stays locked.
    case locked(conflict: Int?)
    case released(held: Bool)
    case statistics(TableStatistics)
    case entries([SystemEntry])
    case replica(ReplicaReport?)
    case outbox(records: [SystemEntry], items: [[UInt8]?])
    /// A backfill's page: its last item's key (nil at the table's end), and how many of
    /// its items have a key attribute of an index being built that the index cannot take.
    case progress(last: [UInt8]?, keyViolations: Int)
}

/// One replica of a partition's group, as it sees itself: its role (`leader`,
/// `candidate`, `follower`, `log-only`, or `recovering` after it lost its disk), how far
/// its log is chosen and its tree applied, and why it stopped, if it did.
public struct ReplicaReport: Sendable, Codable, Equatable {
    public var node: UInt32
    public var role: String
    public var chosen: UInt64
    public var applied: UInt64
    public var failure: String?

    public init(node: UInt32, role: String, chosen: UInt64, applied: UInt64, failure: String?) {
        self.node = node
        self.role = role
        self.chosen = chosen
        self.applied = applied
        self.failure = failure
    }
}

/// How requests reach partitions: by an actor call to the core that owns a partition on
/// this node, or (with replication) over the network to a partition's leader.
public protocol PartitionTransport: Sendable {
    /// Which partition owns a partition key.
    var map: PartitionMap { get }
    /// Sends `request` to partition `partition` and waits for the reply. Throws the
    /// partition's DynamoDB error, or ThrottlingException when it is saturated.
    func send(_ request: PartitionRequest, to partition: Int) async throws(DynamoError) -> PartitionReply
    /// The core of this node that serves `partition`, if this node serves it: a request
    /// handled on that core reaches the partition without crossing cores.
    func localCore(of partition: Int) -> Int?
}

/// The requests as typed calls, each checking that the reply is the one its request
/// expects (its kind, and indexes and counts that match the request): a reply is data
/// from another node, and a wrong one must be an error, never a trap in the router.
extension PartitionTransport {
    public func get(_ key: [UInt8], at partition: Int, consistent: Bool = true) async throws(DynamoError) -> [UInt8]? {
        guard case .item(let stored) = try await send(.get(key: key, consistent: consistent), to: partition) else {
            throw unexpected(partition)
        }
        return stored
    }

    public func execute(_ command: WriteCommand, at partition: Int) async throws(DynamoError) -> WriteOutcome {
        guard case .written(let outcome) = try await send(.write(command), to: partition) else {
            throw unexpected(partition)
        }
        return outcome
    }

    public func readRange(_ read: RangeRead, at partition: Int) async throws(DynamoError) -> RangePage {
        guard case .page(let page) = try await send(.readRange(read), to: partition) else {
            throw unexpected(partition)
        }
        return page
    }

    public func prepare(
        _ transaction: TransactionID, _ commands: [WriteCommand], coordinator: Int, at partition: Int
    ) async throws(DynamoError) -> PrepareOutcome {
        let reply = try await send(.prepare(transaction, commands, coordinator: coordinator), to: partition)
        switch reply {
        case .prepared(.prepared(let writes)) where writes.count == commands.count: return .prepared(writes)
        case .prepared(.conflict(let index)) where commands.indices.contains(index): return .conflict(index)
        default: throw unexpected(partition)
        }
    }

    /// Locks `keys` for `transaction`; returns the index of a key another transaction
    /// holds (nothing then stays locked), or nil.
    public func lock(
        _ transaction: TransactionID, keys: [[UInt8]], at partition: Int
    ) async throws(DynamoError) -> Int? {
        guard case .locked(let conflict) = try await send(.lock(transaction, keys: keys), to: partition),
            conflict.map(keys.indices.contains) ?? true
        else { throw unexpected(partition) }
        return conflict
    }

    public func apply(
        _ transaction: TransactionID, _ writes: [TransactionWrite], at partition: Int
    ) async throws(DynamoError) {
        guard case .done = try await send(.apply(transaction, writes), to: partition) else {
            throw unexpected(partition)
        }
    }

    /// Aborts `transaction` here; returns whether it held any key.
    @discardableResult
    public func release(_ transaction: TransactionID, at partition: Int) async throws(DynamoError) -> Bool {
        guard case .released(let held) = try await send(.release(transaction), to: partition) else {
            throw unexpected(partition)
        }
        return held
    }

    public func statistics(table: UInt32, at partition: Int) async throws(DynamoError) -> TableStatistics {
        guard case .statistics(let statistics) = try await send(.statistics(table: table), to: partition) else {
            throw unexpected(partition)
        }
        return statistics
    }

    /// Raises the version of `table`'s global index set that writes must carry here.
    public func announceIndexVersion(
        _ version: Int, table: UInt32, at partition: Int
    ) async throws(DynamoError) {
        guard case .done = try await send(.indexVersion(table: table, version: version), to: partition) else {
            throw unexpected(partition)
        }
    }

    public func purge(table: UInt32, at partition: Int) async throws(DynamoError) {
        guard case .done = try await send(.purge(table: table), to: partition) else { throw unexpected(partition) }
    }

    public func systemGet(_ key: [UInt8], at partition: Int) async throws(DynamoError) -> [UInt8]? {
        guard case .item(let value) = try await send(.systemGet(key: key), to: partition) else {
            throw unexpected(partition)
        }
        return value
    }

    public func systemPut(_ key: [UInt8], _ value: [UInt8], at partition: Int) async throws(DynamoError) {
        guard case .done = try await send(.systemPut(key: key, value: value), to: partition) else {
            throw unexpected(partition)
        }
    }

    public func systemDelete(_ key: [UInt8], at partition: Int) async throws(DynamoError) {
        guard case .done = try await send(.systemDelete(key: key), to: partition) else {
            throw unexpected(partition)
        }
    }

    /// Stores `entries` together unless a record is under any of their keys (see
    /// `PartitionRequest.systemCreate`); returns the records found, none when it stored.
    public func systemCreate(
        _ entries: [SystemEntry], deadline: Double? = nil, at partition: Int
    ) async throws(DynamoError) -> [SystemEntry] {
        let keys = Set(entries.map(\.key))
        guard
            case .entries(let found) = try await send(
                .systemCreate(entries: entries, deadline: deadline), to: partition),
            found.allSatisfy({ keys.contains($0.key) })
        else { throw unexpected(partition) }
        return found
    }

    /// Every system record whose key starts with `prefix`, read a page at a time.
    public func systemScan(prefix: [UInt8], at partition: Int) async throws(DynamoError) -> [SystemEntry] {
        var found: [SystemEntry] = []
        var after: [UInt8]? = nil
        while true {
            let request = PartitionRequest.systemScan(prefix: prefix, after: after, limit: Self.systemPageMax)
            guard case .entries(let page) = try await send(request, to: partition) else { throw unexpected(partition) }
            found += page
            guard page.count == Self.systemPageMax, let last = page.last else { return found }
            after = last.key
        }
    }

    public func applyIndex(
        deletes: [[UInt8]], puts: [SystemEntry], at partition: Int
    ) async throws(DynamoError) {
        guard case .done = try await send(.applyIndex(deletes: deletes, puts: puts), to: partition) else {
            throw unexpected(partition)
        }
    }

    /// Queues the next `limit` items of `table` after `after` for `indexes` (a backfill);
    /// returns the last one's key, nil once none is left, and the page's index key
    /// violations (`PartitionReply.progress`).
    public func backfill(
        table: UInt32, indexes: IndexMaintenance, after: [UInt8]?, limit: Int, at partition: Int
    ) async throws(DynamoError) -> (last: [UInt8]?, keyViolations: Int) {
        let request = PartitionRequest.backfill(table: table, indexes: indexes, after: after, limit: limit)
        guard case .progress(let last, let violations) = try await send(request, to: partition) else {
            throw unexpected(partition)
        }
        return (last, violations)
    }

    /// The first `limit` outbox records of `partition`, each with its item as stored now.
    public func outboxPage(
        limit: Int, at partition: Int
    ) async throws(DynamoError) -> [(record: SystemEntry, item: [UInt8]?)] {
        guard case .outbox(let records, let items) = try await send(.outboxPage(limit: limit), to: partition),
            records.count == items.count, records.count <= limit
        else { throw unexpected(partition) }
        return Array(zip(records, items))
    }

    public func settleOutbox(_ records: [SystemEntry], at partition: Int) async throws(DynamoError) {
        guard case .done = try await send(.settleOutbox(records), to: partition) else { throw unexpected(partition) }
    }

    /// System records per page of `systemScan`.
    public static var systemPageMax: Int { 256 }

    private func unexpected(_ partition: Int) -> DynamoError {
        DynamoError("InternalServerError", "Internal server error: partition \(partition) answered out of protocol")
    }
}

extension PartitionRequest {
    /// Whether only the partition's leader may answer it: writes, a transaction's steps,
    /// strongly consistent reads, the node's own records, and the item counts (which
    /// the leader keeps as it writes).
    public var needsLeader: Bool {
        switch self {
        case .get(_, let consistent): consistent
        case .readRange(let read): read.consistent
        case .replicaStatus: false
        default: true
        }
    }
}

extension DynamoError {
    /// A write routed with an older version of its table's global indexes than its
    /// partition has been told of: refused before anything is written. The client retries
    /// (a throttling error, which every SDK retries), by when the router's catalog has
    /// caught up.
    public static let staleIndexes = DynamoError(
        "ThrottlingException", "The table's global secondary indexes changed while this request was routed: retry it")

    /// The `type` of a replica's refusal because it does not lead its group: a transport
    /// tries the leader instead, and it never reaches a client.
    public static let notLeaderType = "granary.NotLeader"

    /// A replica's refusal because it does not lead; `leader` is the leader it knows of.
    public static func notLeader(_ leader: UInt32?) -> DynamoError {
        DynamoError(notLeaderType, leader.map { "leader \($0)" } ?? "no leader known", namespace: "granary")
    }

    /// For a `notLeader` refusal, the leader it named, if any; nil for every other error.
    public var notLeader: UInt32?? {
        guard type == Self.notLeaderType else { return nil }
        return .some(message.hasPrefix("leader ") ? UInt32(message.dropFirst(7)) : nil)
    }
}
