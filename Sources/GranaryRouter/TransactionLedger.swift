import Foundation
import GranaryCommands
import GranaryModel

/// Makes a transaction's writes all-or-nothing across partitions, each of which has a log
/// (and, in a cluster, a leader) of its own, and remembers client request tokens.
///
/// Two-phase commit with the decision in one partition, the coordinator: every
/// participant has prepared (its locks are durable, `TransactionLock`, naming the
/// coordinator), the final images are written into the coordinator's ledger as chunks
/// (a log record is bounded), and then the decision record is created there: its
/// creation is the commit point. Each participant then applies its writes and drops its
/// locks in one log entry, and the decision and chunks are dropped (a client token stays
/// as a "done" record for ten minutes, so that a retry is not applied twice).
///
/// Nothing waits for a coordinator that stops: a participant's leader resolves a lock
/// record older than a few seconds by creating an "aborted" decision for it. Only one of
/// the two creations can succeed, so either the decision was committed (and the
/// resolver finishes the transaction everywhere) or it never will be. Records live
/// under table id 0 (never a user table), as items in the binary item form:
/// `txd/<transaction>` the decision, `txc/<transaction>/<n>` the chunks, `txn/<token>`
/// the token, `txl/<transaction>` the participants' locks.
public enum TransactionLedger {
    /// DynamoDB keeps a ClientRequestToken for ten minutes.
    public static let tokenLifetimeSeconds = 600.0
    /// A coordinator's decision is refused this long after the transaction began, so an
    /// aborted decision kept longer than that can never be overtaken by a commit.
    static let decisionWindowSeconds = 60.0
    static let abortedLifetimeSeconds = 600.0
    /// How old a lock record or a committed decision is before the partition's leader
    /// finishes it itself (a coordinator takes milliseconds).
    public static let resolveAfterSeconds = 2.0
    static let chunkBytesMax = 512 << 10

    public enum State: String, Sendable {
        case committed, done, aborted
    }

    /// A token record: `committed` while its transaction is being applied, then `done`.
    public struct Header: Sendable {
        public var state: State
        public var requestHash: String
        public var time: Double  // seconds since 1970
        /// The transaction it stands for; empty in a record written by an older build,
        /// whose chunks are under the token itself.
        var transaction: String
        var chunks: Int
    }

    /// A transaction's decision in its coordinator's ledger.
    struct Decision: Sendable {
        var state: State
        var time: Double
        var participants: [Int]
        var chunks: Int
        var token: String
        var requestHash: String
    }

    static let tokenPrefix = KeyEncoding.tablePrefix(0) + Array("txn/".utf8)
    static let decisionPrefix = KeyEncoding.tablePrefix(0) + Array("txd/".utf8)
    static let chunkPrefix = KeyEncoding.tablePrefix(0) + Array("txc/".utf8)
    static func tokenKey(_ token: String) -> [UInt8] { tokenPrefix + Array(token.utf8) }
    static func decisionKey(_ transaction: TransactionID) -> [UInt8] { decisionPrefix + Array(transaction.value.utf8) }
    static func chunkKey(_ id: String, _ index: Int) -> [UInt8] { chunkPrefix + Array("\(id)/\(index)".utf8) }

    /// The token record stored for `token` in partition `coordinator`, if any.
    public static func header(
        _ token: String, in coordinator: Int, over transport: some PartitionTransport
    ) async throws(DynamoError) -> Header? {
        guard let stored = try await transport.systemGet(tokenKey(token), at: coordinator) else { return nil }
        guard let header = decodeHeader(stored) else { throw corruption("token record \(token) does not decode") }
        return header
    }

    /// Forgets an expired token record.
    public static func forget(
        _ token: String, in coordinator: Int, over transport: some PartitionTransport
    )
        async throws(DynamoError)
    {
        try await transport.systemDelete(tokenKey(token), at: coordinator)
    }

    /// Commits `transaction`, prepared in every partition of `participants`, with
    /// `writes` (by partition index) as described above, and releases its locks. When it
    /// throws before the commit point, the transaction is aborted everywhere; when the
    /// decision's outcome is unknown or some participant did not apply, the locks stay
    /// for the participants' leaders to resolve.
    public static func commit(
        _ transaction: TransactionID, token: String?, requestHash: String, began: Double,
        writes: [Int: [TransactionWrite]], participants: [Int], coordinator: Int,
        over transport: some PartitionTransport,
        faults: Faults = Faults()
    ) async throws(DynamoError) {
        let chunks = chunked(writes, time: began)
        do throws(DynamoError) {
            _ = try await concurrently(Array(chunks.enumerated())) { (index, chunk) throws(DynamoError) in
                try await transport.systemPut(
                    chunkKey(transaction.value, index), ItemCodec.encode(chunk), at: coordinator)
            }
        } catch {
            await abort(transaction, in: participants, over: transport)
            throw error
        }
        let decision = Decision(
            state: .committed, time: began, participants: participants, chunks: chunks.count, token: token ?? "",
            requestHash: requestHash)
        var records = [SystemEntry(key: decisionKey(transaction), value: encode(decision))]
        if let token {
            records.append(
                SystemEntry(
                    key: tokenKey(token),
                    value: encode(
                        Header(
                            state: .committed, requestHash: requestHash, time: began, transaction: transaction.value,
                            chunks: 0))))
        }
        let found = try await transport.systemCreate(
            records, deadline: began + decisionWindowSeconds, at: coordinator)
        if !found.isEmpty {
            await abort(transaction, in: participants, over: transport)
            if found.contains(where: { $0.key == records[0].key }) {
                throw DynamoError(
                    "TransactionCanceledException",
                    "Transaction cancelled, please refer cancellation reasons for specific reasons"
                        + " [TransactionConflict]"
                )
            }
            throw DynamoError(
                "TransactionInProgressException", "The transaction with the given request token is already in progress."
            )
        }
        try await finish(
            transaction, decision, writes: writes, coordinator: coordinator, over: transport,
            exitAfterApplies: faults.exitAfterApplies)
    }

