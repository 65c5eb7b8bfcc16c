/// One change to a replica's keys: what a log entry carries, one or several at a time.
public enum StoreWrite: Sendable, Equatable {
    case put(key: [UInt8], value: [UInt8])
    case delete(key: [UInt8])

    public var key: [UInt8] {
        switch self {
        case .put(let key, _), .delete(let key): key
        }
    }

    /// An entry's payload: a command byte (0 a no-op, 1 writes, 2 a membership: see
    /// `LogCommand`), then for writes their
    /// count (4 bytes) and each write: its kind (1 put, 2 delete), the key's length (4
    /// bytes) and the key, and for a put the value's length (4 bytes) and the value.
    static func encodeEntry(_ writes: [StoreWrite]) -> [UInt8] {
        var bytes: [UInt8] = [LogCommand.writesTag]
        bytes.reserveCapacity(
            5
                + writes.reduce(0) {
                    switch $1 {
                    case .put(let key, let value): $0 + 9 + key.count + value.count
                    case .delete(let key): $0 + 5 + key.count
                    }
                })
        append(UInt32(writes.count), to: &bytes)
        for write in writes {
            switch write {
            case .put(let key, let value):
                bytes.append(1)
                append(UInt32(key.count), to: &bytes)
                bytes += key
                append(UInt32(value.count), to: &bytes)
                bytes += value
            case .delete(let key):
                bytes.append(2)
                append(UInt32(key.count), to: &bytes)
                bytes += key
            }
        }
        return bytes
    }

    /// The writes of an entry's payload (none for a no-op), or nil if it does not parse.
    static func decodeEntry(_ bytes: [UInt8]) -> [StoreWrite]? {
        guard let command = bytes.first else { return nil }
        if command == 0 { return bytes.count == 1 ? [] : nil }
        guard command == 1 else { return nil }
        var position = 1
        func length() -> Int? {
            guard position + 4 <= bytes.count else { return nil }
            defer { position += 4 }
            return (0..<4).reduce(0) { $0 | Int(bytes[position + $1]) << (8 * $1) }
        }
        func take(_ count: Int) -> [UInt8]? {
            guard count <= bytes.count - position else { return nil }
            defer { position += count }
            return Array(bytes[position..<(position + count)])
        }
        guard let count = length(), count <= bytes.count else { return nil }
        var writes: [StoreWrite] = []
        writes.reserveCapacity(count)
        for _ in 0..<count {
            guard let kind = take(1)?.first, let keyLength = length(), let key = take(keyLength) else { return nil }
            switch kind {
            case 1:
                guard let valueLength = length(), let value = take(valueLength) else { return nil }
                writes.append(.put(key: key, value: value))
            case 2:
                writes.append(.delete(key: key))
            default:
                return nil
            }
        }
        return position == bytes.count ? writes : nil
    }

    /// A version-1 log record's payload: 1 (put) or 2 (delete), the key's length (4 bytes),
    /// the key, and for a put the rest is the value.
    static func decodeLegacy(_ bytes: [UInt8]) -> StoreWrite? {
        guard bytes.count >= 5 else { return nil }
        let length = Int(bytes[1]) | Int(bytes[2]) << 8 | Int(bytes[3]) << 16 | Int(bytes[4]) << 24
        guard 5 + length <= bytes.count else { return nil }
        let key = Array(bytes[5..<(5 + length)])
        switch bytes[0] {
        case 1: return .put(key: key, value: Array(bytes[(5 + length)...]))
        case 2: return bytes.count == 5 + length ? .delete(key: key) : nil
        default: return nil
        }
    }

    private static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

/// What a log entry holds: nothing (the no-op a new leader fills a gap with), writes
/// applied together, or a new membership of the replication group, opaque here: the tree
/// keeps the latest under `ReplicaStore.membershipKey`, so a checkpoint holds it too.
public enum LogCommand: Sendable, Equatable {
    case noop
    case writes([StoreWrite])
    case membership([UInt8])

    /// The first byte of a `writes` payload.
    public static let writesTag: UInt8 = 1

    /// The entry payload (`StoreWrite.encodeEntry`'s format, with command byte 2 for a
    /// membership, followed by its bytes).
    public var encoded: [UInt8] {
        switch self {
        case .noop: [0]
        case .writes(let writes): StoreWrite.encodeEntry(writes)
        case .membership(let bytes): [2] + bytes
        }
    }

    /// The command of an entry payload, or nil if it does not parse.
    public init?(decoding bytes: [UInt8]) {
        if bytes.first == 2 {
            self = .membership(Array(bytes.dropFirst()))
        } else if bytes == [0] {
            self = .noop
        } else if let writes = StoreWrite.decodeEntry(bytes) {
            self = .writes(writes)
        } else {
            return nil
        }
    }
}
