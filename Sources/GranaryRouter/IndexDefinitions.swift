import GranaryModel

/// CreateTable's LocalSecondaryIndexes and GlobalSecondaryIndexes, checked as DynamoDB
/// checks them, and their part of DescribeTable.
extension DynamoService {
    static let localIndexesMax = 5
    static let globalIndexesMax = 20
    static let projectedAttributesMax = 100

    /// The secondary indexes a CreateTable asks for (their ids are given by the catalog),
    /// and the check that every attribute definition is a key of the table's or of an
    /// index.
    func secondaryIndexes(
        _ fields: RequestFields, tableKeys: [KeyAttribute], definitions: [KeyAttribute], billing: String
    ) throws(DynamoError) -> (local: [SecondaryIndex], global: [SecondaryIndex]) {
        var local: [SecondaryIndex] = []
        var global: [SecondaryIndex] = []
        if let list = try fields.array("LocalSecondaryIndexes") {
            local = try localIndexes(
                list, partitionKey: tableKeys[0], sortKey: tableKeys.count == 2 ? tableKeys[1] : nil,
                definitions: definitions)
        }
        if let list = try fields.array("GlobalSecondaryIndexes") {
            global = try globalIndexes(list, definitions: definitions, billing: billing, taken: local.map(\.name))
        }
        let indexes = local + global
        let projected = indexes.reduce(0) { $0 + $1.projection.nonKeyAttributes.count }
        guard projected <= Self.projectedAttributesMax else {
            throw .validation(
                "One or more parameter values were invalid: Number of projected attributes in all indexes exceeds "
                    + "limit of \(Self.projectedAttributesMax), number of projected attributes:\(projected)"
            )
        }
        var used = tableKeys.map(\.name)
        for name in indexes.flatMap(\.keyNames) where !used.contains(name) { used.append(name) }
        guard definitions.count == used.count else {
            throw .validation(
                indexes.isEmpty
                    ? "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly "
                        + "match number of attributes defined in AttributeDefinitions"
                    : "One or more parameter values were invalid: Some AttributeDefinitions are not used. "
                        + "AttributeDefinitions: [\(definitions.map(\.name).joined(separator: ", "))], keys used: "
                        + "[\(used.joined(separator: ", "))]")
        }
        return (local, global)
    }

    /// One index of a list, what both kinds share: its name, its key schema (attributes
    /// defined: the partition key's and the sort key's) and its projection.
    private static func indexDefinition(
        _ element: JSON, path: String, list: String, definitions: [KeyAttribute], global: Bool
    ) throws(DynamoError) -> (
        name: String, keys: (partition: [KeyAttribute], sort: [KeyAttribute]), projection: IndexProjection,
        member: [String: JSON]
    ) {
        guard case .object(let member) = element else {
            throw .serialization("Unexpected value for '\(list)': expected a structure")
        }
        let name = try indexName(member["IndexName"], path: path)
        guard case .array(let schema)? = member["KeySchema"] else {
            throw .validation(
                "1 validation error detected: Value null at '\(path).keySchema' failed to satisfy constraint: "
                    + "Member must not be null"
            )
        }
        let keys = try indexKeySchema(schema, path: path, global: global)
        let names = keys.map(\.name)
        let defined = names.compactMap { name in definitions.first { $0.name == name } }
        guard defined.count == names.count else {
            throw .validation(
                "One or more parameter values were invalid: Some index key attributes are not defined in "
                    + "AttributeDefinitions. Keys: [\(names.joined(separator: ", "))], AttributeDefinitions: "
                    + "[\(definitions.map(\.name).joined(separator: ", "))]"
            )
        }
        let partitionCount = keys.prefix { $0.type == "HASH" }.count
        return (
            name, (Array(defined.prefix(partitionCount)), Array(defined.dropFirst(partitionCount))),
            try indexProjection(member["Projection"], path: path), member
        )
    }