    /// Resolves a transaction whose lock record `lock` partition `partition` holds and
    /// whose coordinator has not finished it: aborts it unless it was committed, and
    /// finishes it if it was.
    static func resolve(
        _ lock: TransactionLock, at partition: Int, over transport: some PartitionTransport, now: Double
    ) async throws(DynamoError) {
        guard (0..<transport.map.count).contains(lock.coordinator) else {
            try await transport.release(lock.transaction, at: partition)
            return
        }
        let aborted = Decision(state: .aborted, time: now, participants: [], chunks: 0, token: "", requestHash: "")
        let found = try await transport.systemCreate(
            [SystemEntry(key: decisionKey(lock.transaction), value: encode(aborted))], at: lock.coordinator)
        if let existing = found.first {
            guard let decision = decodeDecision(existing.value) else {
                throw corruption("decision \(lock.transaction) does not decode")
            }
            if decision.state == .committed {
                var committed = decision
                if !committed.participants.contains(partition) { committed.participants.append(partition) }
                try await finishCommitted(lock.transaction, committed, coordinator: lock.coordinator, over: transport)
                return
            }
        }
        try await transport.release(lock.transaction, at: partition)
    }

    /// Finishes a committed transaction from its chunks (its coordinator did not).
    static func finishCommitted(
        _ transaction: TransactionID, _ decision: Decision, coordinator: Int, over transport: some PartitionTransport
    ) async throws(DynamoError) {
        var writes: [Int: [TransactionWrite]] = [:]
        for index in 0..<decision.chunks {
            guard let stored = try await transport.systemGet(chunkKey(transaction.value, index), at: coordinator) else {
                // Finished meanwhile, by its coordinator or another resolver.
                if try await transport.systemGet(decisionKey(transaction), at: coordinator) == nil { return }
                throw corruption("transaction \(transaction) lacks chunk \(index)")
            }
            guard let chunk = decodeChunk(stored) else { throw corruption("a chunk of \(transaction) does not decode") }
            for (partition, write) in chunk.writes { writes[partition, default: []].append(write) }
        }
        try await finish(transaction, decision, writes: writes, coordinator: coordinator, over: transport)
    }

    // MARK: Steps

    /// Applies a committed transaction in every participant, then drops its decision and
    /// chunks (a token's record becomes "done").
    private static func finish(
        _ transaction: TransactionID, _ decision: Decision, writes: [Int: [TransactionWrite]], coordinator: Int,
        over transport: some PartitionTransport, exitAfterApplies: Int? = nil
    ) async throws(DynamoError) {
        let participants = Set(decision.participants).union(writes.keys).sorted()
        if let exitAfterApplies {  // a fault test's coordinator: one participant at a time
            for (applied, partition) in participants.enumerated() {
                if applied == exitAfterApplies { exit(137) }
                try await transport.apply(transaction, writes[partition] ?? [], at: partition)
            }
            if participants.count == exitAfterApplies { exit(137) }
        } else {
            _ = try await concurrently(participants) { (partition) throws(DynamoError) in
                try await transport.apply(transaction, writes[partition] ?? [], at: partition)
            }
        }
        if !decision.token.isEmpty {
            try await transport.systemPut(
                tokenKey(decision.token),
                encode(
                    Header(
                        state: .done, requestHash: decision.requestHash, time: decision.time,
                        transaction: transaction.value, chunks: 0)),
                at: coordinator)
        }
        try await transport.systemDelete(decisionKey(transaction), at: coordinator)
        _ = try await concurrently(Array(0..<decision.chunks)) { (index) throws(DynamoError) in
            try await transport.systemDelete(chunkKey(transaction.value, index), at: coordinator)
        }
    }

    /// Aborts `transaction` in every participant (a participant that cannot be reached
    /// keeps its locks until its leader resolves them).
    static func abort(
        _ transaction: TransactionID, in participants: [Int], over transport: some PartitionTransport
    )
        async
    {
        _ = try? await concurrently(participants) { (partition) throws(DynamoError) in
            try await transport.release(transaction, at: partition)
        }
    }

