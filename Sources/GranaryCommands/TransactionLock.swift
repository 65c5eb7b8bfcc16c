import GranaryModel

/// A prepared transaction's durable locks in one partition: the record a partition's
/// leader writes when the transaction's commands there may all go ahead, and drops when
/// the transaction is applied or aborted. A new leader locks the keys of every record it
/// finds before it serves, so a change of leader between a transaction's prepare and its
/// commit lets no other write in. A record whose transaction does not finish is resolved
/// through the ledger of partition `coordinator` (the router's `TransactionLedger`).
///
/// Stored under table id 0 as `txl/<transaction>`, an item in the binary item form.
public struct TransactionLock: Sendable, Equatable {
    public var transaction: TransactionID
    /// The partition whose ledger holds the transaction's decision.
    public var coordinator: Int
    /// When the leader wrote it (seconds since 1970, its wall clock).
    public var time: Double
    public var keys: [[UInt8]]

    public init(transaction: TransactionID, coordinator: Int, time: Double, keys: [[UInt8]]) {
        self.transaction = transaction
        self.coordinator = coordinator
        self.time = time
        self.keys = keys
    }

    public static let prefix = KeyEncoding.tablePrefix(0) + Array("txl/".utf8)

    public static func key(_ transaction: TransactionID) -> [UInt8] { prefix + Array(transaction.value.utf8) }

    public var encoded: [UInt8] {
        ItemCodec.encode([
            "c": .n(try! Number(parsing: String(coordinator))), "t": .n(try! Number(parsing: String(Int(time)))),
            "k": .l(keys.map { .b($0) }),
        ])
    }

    /// The record stored under `key`, or nil when it does not decode.
    public init?(key: [UInt8], value: [UInt8]) {
        guard key.starts(with: Self.prefix), let item = try? ItemCodec.decode(value),
            case .n(let coordinator)? = item["c"], let index = Int(coordinator.description),
            case .n(let time)? = item["t"], let seconds = Double(time.description),
            case .l(let keys)? = item["k"]
        else { return nil }
        var decoded: [[UInt8]] = []
        for key in keys {
            guard case .b(let bytes) = key else { return nil }
            decoded.append(bytes)
        }
        self.init(
            transaction: TransactionID(String(decoding: key.dropFirst(Self.prefix.count), as: UTF8.self)),
            coordinator: index, time: seconds, keys: decoded)
    }
}