    /// The local secondary indexes of a CreateTable's list, against the table's key
    /// schema and attribute definitions.
    func localIndexes(
        _ list: [JSON], partitionKey: KeyAttribute, sortKey: KeyAttribute?, definitions: [KeyAttribute]
    ) throws(DynamoError) -> [SecondaryIndex] {
        guard !list.isEmpty else {
            throw .validation("One or more parameter values were invalid: List of LocalSecondaryIndexes is empty")
        }
        guard sortKey != nil else {
            throw .validation(
                "One or more parameter values were invalid: Table KeySchema does not have a range key, which is "
                    + "required when specifying a LocalSecondaryIndex"
            )
        }
        var indexes: [SecondaryIndex] = []
        for (position, element) in list.enumerated() {
            let (name, keys, projection, _) = try Self.indexDefinition(
                element, path: "localSecondaryIndexes.\(position + 1).member", list: "LocalSecondaryIndexes",
                definitions: definitions, global: false)
            guard keys.sort.count == 1 else {
                throw .validation(
                    "One or more parameter values were invalid: Index KeySchema does not have a range key for index: "
                        + "\(name)"
                )
            }
            guard keys.partition[0].name == partitionKey.name else {
                throw .validation(
                    "One or more parameter values were invalid: Index KeySchema does not have the same leading hash "
                        + "key as table KeySchema for index: \(name). index hash key: \(keys.partition[0].name), "
                        + "table hash key: "
                        + "\(partitionKey.name)"
                )
            }
            guard !indexes.contains(where: { $0.name == name }) else {
                throw .validation("One or more parameter values were invalid: Duplicate index name: \(name)")
            }
            indexes.append(
                SecondaryIndex(
                    name: name, id: 0, partitionKey: partitionKey, sortKey: keys.sort[0], projection: projection))
        }
        guard indexes.count <= Self.localIndexesMax else {
            throw .validation(
                "One or more parameter values were invalid: Number of LocalSecondaryIndexes exceeds per-table limit "
                    + "of \(Self.localIndexesMax)"
            )
        }
        return indexes
    }

    /// The global secondary indexes of a CreateTable's list: any key schema of defined
    /// attributes, and provisioned capacity exactly when the table's billing is.
    func globalIndexes(
        _ list: [JSON], definitions: [KeyAttribute], billing: String, taken: [String]
    ) throws(DynamoError) -> [SecondaryIndex] {
        guard !list.isEmpty else {
            throw .validation("One or more parameter values were invalid: List of GlobalSecondaryIndexes is empty")
        }
        var indexes: [SecondaryIndex] = []
        for (position, element) in list.enumerated() {
            let path = "globalSecondaryIndexes.\(position + 1).member"
            let (name, keys, projection, member) = try Self.indexDefinition(
                element, path: path, list: "GlobalSecondaryIndexes", definitions: definitions, global: true)
            guard !taken.contains(name) && !indexes.contains(where: { $0.name == name }) else {
                throw .validation("One or more parameter values were invalid: Duplicate index name: \(name)")
            }
            var index = SecondaryIndex(
                name: name, id: 0, global: true, partitionKeys: keys.partition, sortKeys: keys.sort,
                projection: projection)
            (index.readCapacity, index.writeCapacity) = try Self.indexThroughput(
                member["ProvisionedThroughput"], name: name, billing: billing, path: path)
            indexes.append(index)
        }
        guard indexes.count <= Self.globalIndexesMax else {
            throw .validation(
                "One or more parameter values were invalid: GlobalSecondaryIndex count exceeds the per-table limit of "
                    + "\(Self.globalIndexesMax)"
            )
        }
        return indexes
    }