    static func corruption(_ detail: String) -> DynamoError {
        DynamoError("InternalServerError", "Internal server error: \(detail)")
    }

    // MARK: Encoding

    static func encode(_ header: Header) -> [UInt8] {
        var item: Item = [
            "state": .s(header.state.rawValue), "hash": .s(header.requestHash),
            "time": number(Int(header.time)), "chunks": number(header.chunks),
        ]
        if !header.transaction.isEmpty { item["txn"] = .s(header.transaction) }
        return ItemCodec.encode(item)
    }

    static func decodeHeader(_ bytes: [UInt8]) -> Header? {
        guard let item = try? ItemCodec.decode(bytes), case .s(let stateName)? = item["state"],
            let state = State(rawValue: stateName),
            case .s(let hash)? = item["hash"], let time = double(item["time"]), let chunks = int(item["chunks"])
        else { return nil }
        var transaction = ""
        if case .s(let id)? = item["txn"] { transaction = id }
        return Header(state: state, requestHash: hash, time: time, transaction: transaction, chunks: chunks)
    }

    static func encode(_ decision: Decision) -> [UInt8] {
        ItemCodec.encode([
            "state": .s(decision.state.rawValue), "time": number(Int(decision.time)),
            "parts": .l(decision.participants.map(number)), "chunks": number(decision.chunks),
            "token": .s(decision.token), "hash": .s(decision.requestHash),
        ])
    }

    static func decodeDecision(_ bytes: [UInt8]) -> Decision? {
        guard let item = try? ItemCodec.decode(bytes), case .s(let stateName)? = item["state"],
            let state = State(rawValue: stateName), let time = double(item["time"]),
            case .l(let parts)? = item["parts"], let chunks = int(item["chunks"]),
            case .s(let token)? = item["token"], case .s(let hash)? = item["hash"]
        else { return nil }
        let participants = parts.compactMap(int)
        guard participants.count == parts.count else { return nil }
        return Decision(
            state: state, time: time, participants: participants, chunks: chunks, token: token, requestHash: hash)
    }

    /// Writes as items of at most about `chunkBytesMax` each:
    /// {"w": [[partition, table, key, item or NULL, indexes (JSON), if any], ...],
    /// "t": time written}.
    private static func chunked(_ writes: [Int: [TransactionWrite]], time: Double) -> [Item] {
        var chunks: [Item] = []
        var current: [AttributeValue] = []
        var bytes = 0
        for (partition, list) in writes.sorted(by: { $0.key < $1.key }) {
            for write in list {
                let encoded = write.item.map(ItemCodec.encode)
                let image: AttributeValue = encoded.map { AttributeValue.b($0) } ?? .null
                var fields = [number(partition), number(Int(write.table)), .b(write.key), image]
                let indexes = write.indexes.flatMap { try? JSONEncoder().encode($0) }.map { [UInt8]($0) }
                if let indexes { fields.append(.b(indexes)) }
                let entry = AttributeValue.l(fields)
                if bytes > 0 && bytes + (encoded?.count ?? 0) + write.key.count > chunkBytesMax {
                    chunks.append(["w": .l(current), "t": number(Int(time))])
                    current = []
                    bytes = 0
                }
                current.append(entry)
                bytes += (encoded?.count ?? 0) + write.key.count + (indexes?.count ?? 0) + 32
            }
        }
        if !current.isEmpty { chunks.append(["w": .l(current), "t": number(Int(time))]) }
        return chunks
    }

    /// A chunk's writes, and when it was written (0 when an older build wrote it).
    static func decodeChunk(_ bytes: [UInt8]) -> (writes: [(Int, TransactionWrite)], time: Double)? {
        guard let item = try? ItemCodec.decode(bytes), case .l(let entries)? = item["w"] else { return nil }
        var writes: [(Int, TransactionWrite)] = []
        for entry in entries {
            guard case .l(let fields) = entry, fields.count == 4 || fields.count == 5, let index = int(fields[0]),
                let table = int(fields[1]).flatMap(UInt32.init(exactly:)), case .b(let key) = fields[2]
            else { return nil }
            var image: Item?
            if case .b(let encoded) = fields[3] {
                guard let decoded = try? ItemCodec.decode(encoded) else { return nil }
                image = decoded
            }
            var indexes: IndexMaintenance?
            if fields.count == 5 {
                guard case .b(let json) = fields[4],
                    let decoded = try? JSONDecoder().decode(IndexMaintenance.self, from: Data(json))
                else { return nil }
                indexes = decoded
            }
            writes.append((index, TransactionWrite(table: table, key: key, item: image, indexes: indexes)))
        }
        return (writes, double(item["t"]) ?? 0)
    }

    // MARK: Helpers

    private static func number(_ value: Int) -> AttributeValue { .n(try! Number(parsing: String(value))) }

    private static func int(_ value: AttributeValue?) -> Int? {
        guard case .n(let number)? = value else { return nil }
        return Int(number.description)
    }

    private static func double(_ value: AttributeValue?) -> Double? {
        guard case .n(let number)? = value else { return nil }
        return Double(number.description)
    }
}
