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
/// has a key of its own: one to four partition key attributes and none to four sort key
/// attributes (a multi-attribute key); its entries are partitioned by the hash of its
/// partition key, so they live in other partitions than the item, and reach them from the
/// item's partition after the write (`GlobalIndexOutbox`): eventually consistent. An item
/// without every index key attribute is not in the index (sparse).
///
/// An entry's B-tree key is:
///
///     partition prefix of the index partition key (`KeyEncoding.partitionPrefix`) of
///         `partitionValue`: the attribute's value, or one binary value made of several
///     each index sort key attribute's bytes, escaped and terminated (`KeyEncoding.terminated`)
///     a global index's: the table's partition key bytes, escaped and terminated
///     the table's sort key bytes
///
/// so that the entries of one index partition key are in index sort key order (by the
/// first sort attribute, then the second, ...), ties in the table's key order, and each
/// item has one entry.
public struct SecondaryIndex: Sendable, Equatable, Codable {
    public var name: String
    public var id: UInt32
    public var global: Bool
    /// One attribute, or up to four (a global index's multi-attribute key), in order.
    public var partitionKeys: [KeyAttribute]
    /// None (a global index may have no sort key), one, or up to four, in order.
    public var sortKeys: [KeyAttribute]
    public var projection: IndexProjection
    /// A global index's provisioned capacity (0 for an on-demand table).
    public var readCapacity = 0
    public var writeCapacity = 0
    /// A global index added to a table that has items, while they are copied in (its
    /// status CREATING, backfilling): written by every write, not yet read.
    public var creating = false
    /// How many items its build found with a key attribute it cannot take (of another
    /// type, empty, too long): left out of it, as DynamoDB leaves its index key violations.
    public var keyViolations = 0

    public init(
        name: String, id: UInt32, global: Bool = false, partitionKeys: [KeyAttribute], sortKeys: [KeyAttribute],
        projection: IndexProjection
    ) {
        precondition(
            (1...Self.keyAttributesMax).contains(partitionKeys.count) && sortKeys.count <= Self.keyAttributesMax)
        self.name = name
        self.id = id
        self.global = global
        self.partitionKeys = partitionKeys
        self.sortKeys = sortKeys
        self.projection = projection
    }

    public init(
        name: String, id: UInt32, global: Bool = false, partitionKey: KeyAttribute, sortKey: KeyAttribute?,
        projection: IndexProjection
    ) {
        self.init(
            name: name, id: id, global: global, partitionKeys: [partitionKey], sortKeys: sortKey.map { [$0] } ?? [],
            projection: projection)
    }

    /// DynamoDB's bound on a multi-attribute key's attributes, for each of its two parts.
    public static let keyAttributesMax = 4

    public var keyAttributes: [KeyAttribute] { partitionKeys + sortKeys }
    public var keyNames: [String] { keyAttributes.map(\.name) }

    /// The value an entry is partitioned by, from the partition key attributes' values in
    /// order: the value itself for one attribute; for several, one binary value of each
    /// one's type tag and bytes, terminated, so that equal tuples and only they share it.
    /// Nil when it would be longer than a partition key may be.
    public static func partitionValue(_ values: [AttributeValue]) -> AttributeValue? {
        guard values.count > 1 else { return values.first }
        var bytes: [UInt8] = []
        for value in values {
            bytes.append(KeyEncoding.typeTag(value))
            bytes += KeyEncoding.terminated(KeyEncoding.keyBytes(value))
        }
        return bytes.count <= ItemLimits.partitionKeyBytesMax ? .b(bytes) : nil
    }

    /// The bytes the sort key attributes' values take in an entry key, in order (each
    /// terminated, so that the next may follow).
    public static func sortBytes(_ values: [AttributeValue]) -> [UInt8] {
        values.reduce(into: []) { $0 += KeyEncoding.terminated(KeyEncoding.keyBytes($1)) }
    }
}

/// How a partition keeps a table's indexes as it writes the table's items: the table's key
/// names and its indexes, carried with each write command.
public struct IndexMaintenance: Sendable, Codable, Equatable {
    public var partitionKey: String
    public var sortKey: String?
    public var indexes: [SecondaryIndex]
    /// The table's `indexVersion` the indexes are of (not kept in `encoded`).
    public var version: Int

    public init(partitionKey: String, sortKey: String?, indexes: [SecondaryIndex], version: Int = 0) {
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.indexes = indexes
        self.version = version
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
        guard let tablePartition = item[partitionKey],
            let partitionValues = Self.values(of: index.partitionKeys, in: item),
            let partition = SecondaryIndex.partitionValue(partitionValues),
            partition.sizeBytes <= ItemLimits.partitionKeyBytesMax,
            let sortValues = Self.values(of: index.sortKeys, in: item)
        else { return nil }
        var key = KeyEncoding.partitionPrefix(table: index.id, partitionKey: partition)
        key += SecondaryIndex.sortBytes(sortValues)
        if index.global { key += KeyEncoding.terminated(KeyEncoding.keyBytes(tablePartition)) }
        if let sortKey, let sort = item[sortKey] { key += KeyEncoding.keyBytes(sort) }
        return (key, project(item, in: index))
    }

    /// The values of `keys` in `item`, nil unless it has each, of its type.
    static func values(of keys: [KeyAttribute], in item: Item) -> [AttributeValue]? {
        var values: [AttributeValue] = []
        for key in keys {
            guard let value = item[key.name], value.typeName == key.type else { return nil }
            values.append(value)
        }
        return values
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
                let bound =
                    index.partitionKeys.contains(key) ? ItemLimits.partitionKeyBytesMax : ItemLimits.sortKeyBytesMax
                if value.sizeBytes > bound {
                    throw .validation(
                        "One or more parameter values were invalid: Size of the index key \(key.name) has exceeded the "
                            + "maximum size limit of \(bound) bytes. IndexName: \(index.name)")
                }
            }
            if index.partitionKeys.count > 1, let values = Self.values(of: index.partitionKeys, in: item),
                SecondaryIndex.partitionValue(values) == nil
            {
                throw .validation(
                    "One or more parameter values were invalid: Size of the index partition key attributes together "
                        + "has exceeded the maximum size limit of \(ItemLimits.partitionKeyBytesMax) bytes. IndexName: "
                        + "\(index.name)")
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
