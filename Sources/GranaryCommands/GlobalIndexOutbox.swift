import GranaryModel

/// A base item's changes to its table's global secondary indexes, on their way.
///
/// A global index's entries live in the partitions that own their index partition key,
/// not the item's. So a write that changes an item's global index entries records, in the
/// same log entry, an outbox record under `key(item:)` in the item's partition: the entry
/// keys the item no longer has, and the indexes to keep. The item's partition's leader
/// ships its records (`GlobalIndexShipper`): it reads the item as it is then, puts its
/// entries (whole) and deletes the keys the record names that the item no longer has, in
/// the index partitions, then drops each record it shipped unless a later write changed it
/// meanwhile (`settleOutbox`), which makes it ship again. A later write to an item whose
/// record is still there adds its keys to it (`merged`). Every step is a whole-entry put
/// or delete of what the item is now, so shipping a record again, or late, leaves the
/// indexes as the item is; an entry's key names its item (`SecondaryIndex`), so no two
/// items' records touch one entry. An empty outbox means every global index holds every
/// write made before.
public struct GlobalIndexOutbox: Sendable, Equatable {
    /// Entry keys to delete unless the item, when shipped, has an entry under one.
    public var deletes: [[UInt8]]
    /// The table's keys and global indexes (as when the record was last written).
    public var indexes: IndexMaintenance

    public init(deletes: [[UInt8]], indexes: IndexMaintenance) {
        self.deletes = deletes
        self.indexes = indexes
    }

    public static let prefix = KeyEncoding.tablePrefix(0) + Array("gso/".utf8)

    /// Where the record of the item under `item` (its B-tree key) is kept.
    public static func key(item: [UInt8]) -> [UInt8] { prefix + item }

    /// The item key a record's key names, nil for another key.
    public static func item(of key: [UInt8]) -> [UInt8]? {
        guard key.starts(with: prefix), key.count > prefix.count + KeyEncoding.tablePrefixBytes else { return nil }
        return Array(key[prefix.count...])
    }

    /// The record a change of an item from `old` to `new` (nil: absent) needs; nil when it
    /// changes no global index entry.
    public static func changes(_ maintenance: IndexMaintenance, old: Item?, new: Item?) -> GlobalIndexOutbox? {
        let globals = maintenance.globalIndexes
        guard !globals.isEmpty else { return nil }
        var changed = false
        var deletes: [[UInt8]] = []
        for index in globals {
            let before = old.flatMap { maintenance.entry(of: $0, in: index) }
            let after = new.flatMap { maintenance.entry(of: $0, in: index) }
            if before?.key == after?.key && before?.item == after?.item { continue }
            changed = true
            if let before, before.key != after?.key { deletes.append(before.key) }
        }
        guard changed else { return nil }
        let kept = IndexMaintenance(
            partitionKey: maintenance.partitionKey, sortKey: maintenance.sortKey, indexes: globals)
        return GlobalIndexOutbox(deletes: deletes, indexes: kept)
    }

    /// This change after `pending` (a record not yet shipped, or shipped and not yet
    /// dropped): both one's deletes.
    public func merged(after pending: GlobalIndexOutbox?) -> GlobalIndexOutbox {
        guard let pending else { return self }
        var seen = Set(deletes)
        return GlobalIndexOutbox(
            deletes: deletes + pending.deletes.filter { seen.insert($0).inserted }, indexes: indexes)
    }

    /// What shipping the record writes for the item as it is now (nil: deleted): its
    /// entries, and the deletes of the keys it does not have.
    public func writes(for item: Item?) -> (deletes: [[UInt8]], puts: [SystemEntry]) {
        let puts = (item.map { item in indexes.indexes.compactMap { indexes.entry(of: item, in: $0) } } ?? [])
            .map { SystemEntry(key: $0.key, value: ItemCodec.encode($0.item)) }
        let putting = Set(puts.map(\.key))
        return (deletes.filter { !putting.contains($0) }, puts)
    }

    /// The record's stored form: an item {"d": [keys], "m": the indexes, encoded
    /// (`IndexMaintenance.encoded`)}.
    public var encoded: [UInt8] {
        ItemCodec.encode(["d": .l(deletes.map { .b($0) }), "m": .b(indexes.encoded)])
    }

    public init?(encoded bytes: [UInt8]) {
        guard let item = try? ItemCodec.decode(bytes), case .l(let deletes)? = item["d"],
            case .b(let stored)? = item["m"], let indexes = IndexMaintenance(encoded: stored)
        else { return nil }
        var keys: [[UInt8]] = []
        for delete in deletes {
            guard case .b(let key) = delete else { return nil }
            keys.append(key)
        }
        self.init(deletes: keys, indexes: indexes)
    }
}
