import GranaryCommands
import GranaryModel

/// What the ledger leaves behind when a coordinator stops, and who finishes it: each
/// partition's leader, regularly (and a node alone, once before it serves, with no
/// delay, since every coordinator it had stopped with it).
extension TransactionLedger {
    /// How long a partition's leader leaves a transaction's records to its coordinator.
    public struct Delays: Sendable {
        /// Before a lock record is resolved.
        public var locks: Double
        /// Before a committed decision is finished from the coordinator's partition
        /// (its participants' leaders finish it sooner, as they resolve their locks:
        /// this one only drops what a coordinator left after every participant applied).
        public var decisions: Double
        public static let running = Delays(locks: resolveAfterSeconds, decisions: 30)
        public static let none = Delays(locks: 0, decisions: 0)
    }

    /// Fault tests only: a coordinator that stops half-way, and a deliberate bug in the
    /// resolution of what it leaves (for showing that the tests catch one).
    public struct Faults: Sendable {
        /// The coordinator's process exits at once (as kill -9 would stop it) when this
        /// many participants have applied a committed transaction.
        public var exitAfterApplies: Int?
        /// A deliberate bug: a lock left by a coordinator is aborted without reading its
        /// decision.
        public var abortsUnread = false
        public init() {}
    }

    /// Resolves the lock records of `partition` whose transactions stayed unfinished
    /// longer than `delays` allow, finishes its committed decisions, and drops its
    /// expired records: aborted decisions, token records, and chunks of transactions that
    /// never committed.
    public static func sweep(
        _ partition: Int, over transport: some PartitionTransport, now: Double, delays: Delays = .running,
        faults: Faults = Faults()
    ) async throws(DynamoError) {
        for entry in try await transport.systemScan(prefix: TransactionLock.prefix, at: partition) {
            guard let lock = TransactionLock(key: entry.key, value: entry.value) else {
                throw corruption("a lock record in partition \(partition) does not decode")
            }
            guard now - lock.time >= delays.locks else { continue }
            if faults.abortsUnread {
                try await transport.release(lock.transaction, at: partition)
            } else {
                try await resolve(lock, at: partition, over: transport, now: now)
            }
        }
        var committed: Set<String> = []
        for entry in try await transport.systemScan(prefix: decisionPrefix, at: partition) {
            let transaction = TransactionID(String(decoding: entry.key.dropFirst(decisionPrefix.count), as: UTF8.self))
            guard let decision = decodeDecision(entry.value) else {
                throw corruption("decision \(transaction) in partition \(partition) does not decode")
            }
            switch decision.state {
            case .committed where now - decision.time >= delays.decisions:
                try await finishCommitted(transaction, decision, coordinator: partition, over: transport)
            case .committed:
                committed.insert(transaction.value)
            case .aborted where now - decision.time >= abortedLifetimeSeconds:
                try await transport.systemDelete(entry.key, at: partition)
            default:
                break
            }
        }
        for entry in try await transport.systemScan(prefix: tokenPrefix, at: partition) {
            let token = String(decoding: entry.key.dropFirst(tokenPrefix.count), as: UTF8.self)
            guard let header = decodeHeader(entry.value) else {
                throw corruption("token record \(token) in partition \(partition) does not decode")
            }
            if header.state == .committed && header.transaction.isEmpty {
                try await redoOlderRecord(token, header, in: partition, over: transport, now: now)
            } else if header.state == .done && header.time + tokenLifetimeSeconds <= now {
                try await transport.systemDelete(entry.key, at: partition)
            }
        }
        // Chunks written for a decision that was never made, or made long ago and finished.
        for entry in try await transport.systemScan(prefix: chunkPrefix, at: partition) {
            let rest = entry.key.dropFirst(chunkPrefix.count)
            guard let slash = rest.lastIndex(of: UInt8(ascii: "/")) else { continue }
            let id = String(decoding: rest[..<slash], as: UTF8.self)
            let written = decodeChunk(entry.value)?.time ?? 0
            if !committed.contains(id) && now - written >= decisionWindowSeconds + delays.decisions,
                try await transport.systemGet(decisionKey(TransactionID(id)), at: partition) == nil
            {
                try await transport.systemDelete(entry.key, at: partition)
            }
        }
    }

    /// Applies a transaction that an older build committed (its images are in chunks
    /// under its token record's id, and its participants kept no durable locks), as that
    /// build did at start-up, under locks taken for the purpose.
    private static func redoOlderRecord(
        _ id: String, _ header: Header, in coordinator: Int, over transport: some PartitionTransport, now: Double
    ) async throws(DynamoError) {
        var writes: [Int: [TransactionWrite]] = [:]
        for index in 0..<header.chunks {
            guard let stored = try await transport.systemGet(chunkKey(id, index), at: coordinator),
                let chunk = decodeChunk(stored)
            else { throw corruption("transaction \(id) in partition \(coordinator) lacks chunk \(index)") }
            for (partition, write) in chunk.writes { writes[partition, default: []].append(write) }
        }
        let redo = TransactionID("redo-\(id)")
        for (partition, list) in writes.sorted(by: { $0.key < $1.key }) {
            guard try await transport.lock(redo, keys: list.map(\.key), at: partition) == nil else {
                throw DynamoError("InternalServerError", "Internal server error: transaction \(id) met a lock")
            }
            try await transport.apply(redo, list, at: partition)
        }
        // A token's lifetime runs from the redo: the client may still be retrying.
        if header.time + tokenLifetimeSeconds > now && !header.requestHash.isEmpty {
            try await transport.systemPut(
                tokenKey(id),
                encode(Header(state: .done, requestHash: header.requestHash, time: now, transaction: "", chunks: 0)),
                at: coordinator)
        } else {
            try await transport.systemDelete(tokenKey(id), at: coordinator)
        }
        for index in 0..<header.chunks { try await transport.systemDelete(chunkKey(id, index), at: coordinator) }
    }
}