    static func indexThroughput(
        _ value: JSON?, name: String, billing: String, path: String
    ) throws(DynamoError) -> (Int, Int) {
        let given: [String: JSON]? = if case .object(let object)? = value { object } else { nil }
        if billing == "PAY_PER_REQUEST" {
            guard given == nil else {
                throw .validation(
                    "One or more parameter values were invalid: ProvisionedThroughput should not be specified for "
                        + "index: \(name) when BillingMode is PAY_PER_REQUEST")
            }
            return (0, 0)
        }
        guard let given else {
            throw .validation(
                "One or more parameter values were invalid: ProvisionedThroughput must be specified for index: \(name)")
        }
        var units: [Int] = []
        for member in ["ReadCapacityUnits", "WriteCapacityUnits"] {
            guard case .number(let text)? = given[member], let number = Int(text) else {
                throw .validation(
                    "1 validation error detected: Value null at '\(path).provisionedThroughput."
                        + "\(RequestFields.memberPath(member))' failed to satisfy constraint: Member must not be null")
            }
            guard number >= 1 else {
                throw .validation(
                    "1 validation error detected: Value '\(number)' at '\(path).provisionedThroughput."
                        + "\(RequestFields.memberPath(member))' failed to satisfy constraint: Member must have value "
                        + "greater than or equal to 1")
            }
            units.append(number)
        }
        return (units[0], units[1])
    }

