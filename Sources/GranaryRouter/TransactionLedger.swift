import GranaryCommands
import GranaryModel

/// Makes a transaction's writes all-or-nothing across partitions, each of which has a log
/// of its own, and remembers client request tokens.
///
/// With every key locked and every condition checked, the coordinator writes the final
/// images durably into its own partition (as chunks, since a log record is bounded), then
/// a header saying the transaction is committed: that header is the commit point. Then
/// each partition applies its writes, and the header is dropped (or, with a client token,
/// kept as "done" for ten minutes so that a retry is not applied twice). The locks are
/// released only after that, so no later write can be overtaken by a redo. When a node
/// opens, every committed header still there is applied again before the node serves;
/// the writes are final images, so applying one twice changes nothing.
///
/// Records live under table id 0 (never a user table): `txn/<id>` holds the header and
/// `txc/<id>/<n>` the chunks, both as items in the binary item form.
public enum TransactionLedger {
    /// DynamoDB keeps a ClientRequestToken for ten minutes.
    public static let tokenLifetimeSeconds = 600.0
    static let chunkBytesMax = 512 << 10

    public enum State: String, Sendable {
        case committed, done
    }

    public struct Header: Sendable {
        public var state: State
        public var requestHash: String
        public var time: Double  // seconds since 1970
        var chunks: Int
    }

    static func headerKey(_ id: String) -> [UInt8] { KeyEncoding.tablePrefix(0) + Array("txn/".utf8) + Array(id.utf8) }
    static func chunkKey(_ id: String, _ index: Int) -> [UInt8] {
        KeyEncoding.tablePrefix(0) + Array("txc/".utf8) + Array(id.utf8) + Array("/\(index)".utf8)
    }

    /// The header stored for `id` in partition `coordinator`, if any.
    public static func header(
        _ id: String, in coordinator: Int, over transport: some PartitionTransport
    ) async throws(DynamoError) -> Header? {
        guard let stored = try await transport.systemGet(headerKey(id), at: coordinator) else { return nil }
        guard let header = decodeHeader(stored) else {
            throw DynamoError("InternalServerError", "transaction record \(id) does not decode")
        }
        return header
    }

    /// Commits `writes` (by partition index) as described above; the keys must be locked
    /// by the caller. With `keepToken`, the header stays as a done record under `id`.
    public static func commit(
        id: String, keepToken: Bool, requestHash: String, now: Double, writes: [Int: [TransactionWrite]],
        coordinator: Int, over transport: some PartitionTransport
    ) async throws(DynamoError) {
        let chunks = chunked(writes)
        _ = try await concurrently(Array(chunks.enumerated())) { (index, chunk) throws(DynamoError) in
            try await transport.systemPut(chunkKey(id, index), ItemCodec.encode(chunk), at: coordinator)
        }
        try await transport.systemPut(
            headerKey(id), encode(Header(state: .committed, requestHash: requestHash, time: now, chunks: chunks.count)),
            at: coordinator)
        try await apply(writes, over: transport)
        try await finish(
            id, keepToken: keepToken, requestHash: requestHash, time: now, chunks: chunks.count, in: coordinator,
            over: transport)
    }

    /// Applies every committed transaction left in any partition, and drops expired
    /// tokens and stray chunks. Runs when the node opens, before it serves.
    public static func recover(over transport: some PartitionTransport, now: Double) async throws(DynamoError) {
        for coordinator in 0..<transport.map.count {
            for entry in try await transport.systemScan(prefix: headerKey(""), at: coordinator) {
                let id = String(decoding: entry.key.dropFirst(headerKey("").count), as: UTF8.self)
                guard let header = decodeHeader(entry.value) else {
                    throw corruption("transaction record \(id) in partition \(coordinator) does not decode")
                }
                switch header.state {
                case .committed:
                    var writes: [Int: [TransactionWrite]] = [:]
                    for index in 0..<header.chunks {
                        guard let stored = try await transport.systemGet(chunkKey(id, index), at: coordinator),
                            let chunk = decodeChunk(stored)
                        else {
                            throw corruption("transaction \(id) in partition \(coordinator) lacks chunk \(index)")
                        }
                        for (partition, write) in chunk { writes[partition, default: []].append(write) }
                    }
                    try await apply(writes, over: transport)
                    // A token's lifetime runs from the redo: the client may still be retrying.
                    try await finish(
                        id, keepToken: header.time + tokenLifetimeSeconds > now && !header.requestHash.isEmpty,
                        requestHash: header.requestHash, time: now, chunks: header.chunks, in: coordinator,
                        over: transport)
                case .done:
                    if header.time + tokenLifetimeSeconds <= now {
                        try await transport.systemDelete(entry.key, at: coordinator)
                    }
                }
            }
            // Chunks whose header never became durable belong to transactions that did not commit.
            for entry in try await transport.systemScan(prefix: Array(chunkKey("", 0).dropLast(2)), at: coordinator) {
                let rest = entry.key.dropFirst(headerKey("").count)
                guard let slash = rest.lastIndex(of: UInt8(ascii: "/")) else { continue }
                let id = String(decoding: rest[..<slash], as: UTF8.self)
                let header = try await transport.systemGet(headerKey(id), at: coordinator).flatMap(decodeHeader)
                if header?.state != .committed { try await transport.systemDelete(entry.key, at: coordinator) }
            }
        }
    }

