/// A key attribute of a table: its name and scalar type (S, N or B).
public struct KeyAttribute: Sendable, Equatable, Codable {
    public var name: String
    public var type: String
    public init(name: String, type: String) { self.name = name; self.type = type }
}

/// What the node knows of a table: its key schema and settings. Kept durably by the
/// catalog (as JSON), cached on every core.
public struct TableInfo: Sendable {
    /// The table's number in B-tree keys; never reused, so a deleted table's leftovers can
    /// never surface in a new table of the same name.
    public var id: UInt32
    public var name: String
    public var partitionKey: KeyAttribute
    public var sortKey: KeyAttribute?
    public var attributeDefinitions: [KeyAttribute]
    public var billingMode: String  // PROVISIONED or PAY_PER_REQUEST
    public var readCapacity: Int
    public var writeCapacity: Int
    public var createdAt: Double  // seconds since 1970
    public var uuid: String
    public var tags: [String: String]
    public var ttlAttribute: String?
    public var ttlEnabled: Bool
    public var deletionProtection: Bool
    public var tableClass: String
    /// Its local secondary indexes, fixed at creation, and its global ones.
    public var localIndexes: [SecondaryIndex] = []
    public var globalIndexes: [SecondaryIndex] = []
    /// How many times a global index was added to or deleted from the table: writes carry
    /// it, so that a partition refuses one routed by a node whose catalog is behind
    /// (`PartitionRequest.indexVersion`).
    public var indexVersion = 0

    public init(
        id: UInt32, name: String, partitionKey: KeyAttribute, sortKey: KeyAttribute?,
        attributeDefinitions: [KeyAttribute],
        billingMode: String, readCapacity: Int, writeCapacity: Int, createdAt: Double, uuid: String
    ) {
        self.id = id
        self.name = name
        self.partitionKey = partitionKey
        self.sortKey = sortKey
        self.attributeDefinitions = attributeDefinitions
        self.billingMode = billingMode
        self.readCapacity = readCapacity
        self.writeCapacity = writeCapacity
        self.createdAt = createdAt
        self.uuid = uuid
        self.tags = [:]
        self.ttlAttribute = nil
        self.ttlEnabled = false
        self.deletionProtection = false
        self.tableClass = "STANDARD"
    }

    public var keyNames: [String] { [partitionKey.name] + (sortKey.map { [$0.name] } ?? []) }
    public var keyAttributes: [KeyAttribute] { [partitionKey] + (sortKey.map { [$0] } ?? []) }

    /// What each write carries to keep the table's indexes: nil for a table that has none
    /// and never had a global index added or deleted.
    public var indexMaintenance: IndexMaintenance? {
        let indexes = localIndexes + globalIndexes
        guard !indexes.isEmpty || indexVersion > 0 else { return nil }
        return IndexMaintenance(
            partitionKey: partitionKey.name, sortKey: sortKey?.name, indexes: indexes, version: indexVersion)
    }

    public func index(named name: String) -> SecondaryIndex? {
        localIndexes.first { $0.name == name } ?? globalIndexes.first { $0.name == name }
    }

    public var allIndexes: [SecondaryIndex] { localIndexes + globalIndexes }

    // MARK: Keys of items

    /// The primary key of `item`, checked against the schema as DynamoDB checks it. With
    /// `keyOnly` (a Key parameter), attributes other than the key are refused.
    public func primaryKey(
        of item: Item, keyOnly: Bool
    ) throws(DynamoError) -> (partition: AttributeValue, sort: AttributeValue?) {
        if keyOnly && item.count != keyNames.count {
            throw .validation("The provided key element does not match the schema")
        }
        let partition = try keyValue(partitionKey, in: item, keyOnly: keyOnly)
        var sort: AttributeValue?
        if let sortKey { sort = try keyValue(sortKey, in: item, keyOnly: keyOnly) }
        return (partition, sort)
    }

    /// A key value's size against DynamoDB's limits for its key attribute: not empty, at
    /// most 2048 bytes for a partition key and 1024 for a sort key. Its type is checked by
    /// the caller, whose error message depends on where the value came from.
    public func checkKeySize(_ value: AttributeValue, of attribute: KeyAttribute) throws(DynamoError) {
        try Self.checkKeySize(value, of: attribute, partition: attribute.name == partitionKey.name)
    }

