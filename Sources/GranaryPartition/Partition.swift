import Foundation
import GranaryCommands
import GranaryIO
import GranaryModel
import GranaryPaxos
import GranaryReplication
import GranaryStorage

/// One partition of the node: a replica (write-ahead log and B-tree) owned by one core,
/// holding the hash range `index`/`count` of every table's partition keys.
///
/// Its whole interface is `handle(_:)`: a `PartitionRequest` in, a `PartitionReply` out
/// (`LocalPartitions` makes the call; the router never sees this type). The call hops onto
/// the owning core, since this actor's executor is that core's reactor: crossing cores is
/// a message. A write is a `WriteCommand`: the partition reads the stored item, checks the
/// condition, applies the update and logs the result.
/// Writes to one key are serialized by a per-key lock, so a condition is never checked
/// against a value that another write is replacing. Writes to different keys run side by
/// side and share the log's group commit.
public actor Partition {
    public nonisolated let index: Int
    public nonisolated let reactor: Reactor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }

    private let store: ReplicaStore<ReactorStorage>
    /// In a cluster, the partition's replica of its replication group: writes go through
    /// it, and only its leader writes or answers strongly consistent reads. Alone, the
    /// store is a group of one of its own.
    private let driver: ReplicationDriver<ReactorStorage>?
    private let clock: ReplicaClock?
    /// Keys with a write or transaction in flight, and the writers queued behind each.
    private let keyLocks = FIFOLocks<[UInt8]>()
    /// The locked keys each transaction holds: another transaction reaching one conflicts
    /// instead of waiting, so transactions never wait for each other in a cycle.
    private var transactionLocks: [TransactionID: [[UInt8]]] = [:]
    private var transactionKeys: Set<[UInt8]> = []
    /// The transactions whose locks here are durable (a `TransactionLock` record).
    private var recordedLocks: Set<TransactionID> = []
    /// The term (the leader's ballot; nil alone) whose lock table this is: a leader locks
    /// every recorded transaction's keys again when it takes over, before it serves.
    private var locksTerm: Ballot?
    private var locksLoaded = false
    /// Changes whenever the lock table is dropped or loaded again: a request that waited
    /// for a key across such a change was admitted in another term, and is refused.
    private var locksEpoch = 0
    /// The version of each table's global index set that writes must carry here
    /// (`PartitionRequest.indexVersion`), as read from its record while this replica
    /// leads (forgotten with the locks when it stops).
    private var indexVersions: [UInt32: Int] = [:]
    private var loadingLocks: Task<DynamoError?, Never>?
    /// Items and bytes per table in this partition (for DescribeTable), rebuilt at open.
    private var statistics: [UInt32: TableStatistics] = [:]
    /// Items whose global index changes wait in this partition's outbox (kept by the
    /// leader as it writes and ships, counted again by a new leader), and the most that
    /// may: past it, writes that would add one are throttled until shipping catches up.
    private var outboxRecords = 0
    static let outboxRecordsMax = 50_000

    /// How a partition takes part in its replication group.
    public struct Replication: Sendable {
        public var configuration: Replica.Configuration
        /// Where its messages go.
        public var environment: any ReplicaEnvironment
        /// The length of one of the core's ticks (`Replica.Configuration` counts in ticks).
        public var tick: Duration
        /// How fast this replica's clock runs against the machine's (1: as fast). Other
        /// values only in tests of the lease's drift bound.
        public var clockRate: Double = 1
        /// The member that should lead the group when it can (leaders spread over the
        /// nodes), or nil while it cannot (unreachable, or there is none).
        public var preferredLeader: @Sendable () -> UInt32? = { nil }

        public init(configuration: Replica.Configuration, environment: any ReplicaEnvironment, tick: Duration) {
            self.configuration = configuration
            self.environment = environment
            self.tick = tick
        }
    }

    /// Opens (recovering) the partition stored in `directory`, alone or (`replication`) as
    /// a member of its group. Call on `reactor`.
    public static func open(
        index: Int, directory: String, reactor: Reactor, options: ReplicaStore<ReactorStorage>.Options,
        replication: Replication? = nil
    ) async throws(StorageError) -> Partition {
        let storage = ReactorStorage(path: directory, reactor: reactor)
        let partition: Partition
        if let replication {
            let driver = try await ReplicationDriver.open(
                storage: storage, configuration: replication.configuration, storeOptions: options, executor: reactor,
                environment: replication.environment)
            let clock = ReplicaClock(
                tick: replication.tick, rate: replication.clockRate, preferredLeader: replication.preferredLeader)
            partition = Partition(index: index, reactor: reactor, store: driver.store, driver: driver, clock: clock)
            Task(executorPreference: reactor) { await partition.runClock() }
        } else {
            let store = try await ReplicaStore.open(storage: storage, options: options, executor: reactor)
            partition = Partition(index: index, reactor: reactor, store: store, driver: nil, clock: nil)
        }
        try await partition.countItems()
        return partition
    }

    private init(
        index: Int, reactor: Reactor, store: ReplicaStore<ReactorStorage>, driver: ReplicationDriver<ReactorStorage>?,
        clock: ReplicaClock?
    ) {
        self.index = index
        self.reactor = reactor
        self.store = store
        self.driver = driver
        self.clock = clock
    }

    /// The replication driver, in a cluster (for its messages and its state).
    public nonisolated var replica: ReplicationDriver<ReactorStorage>? { driver }

    private func countItems() async throws(StorageError) {
        outboxRecords = 0
        var after: [UInt8]? = nil
        while true {  // the global indexes' outbox, under table 0
            let batch = try await store.scan(
                from: after.map { $0 + [0] } ?? GlobalIndexOutbox.prefix,
                bound: KeyEncoding.prefixEnd(GlobalIndexOutbox.prefix),
                limit: 1024)
            outboxRecords += batch.count
            guard batch.count == 1024, let last = batch.last else { break }
            after = last.key
        }
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

    // MARK: Requests

    /// Carries out one request. Everything in it is checked here, as it will be when it
    /// comes from another node: a bad request is an error, never a trap.
    public func handle(_ request: PartitionRequest) async throws(DynamoError) -> PartitionReply {
        if request.needsLeader { try await requireLeadership() }
        let epoch = locksEpoch
        switch request {
        case .get(let key, _):
            try Self.checkItemKey(key)
            return .item(try await storeCall { () throws(StorageError) in try await store.get(key) })
        case .write(let command):
            try Self.checkItemKey(command.key, table: command.table)
            return .written(try await execute(command, epoch: epoch))
        case .readRange(let read):
            try Self.checkItemKey(read.range.lower)
            return .page(try await readRange(read))
        case .prepare(let transaction, let commands, let coordinator):
            for command in commands { try Self.checkItemKey(command.key, table: command.table) }
            guard coordinator >= 0 else { throw Self.refused("a transaction coordinated by partition \(coordinator)") }
            return .prepared(try await prepare(transaction, commands, coordinator: coordinator, epoch: epoch))
        case .lock(let transaction, let keys):
            for key in keys { try Self.checkItemKey(key) }
            return .locked(conflict: try await lock(transaction, keys, epoch: epoch))
        case .apply(let transaction, let writes):
            for write in writes { try Self.checkItemKey(write.key, table: write.table) }
            try await applyTransaction(transaction, writes)
            return .done
        case .release(let transaction):
            return .released(held: try await abort(transaction))
        case .statistics(let table):
            return .statistics(statistics[table] ?? TableStatistics())
        case .purge(let table):
            guard table != 0 else { throw Self.refused("a purge of the node's own records") }
            await purge(table: table)
            return .done
        case .systemGet(let key):
            try Self.checkSystemKey(key)
            return .item(try await storeCall { () throws(StorageError) in try await store.get(key) })
        case .systemPut(let key, let value):
            try Self.checkSystemKey(key)
            try await commit([.put(key: key, value: value)])
            return .done
        case .systemDelete(let key):
            try Self.checkSystemKey(key)
            try await commit([.delete(key: key)])
            return .done
        case .systemScan(let prefix, let after, let limit):
            try Self.checkSystemKey(prefix)
            guard (1...Self.systemScanMax).contains(limit) else {
                throw Self.refused("a system scan limit of \(limit)")
            }
            return .entries(try await systemScan(prefix: prefix, after: after, limit: limit))
        case .systemCreate(let entries, let deadline):
            for entry in entries { try Self.checkSystemKey(entry.key) }
            guard Set(entries.map(\.key)).count == entries.count else { throw Self.refused("a record named twice") }
            return .entries(try await create(entries, deadline: deadline, epoch: epoch))
        case .replicaStatus:
            return .replica(await replicaReport())
        case .applyIndex, .settleOutbox, .outboxPage, .backfill, .indexVersion:
            return try await handleGlobalIndex(request, epoch: epoch)
        }
    }

    /// The requests that keep global indexes (`GlobalIndexOutbox`).
    private func handleGlobalIndex(_ request: PartitionRequest, epoch: Int) async throws(DynamoError) -> PartitionReply
    {
        switch request {
        case .applyIndex(let deletes, let puts):
            for key in deletes + puts.map(\.key) { try Self.checkItemKey(key) }
            try await applyIndex(deletes: deletes, puts: puts)
            return .done
        case .outboxPage(let limit):
            guard (1...Self.systemScanMax).contains(limit) else { throw Self.refused("an outbox page of \(limit)") }
            let records = try await systemScan(prefix: GlobalIndexOutbox.prefix, after: nil, limit: limit)
            var items: [[UInt8]?] = []
            for record in records {
                guard let item = GlobalIndexOutbox.item(of: record.key) else { throw Self.refused("an outbox key") }
                items.append(try await storeCall { () throws(StorageError) in try await store.get(item) })
            }
            return .outbox(records: records, items: items)
        case .indexVersion(let table, let version):
            guard table != 0, version >= 0 else { throw Self.refused("index version \(version) of table \(table)") }
            let key = Self.indexVersionKey(table)
            try await withKeysLocked([key], epoch: epoch) { () throws(DynamoError) in
                let current = try await indexVersion(of: table)
                guard version > current else { return }
                try await commit([.put(key: key, value: Array(String(version).utf8))])
                indexVersions[table] = version
            }
            return .done
        case .backfill(let table, let indexes, let after, let limit):
            guard table != 0, (1...Self.systemScanMax).contains(limit) else {
                throw Self.refused("a backfill of table \(table), \(limit) items")
            }
            if let after { try Self.checkItemKey(after, table: table) }
            let (last, violations) = try await backfill(
                table: table, indexes: indexes, after: after, limit: limit, epoch: epoch)
            return .progress(last: last, keyViolations: violations)
        case .settleOutbox(let records):
            for record in records where GlobalIndexOutbox.item(of: record.key) == nil {
                throw Self.refused("an outbox record under \(record.key)")
            }
            try await settleOutbox(records, epoch: epoch)
            return .done
        default:
            throw Self.refused("a request that is not a global index's")
        }
    }

    /// This node's replica, as `GET /cluster` shows it; nil alone.
    public func replicaReport() async -> ReplicaReport? {
        guard let driver else { return nil }
        let status = await driver.status
        let role: String
        switch status.role {
        case .leader: role = "leader"
        case .candidate: role = "candidate"
        case .follower where status.recovering: role = "recovering"
        case .follower: role = await driver.replica.configuration.isLogOnly ? "log-only" : "follower"
        }
        return ReplicaReport(
            node: await driver.replica.configuration.id, role: role, chosen: status.chosen, applied: status.applied,
            failure: status.failure)
    }

    /// System records per `systemScan` reply, at most.
    static let systemScanMax = 1024

    /// In a group, only a leader that may serve strong reads (its lease is valid, and its
    /// tree holds every slot chosen before it was elected) evaluates writes and answers
    /// reads: anyone else refuses with `notLeader`, for the caller to try the leader.
    private func requireLeadership() async throws(DynamoError) {
        var term: Ballot?
        if let driver, let clock {
            await clock.catchUp(driver)  // a paused process must see its lease expired
            guard let ballot = await driver.servingBallot else { throw .notLeader(await driver.replica.leader) }
            term = ballot
        }
        if !locksLoaded || locksTerm != term { try await loadLocks() }
    }

    /// Whether this replica serves its partition's writes: it leads its group, or it is
    /// alone.
    public var leads: Bool {
        get async {
            guard let driver else { return true }
            return await driver.replica.role == .leader
        }
    }

    /// Ticks the replica while it is open, at the clock's rate; `catchUp` also ticks
    /// before each strong read or write, so a lease never outlives the time it stood for.
    private func runClock() async {
        guard let driver, let clock else { return }
        var untilTransfer = ReplicaClock.transferTicks
        var transferTicks = ReplicaClock.transferTicks
        var leads = false
        while await driver.failure == nil {
            do { try await reactor.sleep(for: clock.tick) } catch { return }
            if clock.closed { return }
            await clock.catchUp(driver)
            // A new leader counts the items again: the counts are kept by the leader's
            // writes, and other leaders wrote since this replica last counted.
            let leadsNow = await driver.replica.role == .leader
            if leadsNow && !leads {
                statistics = [:]
                try? await countItems()
            }
            if leads && !leadsNow { dropLocks() }
            leads = leadsNow
            // A leader that is not the preferred one hands over to it when it is
            // reachable, less often each time it fails to take over (it may be paused).
            untilTransfer -= 1
            guard untilTransfer <= 0 else { continue }
            let status = await driver.status
            let preferred = clock.preferredLeader()
            if status.role == .leader, let preferred, preferred != status.leader {
                _ = await driver.transferLeadership(to: preferred)
                transferTicks = min(transferTicks * 2, ReplicaClock.transferTicksMax)
            } else if status.role != .leader || preferred == status.leader {
                transferTicks = ReplicaClock.transferTicks
            }
            untilTransfer = transferTicks
        }
    }

    /// An item key belongs to a user table (id 1 and up), and to `table` when given.
    private static func checkItemKey(_ key: [UInt8], table: UInt32? = nil) throws(DynamoError) {
        guard key.count >= KeyEncoding.tablePrefixBytes, !key.starts(with: KeyEncoding.tablePrefix(0)) else {
            throw refused("an item key outside every user table")
        }
        if let table, table == 0 || !key.starts(with: KeyEncoding.tablePrefix(table)) {
            throw refused("an item key outside its table \(table)")
        }
    }

    private static func checkSystemKey(_ key: [UInt8]) throws(DynamoError) {
        guard key.starts(with: KeyEncoding.tablePrefix(0)) else { throw refused("a system key outside table 0") }
    }

    private static func refused(_ what: String) -> DynamoError {
        DynamoError("InternalServerError", "Internal server error: a partition refused \(what)")
    }

    /// Runs a store operation, reporting a storage failure as DynamoDB's internal error.
    private func storeCall<T>(_ body: () async throws(StorageError) -> T) async throws(DynamoError) -> T {
        do throws(StorageError) { return try await body() } catch { throw Self.internalError(error) }
    }

    /// The item under `key` (decoded only when `decoding`) and the size of its stored form.
    private func read(
        _ key: [UInt8], decoding: Bool = true
    ) async throws(DynamoError) -> (item: Item?, storedBytes: Int)? {
        guard let stored = try await storeCall({ () throws(StorageError) in try await store.get(key) }) else {
            return nil
        }
        return (decoding ? try StoredItem.decode(stored) : nil, stored.count)
    }

    /// Runs a single-item write with the key locked: reads the stored item (decoded only
    /// when the command needs it), lets the command decide, and logs the result durably.
    private func execute(_ command: WriteCommand, epoch: Int) async throws(DynamoError) -> WriteOutcome {
        try await lock(command.key, epoch: epoch)
        defer { unlock(command.key) }
        try await checkIndexVersion(command)
        let old = try await read(command.key, decoding: command.readsOld)
        let new = try command.newItem(replacing: old?.item)
        // Only a table with local indexes has item collections.
        guard let indexes = command.indexes, !indexes.localIndexes.isEmpty, command.writes,
            let partitionKey = (new ?? old?.item)?[indexes.partitionKey]
        else {
            try await store(table: command.table, key: command.key, replacing: old, with: new, indexes: command.indexes)
            return WriteOutcome(old: old?.item, new: new)
        }
        // The item's collection: its size changes in the same log entry, under its lock.
        let collection = IndexMaintenance.collectionKey(table: command.table, partitionKey: partitionKey)
        try await lock(collection, epoch: epoch)
        defer { unlock(collection) }
        let before = try await collectionBytes(collection)
        let delta = indexes.collectionBytes(of: new) - indexes.collectionBytes(of: old?.item)
        if delta > 0 && before + delta > IndexMaintenance.collectionBytesMax {
            throw .itemCollectionSizeLimitExceeded()
        }
        try await store(
            table: command.table, key: command.key, replacing: old, with: new, indexes: indexes,
            collection: (collection, before + delta))
        return WriteOutcome(old: old?.item, new: new, collectionBytes: before + delta)
    }

    /// The write of the item's outbox record (`GlobalIndexOutbox`) for a change from `old`
    /// to `new`, folded into the record still there; nil when no global index changes.
    /// With the item's key locked.
    private func outboxWrite(
        _ indexes: IndexMaintenance, item: [UInt8], old: Item?, new: Item?, throttles: Bool = true
    ) async throws(DynamoError) -> StoreWrite? {
        guard !indexes.globalIndexes.isEmpty, let change = GlobalIndexOutbox.changes(indexes, old: old, new: new)
        else { return nil }
        let key = GlobalIndexOutbox.key(item: item)
        let pending = try await storeCall({ () throws(StorageError) in try await store.get(key) })
            .flatMap(GlobalIndexOutbox.init(encoded:))
        if pending == nil {
            guard outboxRecords < Self.outboxRecordsMax || !throttles else {
                throw DynamoError(
                    "ThrottlingException",
                    "Throughput exceeds the current capacity of your table's global secondary indexes: their updates "
                        + "are behind, retry later")
            }
            outboxRecords += 1
        }
        return .put(key: key, value: change.merged(after: pending).encoded)
    }

    /// Global index entries from another partition's outbox, stored together, with the
    /// index's statistics kept.
    private func applyIndex(deletes: [[UInt8]], puts: [SystemEntry]) async throws(DynamoError) {
        var counts: [(table: UInt32, old: Int?, new: Int?)] = []
        for key in deletes + puts.map(\.key) {
            let old = try await storeCall({ () throws(StorageError) in try await store.get(key) })?.count
            counts.append((KeyEncoding.table(of: key), old, nil))
        }
        for (position, put) in puts.enumerated() { counts[deletes.count + position].new = put.value.count }
        try await commit(deletes.map { .delete(key: $0) } + puts.map { .put(key: $0.key, value: $0.value) })
        for change in counts where change.old != nil || change.new != nil {
            count(table: change.table, old: change.old, new: change.new)
        }
    }

    /// Queues the next `limit` items of `table` for shipping to `indexes` (every global
    /// index of the table, a new one among them): an outbox record each, folded into the
    /// one there, with the items locked so that no write comes between. Returns the last
    /// item's key, nil at the table's end, and how many items have a key attribute an
    /// index being built cannot take (of another type, empty, too long: DynamoDB's index
    /// key violations, which it skips).
    private func backfill(
        table: UInt32, indexes: IndexMaintenance, after: [UInt8]?, limit: Int, epoch: Int
    ) async throws(DynamoError) -> (last: [UInt8]?, keyViolations: Int) {
        let prefix = KeyEncoding.tablePrefix(table)
        let batch = try await storeCall { () throws(StorageError) in
            try await store.scan(
                from: after.map { $0 + [0] } ?? prefix, bound: KeyEncoding.prefixEnd(prefix), limit: limit)
        }
        let building = indexes.globalIndexes.filter(\.creating).map {
            IndexMaintenance(partitionKey: indexes.partitionKey, sortKey: indexes.sortKey, indexes: [$0])
        }
        var violations = 0
        if !building.isEmpty {
            for (_, value) in batch {
                guard let item = try? StoredItem.decode(value) else { continue }
                violations +=
                    building.filter { (index) in
                        do throws(DynamoError) { try index.checkIndexKeys(item) } catch { return true }
                        return false
                    }.count
            }
        }
        try await withKeysLocked(batch.map(\.key), epoch: epoch) { () throws(DynamoError) in
            var writes: [StoreWrite] = []
            var added = 0
            for (key, _) in batch {
                let record = GlobalIndexOutbox.key(item: key)
                let pending = try await storeCall({ () throws(StorageError) in try await store.get(record) })
                    .flatMap(GlobalIndexOutbox.init(encoded:))
                if pending == nil { added += 1 }
                let queued = GlobalIndexOutbox(deletes: [], indexes: indexes).merged(after: pending)
                writes.append(.put(key: record, value: queued.encoded))
            }
            if !writes.isEmpty {
                try await commit(writes)
                outboxRecords += added
            }
        }
        return (batch.count == limit ? batch.last?.key : nil, violations)
    }

    /// Where a partition keeps the version of a table's global index set that writes must
    /// carry (table id 0: never a user table).
    static func indexVersionKey(_ table: UInt32) -> [UInt8] {
        KeyEncoding.tablePrefix(0) + Array("ixv/".utf8) + KeyEncoding.tablePrefix(table)
    }

    private func indexVersion(of table: UInt32) async throws(DynamoError) -> Int {
        if let known = indexVersions[table] { return known }
        let stored = try await storeCall { () throws(StorageError) in try await store.get(Self.indexVersionKey(table)) }
        let version = stored.flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
        indexVersions[table] = version
        return version
    }

    /// Refuses a write routed with an older version of its table's global indexes than
    /// this partition was told of: its record would miss an index being built, or name
    /// one deleted.
    private func checkIndexVersion(_ command: WriteCommand) async throws(DynamoError) {
        guard command.writes else { return }
        guard (command.indexes?.version ?? 0) >= (try await indexVersion(of: command.table)) else {
            throw .staleIndexes
        }
    }

    /// Drops the outbox records that still hold what was shipped (a later write may have
    /// changed one meanwhile: it stays, to be shipped again), with their items locked.
    private func settleOutbox(_ records: [SystemEntry], epoch: Int) async throws(DynamoError) {
        let items = records.compactMap { GlobalIndexOutbox.item(of: $0.key) }
        try await withKeysLocked(items, epoch: epoch) { () throws(DynamoError) in
            var deletes: [StoreWrite] = []
            for record in records {
                let stored = try await storeCall({ () throws(StorageError) in try await store.get(record.key) })
                if stored == record.value { deletes.append(.delete(key: record.key)) }
            }
            if !deletes.isEmpty {
                try await commit(deletes)
                outboxRecords = max(0, outboxRecords - deletes.count)
            }
        }
    }

    /// Refuses a transaction's write that would take its item collection past its bound
    /// (checked at prepare; the size is kept when the transaction is applied).
    private func checkCollection(_ command: WriteCommand, old: Item?, new: Item?) async throws(DynamoError) {
        guard let indexes = command.indexes, !indexes.localIndexes.isEmpty, command.writes,
            let partitionKey = (new ?? old)?[indexes.partitionKey]
        else { return }
        let delta = indexes.collectionBytes(of: new) - indexes.collectionBytes(of: old)
        let key = IndexMaintenance.collectionKey(table: command.table, partitionKey: partitionKey)
        if delta > 0, try await collectionBytes(key) + delta > IndexMaintenance.collectionBytesMax {
            throw .itemCollectionSizeLimitExceeded()
        }
    }

    /// The size recorded for an item collection (`IndexMaintenance.collectionKey`).
    private func collectionBytes(_ key: [UInt8]) async throws(DynamoError) -> Int {
        guard let stored = try await storeCall({ () throws(StorageError) in try await store.get(key) }),
            stored.count == 8
        else { return 0 }
        return stored.withUnsafeBytes { Int(Int64(bigEndian: $0.loadUnaligned(as: Int64.self))) }
    }

    private static func collectionWrite(_ key: [UInt8], bytes: Int) -> StoreWrite {
        bytes <= 0
            ? .delete(key: key) : .put(key: key, value: withUnsafeBytes(of: Int64(bytes).bigEndian) { Array($0) })
    }

    /// A transaction's first phase in this partition: locks the commands' keys for
    /// `transaction` and evaluates each command against its stored item. When every
    /// command may go ahead, the locks are made durable (a `TransactionLock` naming
    /// `coordinator`) and the keys stay locked until `applyTransaction` or `abort`;
    /// otherwise the transaction is cancelled and nothing stays locked. A key another
    /// transaction holds is a conflict: nothing stays locked.
    private func prepare(
        _ transaction: TransactionID, _ commands: [WriteCommand], coordinator: Int, epoch: Int
    ) async throws(DynamoError) -> PrepareOutcome {
        let keys = commands.map(\.key)
        if let conflict = try await lock(transaction, keys, epoch: epoch) { return .conflict(conflict) }
        var prepared: [PreparedWrite] = []
        do throws(DynamoError) {
            for command in commands {
                let old = try await read(command.key)
                do throws(DynamoError) {
                    try await checkIndexVersion(command)
                    let new = try command.newItem(replacing: old?.item)
                    try await checkCollection(command, old: old?.item, new: new)
                    if command.indexes?.globalIndexes.isEmpty == false && outboxRecords >= Self.outboxRecordsMax {
                        throw DynamoError(
                            "ThrottlingException",
                            "Throughput exceeds the current capacity of your table's global "
                                + "secondary indexes: their updates are behind, retry later")
                    }
                    prepared.append(.ready(WriteOutcome(old: old?.item, new: new)))
                } catch {
                    prepared.append(.refused(error))
                }
            }
            guard prepared.allSatisfy({ if case .ready = $0 { true } else { false } }) else {
                releaseLocks(transaction)  // the transaction is cancelled
                return .prepared(prepared)
            }
            let record = TransactionLock(
                transaction: transaction, coordinator: coordinator, time: Date().timeIntervalSince1970, keys: keys)
            // A new leader may have taken over (and reloaded the recorded locks) meanwhile.
            guard transactionLocks[transaction] != nil else { throw DynamoError.notLeader(nil) }
            try await commit([.put(key: TransactionLock.key(transaction), value: record.encoded)])
            guard transactionLocks[transaction] != nil else { throw DynamoError.notLeader(nil) }
            recordedLocks.insert(transaction)
        } catch {
            if !recordedLocks.contains(transaction) { releaseLocks(transaction) }
            throw error
        }
        return .prepared(prepared)
    }

    /// A committed transaction's writes to keys it holds locked, stored with the removal
    /// of its lock record; then its keys are released. Without its locks here (it was
    /// applied already, or aborted) it does nothing: a late or repeated apply must not
    /// overwrite a later write. Each write is the item's final image. They go into the log
    /// as few entries as the record size allows (one, for all but the largest), the
    /// record's removal in the last, so they are applied together.
    private func applyTransaction(_ transaction: TransactionID, _ writes: [TransactionWrite]) async throws(DynamoError)
    {
        guard let held = transactionLocks[transaction] else { return }
        let heldKeys = Set(held)
        guard writes.allSatisfy({ heldKeys.contains($0.key) }) else {
            throw Self.refused("a transaction's write to a key it does not hold")
        }
        var batch: [(write: TransactionWrite, old: Int?, new: [UInt8]?, index: IndexWrites)] = []
        var batchBytes = 5
        var collections: [[UInt8]: Int] = [:]  // item collections' changes in size
        for write in writes {
            let stored = try await read(write.key, decoding: write.indexes != nil)
            let old = stored?.storedBytes
            let new = write.item.map(ItemCodec.encode)
            guard new != nil || old != nil else { continue }  // deleting what is not there
            if let indexes = write.indexes, !indexes.localIndexes.isEmpty,
                let partitionKey = (write.item ?? stored?.item)?[indexes.partitionKey]
            {
                let collection = IndexMaintenance.collectionKey(table: write.table, partitionKey: partitionKey)
                collections[collection, default: 0] +=
                    indexes.collectionBytes(of: write.item) - indexes.collectionBytes(of: stored?.item)
            }
            var index = IndexWrites(
                write.indexes, old: stored?.item, new: write.item,
                bytesMax: store.writeBytesMax - 256 - (new?.count ?? 0) - write.key.count)
            // A committed transaction is applied whatever the outbox holds (its prepare was
            // throttled instead).
            if let indexes = write.indexes,
                let outbox = try await outboxWrite(
                    indexes, item: write.key, old: stored?.item, new: write.item, throttles: false)
            {
                index.add(outbox)
            }
            let bytes = 9 + write.key.count + (new?.count ?? 0) + index.bytes
            if !batch.isEmpty && batchBytes + bytes > store.writeBytesMax - 64 - transaction.value.utf8.count {
                try await storeTogether(batch)
                (batch, batchBytes) = ([], 5)
            }
            batch.append((write, old, new, index))
            batchBytes += bytes
        }
        // The collections' sizes go with the last entry, under their locks (taken in order,
        // after the items': a single write takes its item's first, then its collection's).
        let collectionKeys = collections.keys.sorted { $0.lexicographicallyPrecedes($1) }
        for key in collectionKeys { await lock(key) }
        defer { for key in collectionKeys { unlock(key) } }
        var sizes: [StoreWrite] = []
        for key in collectionKeys {
            sizes.append(Self.collectionWrite(key, bytes: try await collectionBytes(key) + collections[key]!))
        }
        let recorded = recordedLocks.contains(transaction)
        if !batch.isEmpty || recorded || !sizes.isEmpty {
            try await storeTogether(batch, dropping: recorded ? transaction : nil, more: sizes)
        }
        recordedLocks.remove(transaction)
        releaseLocks(transaction)
    }

    /// Aborts `transaction` here: drops its lock record, if any, and releases its keys.
    /// Returns whether it held any.
    private func abort(_ transaction: TransactionID) async throws(DynamoError) -> Bool {
        guard transactionLocks[transaction] != nil else { return false }
        if recordedLocks.contains(transaction) {
            try await commit([.delete(key: TransactionLock.key(transaction))])
            recordedLocks.remove(transaction)
        }
        releaseLocks(transaction)
        return true
    }

    /// Writes items (nil: deletes) in one log entry, with the removal of `dropping`'s lock
    /// record if given, and keeps the tables' statistics.
    private func storeTogether(
        _ batch: [(write: TransactionWrite, old: Int?, new: [UInt8]?, index: IndexWrites)],
        dropping: TransactionID? = nil, more: [StoreWrite] = []
    ) async throws(DynamoError) {
        var writes: [StoreWrite] = []
        for entry in batch {
            writes.append(entry.new.map { .put(key: entry.write.key, value: $0) } ?? .delete(key: entry.write.key))
            writes += entry.index.writes
        }
        writes += more
        if let dropping { writes.append(.delete(key: TransactionLock.key(dropping))) }
        try await commit(writes)
        for entry in batch {
            count(table: entry.write.table, old: entry.old, new: entry.new?.count)
            for change in entry.index.counts { count(table: change.index, old: change.old, new: change.new) }
        }
    }

    /// Stores `entries` together unless a record is under one of their keys (returned
    /// then); with the keys locked, so that two creations of one record never both store.
    private func create(
        _ entries: [SystemEntry], deadline: Double?, epoch: Int
    ) async throws(DynamoError) -> [SystemEntry] {
        try await withKeysLocked(entries.map(\.key), epoch: epoch) { () throws(DynamoError) in
            var found: [SystemEntry] = []
            for entry in entries {
                if let value = try await storeCall({ () throws(StorageError) in try await store.get(entry.key) }) {
                    found.append(SystemEntry(key: entry.key, value: value))
                }
            }
            guard found.isEmpty else { return found }
            if let deadline, Date().timeIntervalSince1970 > deadline {
                throw DynamoError("InternalServerError", "Internal server error: a record's deadline has passed")
            }
            try await commit(entries.map { .put(key: $0.key, value: $0.value) })
            return []
        }
    }

    /// Stores `new` (or deletes, for nil) under `key`, which holds `old`, and keeps the
    /// table's statistics.
    private func store(
        table: UInt32, key: [UInt8], replacing old: (item: Item?, storedBytes: Int)?, with new: Item?,
        indexes: IndexMaintenance? = nil, collection: (key: [UInt8], bytes: Int)? = nil
    ) async throws(DynamoError) {
        var newBytes: Int?
        let encoded = new.map(ItemCodec.encode)
        let index = IndexWrites(
            indexes, old: old?.item, new: new, bytesMax: store.writeBytesMax - 256 - (encoded?.count ?? 0) - key.count)
        var more = index.writes
        if let collection { more.append(Self.collectionWrite(collection.key, bytes: collection.bytes)) }
        if let indexes, let outbox = try await outboxWrite(indexes, item: key, old: old?.item, new: new) {
            more.append(outbox)
        }
        if let encoded {
            try await commit([.put(key: key, value: encoded)] + more)
            newBytes = encoded.count
        } else if old != nil {
            try await commit([.delete(key: key)] + more)
        }
        count(table: table, old: old?.storedBytes, new: newBytes)
        for change in index.counts { count(table: change.index, old: change.old, new: change.new) }
    }

    /// Writes durably, together: through the group (once a quorum has them on disk), or
    /// alone through the store.
    private func commit(_ writes: [StoreWrite]) async throws(DynamoError) {
        guard let driver else {
            try await storeCall { () throws(StorageError) in try await store.write(writes) }
            return
        }
        do throws(ReplicationDriver<ReactorStorage>.WriteFailure) {
            try await driver.write(writes)
        } catch {
            switch error {
            case .notLeader(let leader): throw .notLeader(leader)
            case .lost: throw .notLeader(nil)  // another leader took the slot: nothing was written
            case .storage(let failure): throw Self.internalError(failure)
            }
        }
    }

    /// Keeps a table's item and byte counts as an item of `old` stored bytes becomes one of
    /// `new` (nil: none).
    private func count(table: UInt32, old: Int?, new: Int?) {
        var entry = statistics[table, default: TableStatistics()]
        if let old {
            entry.items -= 1
            entry.bytes -= old
        }
        if let new {
            entry.items += 1
            entry.bytes += new
        }
        statistics[table] = entry
    }

    /// One page of a range walk (`RangeRead`): the keys in `[lower, upper)`, forward or
    /// backward, resuming after the last key a previous page returned; it stops after
    /// `limit` items or once the items read add up to `byteLimit`, and says whether keys in
    /// the range remain.
    private func readRange(_ read: RangeRead) async throws(DynamoError) -> RangePage {
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
                page.bytes += try StoredItem.size(value)
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

    /// Deletes every item of a deleted table (or entry of a deleted index), a batch of
    /// keys per log entry (within a quarter of a log record, keys of 3 KB included), so
    /// that other work goes on between them.
    private func purge(table: UInt32) async {
        let prefix = KeyEncoding.tablePrefix(table)
        let budget = max(store.writeBytesMax / 4, IndexMaintenance.entryKeyBytesMax)
        while true {
            guard let batch = try? await store.scan(from: prefix, limit: 256) else { return }
            let keys = batch.map(\.key).filter { $0.starts(with: prefix) }
            if keys.isEmpty { break }
            var deletes: [StoreWrite] = []
            var bytes = 0
            for (position, key) in keys.enumerated() {
                deletes.append(.delete(key: key))
                bytes += key.count + 16
                guard bytes >= budget || position == keys.count - 1 else { continue }
                do throws(DynamoError) { try await commit(deletes) } catch { return }
                (deletes, bytes) = ([], 0)
            }
        }
        statistics[table] = nil
    }

    /// Up to `limit` system records whose keys start with `prefix`, after `after`.
    private func systemScan(
        prefix: [UInt8], after: [UInt8]?, limit: Int
    ) async throws(DynamoError) -> [SystemEntry] {
        var found: [SystemEntry] = []
        var start = after.map { $0 + [0] } ?? prefix
        while found.count < limit {
            let wanted = min(limit - found.count, 256)
            let batch = try await storeCall { () throws(StorageError) in
                try await store.scan(from: start, limit: wanted)
            }
            let matching = batch.prefix { $0.key.starts(with: prefix) }
            found += matching.map { SystemEntry(key: $0.key, value: $0.value) }
            guard matching.count == wanted, let last = matching.last else { break }
            start = last.key + [0]
        }
        return found
    }

    public func close() async {
        if let driver {
            clock?.closed = true
            await driver.close()
        }
        await store.close()
    }

    // MARK: Key locks

    private func lock(_ key: [UInt8]) async {
        precondition(reactor.isOwnerThread, "partition \(index) ran off its core")
        await keyLocks.acquire(key)
    }

    /// Locks `key` for a request admitted in lock epoch `epoch`; refused (as by a replica
    /// that does not lead) when the epoch changed while it waited.
    private func lock(_ key: [UInt8], epoch: Int) async throws(DynamoError) {
        await lock(key)
        guard epoch == locksEpoch else {
            unlock(key)
            throw .notLeader(nil)
        }
    }

    private func unlock(_ key: [UInt8]) {
        keyLocks.release(key)  // the lock passes straight to the next writer of this key
    }

    /// Runs `body` with `keys` locked, taken in key order (so that any two holders of
    /// several keys take them in one order and never wait for each other in a cycle), and
    /// releases them whatever happens.
    private func withKeysLocked<T>(
        _ keys: [[UInt8]], epoch: Int, _ body: () async throws(DynamoError) -> T
    ) async throws(DynamoError) -> T {
        var locked: [[UInt8]] = []
        defer { for key in locked { unlock(key) } }
        for key in Set(keys).sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            try await lock(key, epoch: epoch)
            locked.append(key)
        }
        return try await body()
    }

    /// Locks `keys` for `transaction`, in key order (so two transactions meet in the same
    /// order). A key held by another transaction is a conflict: the keys taken so far are
    /// released and the index of the conflicting key in `keys` returned. A key held by a
    /// single-item write is waited for (that write is short and waits for nothing else).
    private func lock(
        _ transaction: TransactionID, _ keys: [[UInt8]], epoch: Int
    ) async throws(DynamoError) -> Int? {
        guard transactionLocks[transaction] == nil else {
            throw Self.refused("a second lock request for transaction \(transaction)")
        }
        guard Set(keys).count == keys.count else { throw Self.refused("a transaction naming a key twice") }
        transactionLocks[transaction] = []
        for key in keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            if transactionKeys.contains(key) {
                releaseLocks(transaction)
                return keys.firstIndex(of: key)!
            }
            do throws(DynamoError) { try await lock(key, epoch: epoch) } catch {
                releaseLocks(transaction)
                throw error
            }
            guard transactionLocks[transaction] != nil else {  // released while it waited
                unlock(key)
                throw Self.refused("a lock request for transaction \(transaction), released meanwhile")
            }
            transactionKeys.insert(key)
            transactionLocks[transaction]!.append(key)
        }
        return nil
    }

    /// Releases every key `transaction` holds here in memory; nothing, if it holds none.
    private func releaseLocks(_ transaction: TransactionID) {
        for key in transactionLocks.removeValue(forKey: transaction) ?? [] {
            precondition(transactionKeys.remove(key) != nil, "a transaction's key was not marked held")
            unlock(key)
        }
    }

    /// Makes the lock table this term's: once per term (per leader's ballot; alone, once),
    /// the keys of every recorded transaction are locked again and every other
    /// transaction's locks, left from an earlier term, are dropped. Requests wait meanwhile.
    private func loadLocks() async throws(DynamoError) {
        while true {
            let term = await driver?.status.promised
            if locksLoaded && locksTerm == term { return }
            if let loading = loadingLocks {
                _ = await loading.value
                continue
            }
            let loading = Task(executorPreference: reactor) { await self.reloadLocks(for: term) }
            loadingLocks = loading
            let failure = await loading.value
            loadingLocks = nil
            if let failure { throw failure }
        }
    }

    /// A replica that stops leading forgets its lock table (the next leader has the
    /// records); requests waiting for its keys are refused.
    private func dropLocks() {
        for transaction in Array(transactionLocks.keys) { releaseLocks(transaction) }
        recordedLocks = []
        locksLoaded = false
        locksEpoch += 1
        indexVersions = [:]
    }

    private func reloadLocks(for term: Ballot?) async -> DynamoError? {
        locksEpoch += 1
        indexVersions = [:]
        var records: [TransactionLock] = []
        var after: [UInt8]? = nil
        repeat {
            let page: [SystemEntry]
            do throws(DynamoError) {
                page = try await systemScan(prefix: TransactionLock.prefix, after: after, limit: Self.systemScanMax)
            } catch {
                return error
            }
            for entry in page {
                guard let record = TransactionLock(key: entry.key, value: entry.value) else {
                    return DynamoError("InternalServerError", "Internal server error: a lock record does not decode")
                }
                records.append(record)
            }
            after = page.count == Self.systemScanMax ? page.last?.key : nil
        } while after != nil
        let recorded = Set(records.map(\.transaction))
        for transaction in Array(transactionLocks.keys) where !recorded.contains(transaction) {
            releaseLocks(transaction)
        }
        recordedLocks = recorded
        for record in records where transactionLocks[record.transaction] == nil {
            transactionLocks[record.transaction] = []
            for key in record.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) where !transactionKeys.contains(key)
            {
                await lock(key)
                transactionKeys.insert(key)
                transactionLocks[record.transaction]!.append(key)
            }
        }
        locksTerm = term
        locksLoaded = true
        return nil
    }

    static func internalError(_ error: StorageError) -> DynamoError {
        DynamoError("InternalServerError", "Internal server error: \(error)")
    }
}

/// A replica's clock: it ticks the core once per `tick` of the machine's monotonic clock
/// (scaled by `rate`), catching up the ticks a pause or a busy core missed, so that a
/// replica's idea of time, and so its lease, never falls behind real time.
final class ReplicaClock: @unchecked Sendable {  // touched on the partition's core only
    let tick: Duration
    let rate: Double
    let preferredLeader: @Sendable () -> UInt32?
    /// Ticks between a leader's checks that it is the preferred one, at first and at most.
    static let transferTicks = 40
    static let transferTicksMax = 1200
    private let start = ContinuousClock.now
    private var ticked: UInt64 = 0
    var closed = false

    init(tick: Duration, rate: Double, preferredLeader: @escaping @Sendable () -> UInt32?) {
        self.tick = tick
        self.rate = rate
        self.preferredLeader = preferredLeader
    }

    /// Ticks `driver` for every tick due since the last call.
    func catchUp<S>(_ driver: ReplicationDriver<S>) async {
        let elapsed = (ContinuousClock.now - start) * rate
        let due = UInt64(max(0, elapsed / tick))
        guard due > ticked else { return }
        let count = due - ticked
        ticked = due
        await driver.tick(count)
    }
}