    private static func indexName(_ value: JSON?, path: String) throws(DynamoError) -> String {
        guard case .string(let name)? = value else {
            throw .validation(
                "1 validation error detected: Value null at '\(path).indexName' failed to satisfy constraint: Member "
                    + "must not be null"
            )
        }
        if name.count < 3 || name.count > 255 {
            throw .validation(
                "1 validation error detected: Value '\(name)' at '\(path).indexName' failed to satisfy constraint: "
                    + "Member must have length "
                    + "\(name.count < 3 ? "greater than or equal to 3" : "less than or equal to 255")"
            )
        }
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII
                && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
                    || "_.-".unicodeScalars.contains(scalar))
        }
        guard allowed else {
            throw .validation(
                "1 validation error detected: Value '\(name)' at '\(path).indexName' failed to satisfy constraint: "
                    + "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            )
        }
        return name
    }

    /// An index's KeySchema: a local index's a HASH and a RANGE element; a global index's
    /// a HASH element and at most one RANGE, or a multi-attribute key of up to four HASH
    /// elements followed by up to four RANGE elements.
    private static func indexKeySchema(
        _ schema: [JSON], path: String, global: Bool
    ) throws(DynamoError) -> [(name: String, type: String)] {
        let most = global ? 2 * SecondaryIndex.keyAttributesMax : 2
        guard (1...most).contains(schema.count) else {
            throw .validation(
                "1 validation error detected: Value '\(schema.count)' at '\(path).keySchema' failed to satisfy "
                    + "constraint: Member must have length "
                    + "\(schema.isEmpty ? "greater than or equal to 1" : "less than or equal to \(most)")"
            )
        }
        var keys: [(name: String, type: String)] = []
        for (position, element) in schema.enumerated() {
            guard case .object(let member) = element, case .string(let name)? = member["AttributeName"],
                case .string(let type)? = member["KeyType"]
            else {
                throw .validation("Invalid KeySchema: each element needs AttributeName and KeyType")
            }
            guard type == "HASH" || type == "RANGE" else {
                throw .validation(
                    "1 validation error detected: Value '\(type)' at '\(path).keySchema.\(position + 1).member."
                        + "keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]")
            }
            guard !keys.contains(where: { $0.name == name }) else {
                if keys.count == 1 && schema.count == 2 {
                    throw .validation("Both the Hash Key and the Range Key element in the KeySchema have the same name")
                }
                throw .validation(
                    "One or more parameter values were invalid: Duplicate attribute name in KeySchema: \(name)")
            }
            keys.append((name, type))
        }
        guard keys[0].type == "HASH" else {
            throw .validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
        }
        let partitionCount = keys.prefix { $0.type == "HASH" }.count
        if !global && keys.count == 2 && keys[1].type != "RANGE" {
            throw .validation("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
        }
        guard keys.dropFirst(partitionCount).allSatisfy({ $0.type == "RANGE" }) else {
            throw .validation("Invalid KeySchema: every HASH KeySchemaElement must come before the RANGE ones")
        }
        let limit = SecondaryIndex.keyAttributesMax
        guard partitionCount <= limit && keys.count - partitionCount <= limit else {
            throw .validation(
                "One or more parameter values were invalid: an index key has at most \(limit) HASH and \(limit) "
                    + "RANGE key attributes")
        }
        return keys
    }

    private static func indexProjection(_ value: JSON?, path: String) throws(DynamoError) -> IndexProjection {
        guard case .object(let member)? = value else {
            throw .validation(
                "1 validation error detected: Value null at '\(path).projection' failed to satisfy constraint: Member "
                    + "must not be null"
            )
        }
        guard case .string(let typeName)? = member["ProjectionType"] else {
            throw .validation("One or more parameter values were invalid: Unknown ProjectionType: null")
        }
        guard let kind = IndexProjection.Kind(rawValue: typeName) else {
            throw .validation(
                "1 validation error detected: Value '\(typeName)' at '\(path).projection.projectionType' failed to "
                    + "satisfy constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]"
            )
        }
        var attributes: [String] = []
        if let list = member["NonKeyAttributes"], list != .null {
            guard kind == .include else {
                throw .validation(
                    "One or more parameter values were invalid: ProjectionType is \(typeName), but NonKeyAttributes "
                        + "is specified"
                )
            }
            guard case .array(let names) = list, !names.isEmpty else {
                throw .validation(
                    "1 validation error detected: Value '[]' at '\(path).projection.nonKeyAttributes' failed to "
                        + "satisfy constraint: Member must have length greater than or equal to 1"
                )
            }
            for name in names {
                guard case .string(let text) = name, !text.isEmpty else {
                    throw .validation("One or more parameter values were invalid: a NonKeyAttributes name is empty")
                }
                guard !attributes.contains(text) else {
                    throw .validation(
                        "One or more parameter values were invalid: Duplicate attribute name in NonKeyAttributes: "
                            + "\(text)"
                    )
                }
                attributes.append(text)
            }
        }
        return IndexProjection(kind: kind, nonKeyAttributes: attributes)
    }

    /// DescribeTable's LocalSecondaryIndexes or GlobalSecondaryIndexes, with each index's
    /// item count and size.
    func indexDescriptions(
        _ indexes: [SecondaryIndex], of info: TableInfo, statistics: [UInt32: (items: Int, bytes: Int)]
    ) -> JSON {
        .array(
            indexes.map { index in
                var projection: [String: JSON] = ["ProjectionType": .string(index.projection.kind.rawValue)]
                if index.projection.kind == .include {
                    projection["NonKeyAttributes"] = .array(index.projection.nonKeyAttributes.map { .string($0) })
                }
                let counts = statistics[index.id] ?? (0, 0)
                let keySchema: [JSON] =
                    index.partitionKeys.map {
                        .object(["AttributeName": .string($0.name), "KeyType": .string("HASH")])
                    }
                    + index.sortKeys.map { .object(["AttributeName": .string($0.name), "KeyType": .string("RANGE")]) }
                var description: [String: JSON] = [
                    "IndexName": .string(index.name),
                    "KeySchema": .array(keySchema),
                    "Projection": .object(projection),
                    "IndexSizeBytes": .number(String(counts.bytes)),
                    "ItemCount": .number(String(counts.items)),
                    "IndexArn": .string(Self.arn(info.name) + "/index/" + index.name),
                ]
                if index.global {
                    description["IndexStatus"] = .string(index.creating ? "CREATING" : "ACTIVE")
                    if index.creating { description["Backfilling"] = .bool(true) }
                    description["ProvisionedThroughput"] = .object([
                        "NumberOfDecreasesToday": .number("0"),
                        "ReadCapacityUnits": .number(String(index.readCapacity)),
                        "WriteCapacityUnits": .number(String(index.writeCapacity)),
                    ])
                }
                return .object(description)
            })
    }
}