    /// A key value's size against the limits of a partition key attribute (`partition`) or
    /// of a sort key attribute.
    public static func checkKeySize(
        _ value: AttributeValue, of attribute: KeyAttribute, partition: Bool
    ) throws(DynamoError) {
        let size = value.sizeBytes
        if size == 0 {  // an empty S or B
            throw .validation(
                "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty \(attribute.type == "S" ? "string" : "binary") value. Key: \(attribute.name)"
            )
        }
        if partition {
            guard size <= ItemLimits.partitionKeyBytesMax else {
                throw .validation(
                    "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes"
                )
            }
        } else {
            guard size <= ItemLimits.sortKeyBytesMax else {
                throw .validation(
                    "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes"
                )
            }
        }
    }

    /// Whether `value` can be key `attribute`'s value: its type and size (what
    /// `KeyEncoding` requires of every value it encodes).
    public func checkKeyValue(_ value: AttributeValue, of attribute: KeyAttribute) throws(DynamoError) {
        guard value.typeName == attribute.type else {
            throw .validation("The provided key element does not match the schema")
        }
        try checkKeySize(value, of: attribute)
    }

    private func keyValue(_ attribute: KeyAttribute, in item: Item, keyOnly: Bool) throws(DynamoError) -> AttributeValue
    {
        guard let value = item[attribute.name] else {
            if keyOnly { throw .validation("The provided key element does not match the schema") }
            throw .validation(
                "One or more parameter values were invalid: Missing the key \(attribute.name) in the item")
        }
        guard value.typeName == attribute.type else {
            if keyOnly { throw .validation("The provided key element does not match the schema") }
            throw .validation(
                "One or more parameter values were invalid: Type mismatch for key \(attribute.name) expected: \(attribute.type) actual: \(value.typeName)"
            )
        }
        try checkKeySize(value, of: attribute)
        return value
    }

    /// The B-tree key of the item with this primary key.
    public func storageKey(partition: AttributeValue, sort: AttributeValue?) -> [UInt8] {
        KeyEncoding.itemKey(table: id, partitionKey: partition, sortKey: sort)
    }

    // MARK: The catalog's JSON

    public var catalogJSON: JSON {
        var object: [String: JSON] = [
            "id": .number(String(id)), "name": .string(name),
            "partitionKey": .array([.string(partitionKey.name), .string(partitionKey.type)]),
            "attributeDefinitions": .array(attributeDefinitions.map { .array([.string($0.name), .string($0.type)]) }),
            "billingMode": .string(billingMode), "readCapacity": .number(String(readCapacity)),
            "writeCapacity": .number(String(writeCapacity)), "createdAt": .number(String(createdAt)),
            "uuid": .string(uuid), "tags": .object(tags.mapValues { .string($0) }),
            "ttlEnabled": .bool(ttlEnabled), "deletionProtection": .bool(deletionProtection),
            "tableClass": .string(tableClass),
        ]
        if let sortKey { object["sortKey"] = .array([.string(sortKey.name), .string(sortKey.type)]) }
        if let ttlAttribute { object["ttlAttribute"] = .string(ttlAttribute) }
        if !localIndexes.isEmpty { object["localIndexes"] = .array(localIndexes.map(\.catalogJSON)) }
        if !globalIndexes.isEmpty { object["globalIndexes"] = .array(globalIndexes.map(\.catalogJSON)) }
        if indexVersion > 0 { object["indexVersion"] = .number(String(indexVersion)) }
        return .object(object)
    }

