/// What a secondary index copies of each item, besides the table's and the index's keys.
public struct IndexProjection: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case all = "ALL", keysOnly = "KEYS_ONLY", include = "INCLUDE" }
    public var kind: Kind
    /// INCLUDE's attributes.
    public var nonKeyAttributes: [String]

    public init(kind: Kind, nonKeyAttributes: [String] = []) {
        self.kind = kind
        self.nonKeyAttributes = nonKeyAttributes
    }
}

/// A secondary index of a table, in the index's own key space (`id`, a number from the
/// same sequence as tables').
///
/// A local index shares the table's partition key and sorts each partition key's items by
/// another attribute; its entries live in the base item's partition and are written in
/// the same log entry as the item, so they are as consistent as the table. A global index
/// has a key of its own (a partition key, and a sort key or none): its entries are
/// partitioned by its partition key's hash, so they live in other partitions than the
/// item, and reach them from the item's partition after the write (`GlobalIndexOutbox`):
/// eventually consistent. An item without an index key attribute is not in the index
/// (sparse).
///
/// An entry's B-tree key is:
///
///     partition prefix of the index partition key (`KeyEncoding.partitionPrefix`)
///     the index sort key's bytes, escaped and terminated (`KeyEncoding.terminated`), if any
///     a global index's: the table's partition key bytes, escaped and terminated
///     the table's sort key bytes
///
/// so that the entries of one index partition key are in index sort key order, ties in
/// the table's key order, and each item has one entry.
public struct SecondaryIndex: Sendable, Equatable, Codable {
    public var name: String
    public var id: UInt32
    public var global: Bool
    public var partitionKey: KeyAttribute
    public var sortKey: KeyAttribute?
    public var projection: IndexProjection
    /// A global index's provisioned capacity (0 for an on-demand table).
    public var readCapacity = 0
    public var writeCapacity = 0
    /// A global index added to a table that has items, while they are copied in (its
    /// status CREATING, backfilling): written by every write, not yet read.
    public var creating = false

    public init(
        name: String, id: UInt32, global: Bool = false, partitionKey: KeyAttribute, sortKey: KeyAttribute?,
        projection: IndexProjection
    ) {
        self.name = name
        self.id = id
        self.global = global
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.projection = projection
    }

    public var keyNames: [String] { [partitionKey.name] + (sortKey.map { [$0.name] } ?? []) }
    public var keyAttributes: [KeyAttribute] { [partitionKey] + (sortKey.map { [$0] } ?? []) }
}

/// How a partition keeps a table's indexes as it writes the table's items: the table's key
/// names and its indexes, carried with each write command.
public struct IndexMaintenance: Sendable, Codable, Equatable {
    public var partitionKey: String
    public var sortKey: String?
    public var indexes: [SecondaryIndex]

    public init(partitionKey: String, sortKey: String?, indexes: [SecondaryIndex]) {
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.indexes = indexes
    }

    /// A compact stored form (the catalog's JSON for each index), for records that carry
    /// the indexes (`GlobalIndexOutbox`).
    public var encoded: [UInt8] {
        var object: [String: JSON] = [
            "pk": .string(partitionKey), "i": .array(indexes.map(\.catalogJSON)),
        ]
        if let sortKey { object["sk"] = .string(sortKey) }
        return JSON.object(object).serialized()
    }

    public init?(encoded bytes: [UInt8]) {
        guard let json = try? JSON.parse(bytes), case .string(let partitionKey)? = json["pk"],
            case .array(let list)? = json["i"]
        else { return nil }
        let indexes = list.compactMap(SecondaryIndex.init(catalogJSON:))
        guard indexes.count == list.count else { return nil }
        var sortKey: String?
        if case .string(let name)? = json["sk"] { sortKey = name }
        self.init(partitionKey: partitionKey, sortKey: sortKey, indexes: indexes)
    }

    public var localIndexes: [SecondaryIndex] { indexes.filter { !$0.global } }
    public var globalIndexes: [SecondaryIndex] { indexes.filter(\.global) }

    /// The entry `item` has in `index`: its B-tree key and the projected item; nil when the
    /// item lacks an index key attribute, or has one of another type or beyond DynamoDB's
    /// key sizes (refused by `checkIndexKeys` before any write).
    public func entry(of item: Item, in index: SecondaryIndex) -> (key: [UInt8], item: Item)? {
        guard let tablePartition = item[partitionKey], let partition = item[index.partitionKey.name],
            partition.typeName == index.partitionKey.type, partition.sizeBytes <= ItemLimits.partitionKeyBytesMax
        else { return nil }
        var key = KeyEncoding.partitionPrefix(table: index.id, partitionKey: partition)
        if let indexSort = index.sortKey {
            guard let value = item[indexSort.name], value.typeName == indexSort.type else { return nil }
            key += KeyEncoding.terminated(KeyEncoding.keyBytes(value))
        }
        if index.global { key += KeyEncoding.terminated(KeyEncoding.keyBytes(tablePartition)) }
        if let sortKey, let sort = item[sortKey] { key += KeyEncoding.keyBytes(sort) }
        return (key, project(item, in: index))
    }