/// UpdateTable's GlobalSecondaryIndexUpdates: one Create (an online build), Delete or
/// Update (of provisioned capacity) per call.
extension DynamoService {
    func updateGlobalIndexes(
        _ fields: RequestFields, _ updates: [JSON], table name: String
    ) async throws(DynamoError) -> JSON {
        guard updates.count == 1, case .object(let update) = updates[0], update.count == 1,
            let (action, body) = update.first, case .object(let member) = body
        else {
            throw .validation(
                "One or more parameter values were invalid: GlobalSecondaryIndexUpdates takes one Create, Update or "
                    + "Delete per call")
        }
        let current = tables.tables[name]!
        let info: TableInfo
        switch action {
        case "Create":
            info = try await createGlobalIndex(fields, member, table: current)
        case "Delete":
            let indexName: String = if case .string(let given)? = member["IndexName"] { given } else { "" }
            guard let index = current.globalIndexes.first(where: { $0.name == indexName }) else {
                throw .resourceNotFound("Requested resource not found: Index: \(indexName) not found")
            }
            info = try await catalog.update(name) { (table: inout TableInfo) throws(DynamoError) in
                table.globalIndexes.removeAll { $0.id == index.id }
                table.indexVersion += 1
            }
            let (transport, home, table) = (transport, catalog.home, info)
            Task(executorPreference: home) {
                await IndexBuilder.purge(index: index.id, of: table, over: transport, on: home)
            }
        case "Update":
            let indexName: String = if case .string(let given)? = member["IndexName"] { given } else { "" }
            guard let index = current.globalIndexes.first(where: { $0.name == indexName }) else {
                throw .resourceNotFound("Requested resource not found: Index: \(indexName) not found")
            }
            let (read, write) = try Self.indexThroughput(
                member["ProvisionedThroughput"], name: indexName, billing: current.billingMode,
                path: "globalSecondaryIndexUpdates.1.member.update")
            info = try await catalog.update(name) { (table: inout TableInfo) throws(DynamoError) in
                for position in table.globalIndexes.indices where table.globalIndexes[position].id == index.id {
                    (table.globalIndexes[position].readCapacity, table.globalIndexes[position].writeCapacity) = (
                        read, write
                    )
                }
            }
        default:
            throw .validation(
                "One or more parameter values were invalid: GlobalSecondaryIndexUpdates takes Create, Update or Delete")
        }
        let (items, bytes) = try await statistics(info)
        return .object(["TableDescription": description(info, items: items, bytes: bytes)])
    }

    /// UpdateTable's Create: the index added to the catalog (its new key attributes
    /// defined), and its build started.
    private func createGlobalIndex(
        _ fields: RequestFields, _ member: [String: JSON], table current: TableInfo
    ) async throws(DynamoError) -> TableInfo {
        let name = current.name
        var definitions = current.attributeDefinitions
        for definition in try fields.array("AttributeDefinitions") ?? [] {
            guard case .object(let pair) = definition, case .string(let attribute)? = pair["AttributeName"],
                case .string(let type)? = pair["AttributeType"], ["S", "N", "B"].contains(type)
            else {
                throw .validation(
                    "Invalid AttributeDefinitions: each element needs AttributeName and AttributeType")
            }
            if let known = definitions.first(where: { $0.name == attribute }) {
                guard known.type == type else {
                    throw .validation(
                        "One or more parameter values were invalid: attribute \(attribute) is already defined as "
                            + "\(known.type)")
                }
            } else {
                definitions.append(KeyAttribute(name: attribute, type: type))
            }
        }
        guard current.globalIndexes.count < Self.globalIndexesMax else {
            throw DynamoError(
                "LimitExceededException",
                "Subscriber limit exceeded: a table has at most \(Self.globalIndexesMax) global secondary indexes")
        }
        let index = try globalIndexes(
            [.object(member)], definitions: definitions, billing: current.billingMode,
            taken: current.allIndexes.map(\.name))[0]
        let projected = (current.allIndexes + [index]).reduce(0) { $0 + $1.projection.nonKeyAttributes.count }
        guard projected <= Self.projectedAttributesMax else {
            throw .validation(
                "One or more parameter values were invalid: Number of projected attributes in all indexes exceeds "
                    + "limit of \(Self.projectedAttributesMax), number of projected attributes:\(projected)")
        }
        let info = try await catalog.addGlobalIndex(name, index, definitions: definitions)
        let (catalog, transport, clustered) = (catalog, transport, forwarder != nil)
        Task(executorPreference: catalog.home) {
            await IndexBuilder.build(
                table: name, index: index.name, catalog: catalog, over: transport, on: catalog.home,
                clustered: clustered)
        }
        return info
    }
}
