import GranaryCommands
import GranaryIO
import GranaryModel

/// One core's copy of the table list, read by request handlers on that core without a hop.
/// Only the catalog changes it, by a message to the core; only that core's thread touches
/// it (hence @unchecked).
public final class CoreTables: @unchecked Sendable {
    public let reactor: Reactor
    public private(set) var tables: [String: TableInfo] = [:]

    public init(reactor: Reactor) { self.reactor = reactor }

    func install(_ snapshot: [String: TableInfo]) {
        precondition(reactor.isOwnerThread, "a core's table list is touched only on its core")
        tables = snapshot
    }
}

/// The node's tables, kept durably in partition 0 under table id 0 and copied to every
/// core. A change is acknowledged once it is durable and every core has the new copy, so
/// a table created by one request is there for the next request on any core.
public actor Catalog {
    private nonisolated let reactor: Reactor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }
    private let transport: any PartitionTransport
    private let cores: [CoreTables]
    private var tables: [String: TableInfo]
    private var nextID: UInt32
    /// Held by a change (and a refresh) from its first read to its broadcast, so that
    /// changes run one at a time and a refresh never drops one in progress.
    private let changing = FIFOLocks<Int>()
    /// When the last read of the stored catalog began (a read sees every change made
    /// before it began).
    private var lastReadBegan = ContinuousClock.now

    /// Bounds of DynamoDB's default account quota.
    public static let tablesMax = 2500

    /// The partition whose system records hold the catalog.
    static let home = 0
    static let tablePrefix: [UInt8] = KeyEncoding.tablePrefix(0) + Array("table/".utf8)
    static let nextIDKey: [UInt8] = KeyEncoding.tablePrefix(0) + Array("next-id".utf8)

    /// Reads the catalog through `transport` and copies it to every core; the catalog
    /// then runs on `reactor`.
    public static func open(
        over transport: any PartitionTransport, cores: [CoreTables], on reactor: Reactor
    ) async throws(DynamoError) -> Catalog {
        let (tables, nextID) = try await read(over: transport)
        let catalog = Catalog(reactor: reactor, transport: transport, cores: cores, tables: tables, nextID: nextID)
        await catalog.broadcast()
        return catalog
    }

    /// The tables and the next table id, as stored.
    private static func read(
        over transport: any PartitionTransport
    ) async throws(DynamoError) -> (tables: [String: TableInfo], nextID: UInt32) {
        var tables: [String: TableInfo] = [:]
        for entry in try await transport.systemScan(prefix: tablePrefix, at: home) {
            guard let json = try? JSON.parse(entry.value), let info = TableInfo(catalogJSON: json) else {
                throw DynamoError(
                    "InternalServerError",
                    "Internal server error: table record \(String(decoding: entry.key, as: UTF8.self)) does not decode")
            }
            tables[info.name] = info
        }
        var nextID: UInt32 = 1
        if let stored = try await transport.systemGet(nextIDKey, at: home), stored.count == 4 {
            nextID = stored.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }
        }
        return (tables, nextID)
    }

    /// Reads the catalog again, for the changes other nodes of a cluster made (every node
    /// keeps its copy; the records live in partition 0's replicated group), and copies it
    /// to every core if it changed.
    /// Reads it again unless a read began at or after `since` (so that the requests naming
    /// unknown tables that arrive during one read share the next: at most one read runs at
    /// a time, however many arrive, and each sees every table created before it arrived).
    public func refresh(since: ContinuousClock.Instant = .now) async throws(DynamoError) {
        await changing.acquire(0)
        defer { changing.release(0) }
        guard lastReadBegan < since else { return }
        try await reload()
    }

    private func reload() async throws(DynamoError) {
        let began = ContinuousClock.now
        let (stored, storedNextID) = try await Self.read(over: transport)
        lastReadBegan = began
        nextID = max(nextID, storedNextID)
        guard stored.mapValues(\.catalogJSON) != tables.mapValues(\.catalogJSON) else { return }
        tables = stored
        await broadcast()
    }

    private init(
        reactor: Reactor, transport: any PartitionTransport, cores: [CoreTables], tables: [String: TableInfo],
        nextID: UInt32
    ) {
        self.reactor = reactor
        self.transport = transport
        self.cores = cores
        self.tables = tables
        self.nextID = nextID
    }

    public func names() -> [String] { tables.keys.sorted() }

    /// The core the catalog's work runs on.
    public nonisolated var home: Reactor { reactor }

    public func table(_ name: String) -> TableInfo? { tables[name] }

    /// Creates `info` under a new id; ResourceInUseException if the name is taken.
    public func create(_ proposed: TableInfo) async throws(DynamoError) -> TableInfo {
        await changing.acquire(0)
        defer { changing.release(0) }
        try await reload()
        guard tables[proposed.name] == nil else {
            throw DynamoError("ResourceInUseException", "Table already exists: \(proposed.name)")
        }
        guard tables.count < Self.tablesMax else {
            throw DynamoError(
                "LimitExceededException",
                "Subscriber limit exceeded: There is a limit of \(Self.tablesMax) tables per account")
        }
        var info = proposed
        info.id = nextID
        nextID += 1
        for position in info.localIndexes.indices {  // each index is a key space of its own
            info.localIndexes[position].id = nextID
            nextID += 1
        }
        for position in info.globalIndexes.indices {
            info.globalIndexes[position].id = nextID
            nextID += 1
        }
        try await store(info, replacing: nil)
        return info
    }

    /// Stores `info` with the next id (taken by it), in memory first (so that a change
    /// made meanwhile sees it), put back to `previous` if storing fails; then copies the
    /// catalog to every core.
    private func store(_ info: TableInfo, replacing previous: TableInfo?) async throws(DynamoError) {
        tables[info.name] = info
        do throws(DynamoError) {
            try await transport.systemPut(
                Self.nextIDKey, withUnsafeBytes(of: nextID.bigEndian) { Array($0) }, at: Self.home)
            try await transport.systemPut(
                Self.tablePrefix + Array(info.name.utf8), info.catalogJSON.serialized(), at: Self.home)
        } catch {
            tables[info.name] = previous
            throw error
        }
        await broadcast()
    }

    /// Changes a table's settings durably.
    public func update(
        _ name: String, _ change: @Sendable (inout TableInfo) throws(DynamoError) -> Void
    ) async throws(DynamoError) -> TableInfo {
        await changing.acquire(0)
        defer { changing.release(0) }
        try await reload()
        guard var info = tables[name] else {
            throw .resourceNotFound("Requested resource not found: Table: \(name) not found")
        }
        try change(&info)
        tables[name] = info
        try await transport.systemPut(Self.tablePrefix + Array(name.utf8), info.catalogJSON.serialized(), at: Self.home)
        await broadcast()
        return info
    }

    /// Adds a global index to table `name` (an online build: `creating`, under a new id),
    /// with `definitions` the table's attribute definitions then.
    public func addGlobalIndex(
        _ name: String, _ proposed: SecondaryIndex, definitions: [KeyAttribute]
    ) async throws(DynamoError) -> TableInfo {
        await changing.acquire(0)
        defer { changing.release(0) }
        try await reload()
        guard var info = tables[name] else {
            throw .resourceNotFound("Requested resource not found: Table: \(name) not found")
        }
        guard info.index(named: proposed.name) == nil else {
            throw .validation(
                "One or more parameter values were invalid: Index \(proposed.name) already exists on table \(name)")
        }
        var index = proposed
        index.id = nextID
        index.creating = true
        info.globalIndexes.append(index)
        info.attributeDefinitions = definitions
        info.indexVersion += 1
        nextID += 1
        try await store(info, replacing: tables[name])
        return info
    }

    /// Deletes a table: gone from every core when this returns; its items are purged in
    /// the background (their id is never reused, so nothing can see them meanwhile).
    public func delete(_ name: String) async throws(DynamoError) -> TableInfo {
        await changing.acquire(0)
        defer { changing.release(0) }
        try await reload()
        guard let info = tables[name] else {
            throw .resourceNotFound("Requested resource not found: Table: \(name) not found")
        }
        guard !info.deletionProtection else {
            throw DynamoError(
                "ResourceInUseException",
                "Resource cannot be deleted as it is currently protected against deletion. Disable deletion "
                    + "protection first."
            )
        }
        tables[name] = nil
        do throws(DynamoError) {
            try await transport.systemDelete(Self.tablePrefix + Array(name.utf8), at: Self.home)
        } catch {
            tables[name] = info
            throw error
        }
        await broadcast()
        for partition in 0..<transport.map.count {
            for id in [info.id] + info.allIndexes.map(\.id) {
                Task(executorPreference: reactor) { [transport] in try? await transport.purge(table: id, at: partition)
                }
            }
        }
        return info
    }

    private func broadcast() async {
        let snapshot = tables
        await withTaskGroup(of: Void.self) { group in
            for core in cores {
                group.addTask(executorPreference: core.reactor) { core.install(snapshot) }
            }
        }
    }
}