    /// The attribute that marks an index entry holding only the keys (an attribute name is
    /// never empty in an item): the rest is read from the table.
    public static let referenceMarker = ""

    /// Whether `attribute` is one of the table's or `index`'s keys.
    public func isKey(_ attribute: String, of index: SecondaryIndex) -> Bool {
        attribute == partitionKey || attribute == sortKey || index.keyNames.contains(attribute)
    }

    /// What `index` keeps of `item`.
    public func project(_ item: Item, in index: SecondaryIndex) -> Item {
        switch index.projection.kind {
        case .all: return item
        case .keysOnly, .include:
            var kept = Set([partitionKey] + (sortKey.map { [$0] } ?? []) + index.keyNames)
            kept.formUnion(index.projection.nonKeyAttributes)
            return item.filter { kept.contains($0.key) }
        }
    }

    // MARK: Item collections

    /// DynamoDB's bound on an item collection (a partition key's items in the table and its
    /// local indexes).
    public static let collectionBytesMax = 10 << 30

    /// Where a partition keeps the size of an item collection: a record under table id 0
    /// (never a user table), next to the transaction records.
    public static func collectionKey(table: UInt32, partitionKey: AttributeValue) -> [UInt8] {
        KeyEncoding.tablePrefix(0) + Array("ics/".utf8)
            + KeyEncoding.partitionPrefix(table: table, partitionKey: partitionKey)
    }

    /// What an item takes in its collection: its size and its index entries' (DynamoDB's
    /// sizes).
    public func collectionBytes(of item: Item?) -> Int {
        guard let item else { return 0 }
        return localIndexes.reduce(item.sizeBytes) { $0 + (entry(of: item, in: $1)?.item.sizeBytes ?? 0) }
    }

    /// The longest entry key the B-tree takes (`BTreePage.keyBytesMax`): a partition key of
    /// 2,048 bytes with two sort keys of 1,024 each would not fit.
    public static let entryKeyBytesMax = 3200

    /// Refuses an item whose index key attribute has another type than the index's, or is
    /// an empty string or binary, as DynamoDB does before it writes anything; or whose
    /// entry's key would be longer than the B-tree takes.
    public func checkIndexKeys(_ item: Item) throws(DynamoError) {
        for index in indexes {
            for key in index.keyAttributes where key.name != partitionKey && key.name != sortKey {
                guard let value = item[key.name] else { continue }
                guard value.typeName == key.type else {
                    throw .validation(
                        "One or more parameter values were invalid: Type mismatch for Index Key \(key.name) Expected: "
                            + "\(key.type) Actual: \(value.typeName) IndexName: \(index.name)"
                    )
                }
                if value.sizeBytes == 0 {
                    throw .validation(
                        "One or more parameter values are not valid. A value specified for a secondary index key is "
                            + "not supported. The AttributeValue for a key attribute cannot contain an empty "
                            + "\(key.type == "S" ? "string" : "binary") value. IndexName: \(index.name), IndexKey: "
                            + "\(key.name)"
                    )
                }
                let bound = key == index.partitionKey ? ItemLimits.partitionKeyBytesMax : ItemLimits.sortKeyBytesMax
                if value.sizeBytes > bound {
                    throw .validation(
                        "One or more parameter values were invalid: Size of the index key \(key.name) has exceeded the "
                            + "maximum size limit of \(bound) bytes. IndexName: \(index.name)")
                }
            }
            if let entry = entry(of: item, in: index), entry.key.count > Self.entryKeyBytesMax {
                throw .validation(
                    "One or more parameter values were invalid: the keys of this item take \(entry.key.count) bytes "
                        + "in index \(index.name), more than the \(Self.entryKeyBytesMax) this node stores"
                )
            }
        }
    }
}

extension TableInfo {
    /// The table as `index` orders it: its key schema is the index's, for reading a Query's
    /// key condition.
    public func viewing(_ index: SecondaryIndex) -> TableInfo {
        var view = self
        view.partitionKey = index.partitionKey
        view.sortKey = index.sortKey
        return view
    }
}