    // MARK: Steps

    private static func apply(
        _ writes: [Int: [TransactionWrite]], over transport: some PartitionTransport
    ) async throws(DynamoError) {
        _ = try await concurrently(Array(writes)) { (index, writes) throws(DynamoError) in
            try await transport.apply(writes, at: index)
        }
    }

    private static func finish(
        _ id: String, keepToken: Bool, requestHash: String, time: Double, chunks: Int, in coordinator: Int,
        over transport: some PartitionTransport
    ) async throws(DynamoError) {
        if keepToken {
            try await transport.systemPut(
                headerKey(id), encode(Header(state: .done, requestHash: requestHash, time: time, chunks: 0)),
                at: coordinator)
        } else {
            try await transport.systemDelete(headerKey(id), at: coordinator)
        }
        _ = try await concurrently(Array(0..<chunks)) { (index) throws(DynamoError) in
            try await transport.systemDelete(chunkKey(id, index), at: coordinator)
        }
    }

    private static func corruption(_ detail: String) -> DynamoError {
        DynamoError("InternalServerError", "Internal server error: \(detail)")
    }

    // MARK: Encoding

    private static func encode(_ header: Header) -> [UInt8] {
        ItemCodec.encode([
            "state": .s(header.state.rawValue), "hash": .s(header.requestHash),
            "time": number(Int(header.time)), "chunks": number(header.chunks),
        ])
    }

    private static func decodeHeader(_ bytes: [UInt8]) -> Header? {
        guard let item = try? ItemCodec.decode(bytes), case .s(let stateName)? = item["state"],
            let state = State(rawValue: stateName),
            case .s(let hash)? = item["hash"], case .n(let time)? = item["time"], case .n(let chunks)? = item["chunks"],
            let seconds = Double(time.description), let count = Int(chunks.description)
        else { return nil }
        return Header(state: state, requestHash: hash, time: seconds, chunks: count)
    }

    /// Writes as items of at most about `chunkBytesMax` each: {"w": [[partition, table, key, item or NULL], ...]}.
    private static func chunked(_ writes: [Int: [TransactionWrite]]) -> [Item] {
        var chunks: [Item] = []
        var current: [AttributeValue] = []
        var bytes = 0
        for (partition, list) in writes.sorted(by: { $0.key < $1.key }) {
            for write in list {
                let encoded = write.item.map(ItemCodec.encode)
                let image: AttributeValue = encoded.map { AttributeValue.b($0) } ?? .null
                let entry = AttributeValue.l([number(partition), number(Int(write.table)), .b(write.key), image])
                if bytes > 0 && bytes + (encoded?.count ?? 0) + write.key.count > chunkBytesMax {
                    chunks.append(["w": .l(current)])
                    current = []
                    bytes = 0
                }
                current.append(entry)
                bytes += (encoded?.count ?? 0) + write.key.count + 32
            }
        }
        if !current.isEmpty { chunks.append(["w": .l(current)]) }
        return chunks
    }

    private static func decodeChunk(_ bytes: [UInt8]) -> [(Int, TransactionWrite)]? {
        guard let item = try? ItemCodec.decode(bytes), case .l(let entries)? = item["w"] else { return nil }
        var writes: [(Int, TransactionWrite)] = []
        for entry in entries {
            guard case .l(let fields) = entry, fields.count == 4, case .n(let partition) = fields[0],
                case .n(let table) = fields[1],
                case .b(let key) = fields[2], let index = Int(partition.description), let id = UInt32(table.description)
            else { return nil }
            var image: Item?
            if case .b(let encoded) = fields[3] {
                guard let decoded = try? ItemCodec.decode(encoded) else { return nil }
                image = decoded
            }
            writes.append((index, TransactionWrite(table: id, key: key, item: image)))
        }
        return writes
    }

    // MARK: Helpers

    private static func number(_ value: Int) -> AttributeValue { .n(try! Number(parsing: String(value))) }

}