    public init?(catalogJSON json: JSON) {
        func key(_ value: JSON?) -> KeyAttribute? {
            guard case .array(let pair)? = value, pair.count == 2, case .string(let name) = pair[0],
                case .string(let type) = pair[1]
            else { return nil }
            return KeyAttribute(name: name, type: type)
        }
        func string(_ name: String) -> String? { if case .string(let text)? = json[name] { return text }; return nil }
        func number(_ name: String) -> Double? {
            if case .number(let text)? = json[name] { return Double(text) }; return nil
        }
        func flag(_ name: String) -> Bool { if case .bool(let value)? = json[name] { return value }; return false }
        guard let id = number("id"), let name = string("name"), let partitionKey = key(json["partitionKey"]),
            case .array(let definitions)? = json["attributeDefinitions"], let billingMode = string("billingMode"),
            let read = number("readCapacity"), let write = number("writeCapacity"), let createdAt = number("createdAt"),
            let uuid = string("uuid")
        else { return nil }
        self.init(
            id: UInt32(id), name: name, partitionKey: partitionKey, sortKey: key(json["sortKey"]),
            attributeDefinitions: definitions.compactMap { key($0) }, billingMode: billingMode,
            readCapacity: Int(read), writeCapacity: Int(write), createdAt: createdAt, uuid: uuid)
        if case .object(let tags)? = json["tags"] {
            self.tags = tags.compactMapValues {
                if case .string(let text) = $0 { return text }; return nil
            }
        }
        ttlAttribute = string("ttlAttribute")
        ttlEnabled = flag("ttlEnabled")
        deletionProtection = flag("deletionProtection")
        tableClass = string("tableClass") ?? "STANDARD"
        indexVersion = number("indexVersion").map { Int($0) } ?? 0
        // Catalogs written before indexes existed have no "localIndexes".
        for (member, global) in [("localIndexes", false), ("globalIndexes", true)] {
            guard case .array(let list)? = json[member] else { continue }
            let indexes = list.compactMap(SecondaryIndex.init(catalogJSON:))
            guard indexes.count == list.count, indexes.allSatisfy({ $0.global == global }) else { return nil }
            if global { globalIndexes = indexes } else { localIndexes = indexes }
        }
    }
}

extension SecondaryIndex {
    var catalogJSON: JSON {
        func pair(_ key: KeyAttribute) -> JSON { .array([.string(key.name), .string(key.type)]) }
        var object: [String: JSON] = [
            "name": .string(name), "id": .number(String(id)),
            "projection": .string(projection.kind.rawValue),
            "nonKeyAttributes": .array(projection.nonKeyAttributes.map { .string($0) }),
        ]
        // One key attribute as the first catalogs wrote it; several (a multi-attribute key)
        // as a list, which a build without them refuses to open rather than misread.
        for (keys, one, several) in [
            (partitionKeys, "partitionKey", "partitionKeys"), (sortKeys, "sortKey", "sortKeys"),
        ] {
            if keys.count == 1 {
                object[one] = pair(keys[0])
            } else if keys.count > 1 {
                object[several] = .array(keys.map(pair))
            }
        }
        if creating { object["creating"] = .bool(true) }
        if keyViolations > 0 { object["keyViolations"] = .number(String(keyViolations)) }
        if global {
            object["global"] = .bool(true)
            object["readCapacity"] = .number(String(readCapacity))
            object["writeCapacity"] = .number(String(writeCapacity))
        }
        return .object(object)
    }

    init?(catalogJSON json: JSON) {
        func key(_ value: JSON?) -> KeyAttribute? {
            guard case .array(let pair)? = value, pair.count == 2, case .string(let name) = pair[0],
                case .string(let type) = pair[1]
            else { return nil }
            return KeyAttribute(name: name, type: type)
        }
        func number(_ name: String) -> Int { if case .number(let text)? = json[name] { Int(text) ?? 0 } else { 0 } }
        func keys(one: String, several: String) -> [KeyAttribute]? {
            if let single = key(json[one]) { return [single] }
            guard case .array(let list)? = json[several] else { return [] }
            let keys = list.compactMap { key($0) }
            return keys.count == list.count && keys.count <= Self.keyAttributesMax ? keys : nil
        }
        let global = json["global"] == .bool(true)
        guard case .string(let name)? = json["name"], case .number(let id)? = json["id"], let id = UInt32(id),
            let partitionKeys = keys(one: "partitionKey", several: "partitionKeys"), !partitionKeys.isEmpty,
            let sortKeys = keys(one: "sortKey", several: "sortKeys"),
            case .string(let kind)? = json["projection"], let kind = IndexProjection.Kind(rawValue: kind),
            case .array(let attributes)? = json["nonKeyAttributes"]
        else { return nil }
        guard global || (partitionKeys.count == 1 && sortKeys.count == 1) else { return nil }  // a local index's key
        let nonKey = attributes.compactMap { if case .string(let name) = $0 { name } else { nil } }
        self.init(
            name: name, id: id, global: global, partitionKeys: partitionKeys, sortKeys: sortKeys,
            projection: IndexProjection(kind: kind, nonKeyAttributes: nonKey))
        readCapacity = number("readCapacity")
        writeCapacity = number("writeCapacity")
        creating = json["creating"] == .bool(true)
        keyViolations = number("keyViolations")
    }
}
