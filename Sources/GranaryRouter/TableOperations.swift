import Foundation
import GranaryModel
import GranaryCommands

/// CreateTable, DeleteTable, DescribeTable, ListTables, UpdateTable, tags, limits,
/// endpoints and time-to-live settings.
extension DynamoService {
    static let region = "ddblocal"
    static let account = "000000000000"

    static func arn(_ name: String) -> String { "arn:aws:dynamodb:\(region):\(account):table/\(name)" }

    func createTable(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let name = try fields.tableName()
        if let stream = try fields.object("StreamSpecification"), stream["StreamEnabled"] == .bool(true) {
            throw .validation(
                "Streams are not supported by this node yet: StreamSpecification.StreamEnabled must be false")
        }
        guard let schema = try fields.array("KeySchema") else { throw RequestFields.missing("KeySchema") }
        guard let definitionsJSON = try fields.array("AttributeDefinitions") else {
            throw RequestFields.missing("AttributeDefinitions")
        }
        guard (1...2).contains(schema.count) else {
            throw .validation(
                "1 validation error detected: Value '\(schema.count)' at 'keySchema' failed to satisfy constraint: Member must have length \(schema.isEmpty ? "greater than or equal to 1" : "less than or equal to 2")"
            )
        }
        // Key attribute names are checked first, in KeySchema then AttributeDefinitions, as
        // DynamoDB does: its length error comes before any other about the schema.
        for (list, member) in [(schema, "keySchema"), (definitionsJSON, "attributeDefinitions")] {
            for (position, element) in list.enumerated() {
                guard case .object(let entry) = element, case .string(let attribute)? = entry["AttributeName"] else {
                    continue
                }
                let bound =
                    attribute.isEmpty
                    ? "greater than or equal to 1"
                    : attribute.utf8.count > ItemLimits.keyAttributeNameBytesMax ? "less than or equal to 255" : nil
                if let bound {
                    let shown = attribute.utf8.count > 300 ? String(attribute.prefix(300)) + "..." : attribute
                    throw .validation(
                        "1 validation error detected: Value '\(shown)' at '\(member).\(position + 1).member.attributeName' failed to satisfy constraint: Member must have length \(bound)"
                    )
                }
            }
        }
        var keys: [(name: String, type: String)] = []
        for element in schema {
            guard case .object(let member) = element, case .string(let attribute)? = member["AttributeName"],
                case .string(let keyType)? = member["KeyType"]
            else {
                throw .validation("Invalid KeySchema: each element needs AttributeName and KeyType")
            }
            guard keyType == "HASH" || keyType == "RANGE" else {
                throw .validation(
                    "1 validation error detected: Value '\(keyType)' at 'keySchema.1.member.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]"
                )
            }
            keys.append((attribute, keyType))
        }
        guard keys[0].type == "HASH" else {
            throw .validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
        }
        if keys.count == 2 {
            guard keys[1].type == "RANGE" else {
                throw .validation("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
            }
            guard keys[0].name != keys[1].name else {
                throw .validation("Both the Hash Key and the Range Key element in the KeySchema have the same name")
            }
        }
        var definitions: [KeyAttribute] = []
        for element in definitionsJSON {
            guard case .object(let member) = element, case .string(let attribute)? = member["AttributeName"],
                case .string(let type)? = member["AttributeType"]
            else {
                throw .validation("Invalid AttributeDefinitions: each element needs AttributeName and AttributeType")
            }
            guard ["S", "N", "B"].contains(type) else {
                throw .validation(
                    "1 validation error detected: Value '\(type)' at 'attributeDefinitions.\(definitions.count + 1).member.attributeType' failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]"
                )
            }
            guard !definitions.contains(where: { $0.name == attribute }) else {
                throw .validation(
                    "Cannot have two attributes with the same name. Duplicate attribute names: \(attribute)")
            }
            definitions.append(KeyAttribute(name: attribute, type: type))
        }
        let keyDefinitions = keys.compactMap { key in definitions.first { $0.name == key.name } }
        guard keyDefinitions.count == keys.count else {
            throw .validation(
                "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [\(keys.map(\.name).joined(separator: ", "))], AttributeDefinitions: [\(definitions.map(\.name).joined(separator: ", "))]"
            )
        }
        let billing =
            try fields.enumeration("BillingMode", allowed: ["PROVISIONED", "PAY_PER_REQUEST"]) ?? "PROVISIONED"
        let (read, write) = try throughput(fields, billing: billing, creating: true)
        let indexes = try secondaryIndexes(
            fields, tableKeys: keyDefinitions, definitions: definitions, billing: billing)
        var info = TableInfo(
            id: 0, name: name, partitionKey: keyDefinitions[0],
            sortKey: keyDefinitions.count == 2 ? keyDefinitions[1] : nil,
            attributeDefinitions: definitions, billingMode: billing, readCapacity: read, writeCapacity: write,
            createdAt: (Date().timeIntervalSince1970 * 1000).rounded() / 1000, uuid: UUID().uuidString.lowercased())
        (info.localIndexes, info.globalIndexes) = indexes
        info.tags = try tags(fields.array("Tags") ?? [])
        info.deletionProtection = try fields.bool("DeletionProtectionEnabled") ?? false
        info.tableClass =
            try fields.enumeration("TableClass", allowed: ["STANDARD", "STANDARD_INFREQUENT_ACCESS"]) ?? "STANDARD"
        let created = try await catalog.create(info)
        return .object(["TableDescription": description(created, items: 0, bytes: 0)])
    }

    /// ProvisionedThroughput checked against BillingMode.
    private func throughput(_ fields: RequestFields, billing: String, creating: Bool) throws(DynamoError) -> (Int, Int)
    {
        let provisioned = try fields.object("ProvisionedThroughput")
        if billing == "PAY_PER_REQUEST" {
            guard provisioned == nil else {
                throw .validation(
                    "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST"
                )
            }
            return (0, 0)
        }
        guard let provisioned else {
            if !creating { return (-1, -1) }
            throw .validation(
                "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"
            )
        }
        guard let read = try fields.integer("ReadCapacityUnits", in: provisioned) else {
            throw RequestFields.missing("ProvisionedThroughput.ReadCapacityUnits")
        }
        guard let write = try fields.integer("WriteCapacityUnits", in: provisioned) else {
            throw RequestFields.missing("ProvisionedThroughput.WriteCapacityUnits")
        }
        for (value, member) in [(read, "readCapacityUnits"), (write, "writeCapacityUnits")] where value < 1 {
            throw .validation(
                "1 validation error detected: Value '\(value)' at 'provisionedThroughput.\(member)' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )
        }
        return (read, write)
    }

    private func tags(_ list: [JSON]) throws(DynamoError) -> [String: String] {
        var tags: [String: String] = [:]
        for (position, element) in list.enumerated() {
            guard case .object(let tag) = element, case .string(let key)? = tag["Key"],
                case .string(let value)? = tag["Value"]
            else {
                throw .validation("A tag needs a Key and a Value")
            }
            guard (1...128).contains(key.count), value.count <= 256 else {
                throw .validation(
                    "One or more parameter values were invalid: tag keys are 1 to 128 characters, values up to 256")
            }
            for (text, member) in [(key, "key"), (value, "value")] where !Self.isTagText(text) {
                throw .validation(
                    "1 validation error detected: Value '\(text)' at 'tags.\(position + 1).member.\(member)' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*"
                )
            }
            tags[key] = value
        }
        guard tags.count <= 50 else {
            throw .validation("One or more parameter values were invalid: a table has at most 50 tags")
        }
        return tags
    }

    /// AWS's tag alphabet: letters, separators (spaces), numbers and `_.:/=+-@`.
    static func isTagText(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { scalar in
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                .spaceSeparator, .lineSeparator, .paragraphSeparator, .decimalNumber, .letterNumber, .otherNumber:
                return true
            default:
                return "_.:/=+-@".unicodeScalars.contains(scalar)
            }
        }
    }

    /// DescribeTable's TableDescription.
    func description(
        _ info: TableInfo, items: Int, bytes: Int, status: String = "ACTIVE",
        indexes: [UInt32: (items: Int, bytes: Int)] = [:]
    ) -> JSON {
        var keySchema: [JSON] = [
            .object(["AttributeName": .string(info.partitionKey.name), "KeyType": .string("HASH")])
        ]
        if let sortKey = info.sortKey {
            keySchema.append(.object(["AttributeName": .string(sortKey.name), "KeyType": .string("RANGE")]))
        }
        var description: [String: JSON] = [
            "TableName": .string(info.name),
            "TableStatus": .string(status),
            "KeySchema": .array(keySchema),
            "AttributeDefinitions": .array(
                info.attributeDefinitions.map {
                    .object(["AttributeName": .string($0.name), "AttributeType": .string($0.type)])
                }),
            "CreationDateTime": .number(String(info.createdAt)),
            "ProvisionedThroughput": .object([
                "NumberOfDecreasesToday": .number("0"),
                "ReadCapacityUnits": .number(String(info.readCapacity)),
                "WriteCapacityUnits": .number(String(info.writeCapacity)),
            ]),
            "TableSizeBytes": .number(String(bytes)),
            "ItemCount": .number(String(items)),
            "TableArn": .string(Self.arn(info.name)),
            "TableId": .string(info.uuid),
            "DeletionProtectionEnabled": .bool(info.deletionProtection),
        ]
        if info.billingMode == "PAY_PER_REQUEST" {
            description["BillingModeSummary"] = .object([
                "BillingMode": .string("PAY_PER_REQUEST"),
                "LastUpdateToPayPerRequestDateTime": .number(String(info.createdAt)),
            ])
        }
        if info.tableClass != "STANDARD" {
            description["TableClassSummary"] = .object(["TableClass": .string(info.tableClass)])
        }
        if !info.localIndexes.isEmpty {
            description["LocalSecondaryIndexes"] = indexDescriptions(info.localIndexes, of: info, statistics: indexes)
        }
        if !info.globalIndexes.isEmpty {
            description["GlobalSecondaryIndexes"] = indexDescriptions(info.globalIndexes, of: info, statistics: indexes)
        }
        return .object(description)
    }

    /// Items and bytes of a table, summed over the partitions (each asked on its core).
    func statistics(_ info: TableInfo) async throws(DynamoError) -> (items: Int, bytes: Int) {
        try await statistics(table: info.id)
    }

    /// Items and bytes of a table or an index (by its id), summed over the partitions.
    func statistics(table id: UInt32) async throws(DynamoError) -> (items: Int, bytes: Int) {
        var items = 0, bytes = 0
        for partition in 0..<transport.map.count {
            let entry = try await transport.statistics(table: id, at: partition)
            items += entry.items
            bytes += entry.bytes
        }
        return (items, bytes)
    }

    func describeTable(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let name = try fields.tableName()
        guard let info = tables.tables[name] else {
            throw .resourceNotFound("Requested resource not found: Table: \(name) not found")
        }
        let (items, bytes) = try await statistics(info)
        var indexes: [UInt32: (items: Int, bytes: Int)] = [:]
        for index in info.allIndexes {
            indexes[index.id] = try await statistics(table: index.id)
        }
        return .object(["Table": description(info, items: items, bytes: bytes, indexes: indexes)])
    }

    func deleteTable(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let name = try fields.tableName()
        guard let current = tables.tables[name] else {
            throw .resourceNotFound("Requested resource not found: Table: \(name) not found")
        }
        let (items, bytes) = try await statistics(current)
        let info = try await catalog.delete(name)
        // DynamoDB describes a deleting table by its summary: no key schema, attribute
        // definitions or creation time.
        guard case .object(var summary) = description(info, items: items, bytes: bytes, status: "DELETING") else {
            preconditionFailure("a table description is an object")
        }
        for member in ["KeySchema", "AttributeDefinitions", "CreationDateTime", "DeletionProtectionEnabled"] {
            summary[member] = nil
        }
        return .object(["TableDescription": .object(summary)])
    }

    func listTables(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let limit = try fields.integer("Limit") ?? 100
        guard (1...100).contains(limit) else {
            throw .validation(
                "1 validation error detected: Value '\(limit)' at 'limit' failed to satisfy constraint: Member must have value \(limit < 1 ? "greater than or equal to 1" : "less than or equal to 100")"
            )
        }
        var names = tables.tables.keys.sorted()
        if let start = try fields.string("ExclusiveStartTableName") {
            try RequestFields.checkTableName(start, member: "exclusiveStartTableName")
            names = names.filter { $0 > start }
        }
        var result: [String: JSON] = ["TableNames": .array(names.prefix(limit).map { .string($0) })]
        if names.count > limit { result["LastEvaluatedTableName"] = .string(names[limit - 1]) }
        return .object(result)
    }

    func updateTable(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let name = try fields.tableName()
        guard tables.tables[name] != nil else {
            throw .resourceNotFound("Requested resource not found: Table: \(name) not found")
        }
        if fields.has("ReplicaUpdates") { throw .validation("ReplicaUpdates are not supported by this node yet") }
        if let updates = try fields.array("GlobalSecondaryIndexUpdates") {
            return try await updateGlobalIndexes(fields, updates, table: name)
        }
        if let stream = try fields.object("StreamSpecification"), stream["StreamEnabled"] == .bool(true) {
            throw .validation(
                "Streams are not supported by this node yet: StreamSpecification.StreamEnabled must be false")
        }
        let billing = try fields.enumeration("BillingMode", allowed: ["PROVISIONED", "PAY_PER_REQUEST"])
        let protection = try fields.bool("DeletionProtectionEnabled")
        let tableClass = try fields.enumeration("TableClass", allowed: ["STANDARD", "STANDARD_INFREQUENT_ACCESS"])
        guard
            billing != nil || fields.has("ProvisionedThroughput") || protection != nil || tableClass != nil
                || fields.has("StreamSpecification") || fields.has("SSESpecification")
                || fields.has("AttributeDefinitions")
        else {
            throw .validation(
                "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required"
            )
        }
        let current = tables.tables[name]!
        let mode = billing ?? current.billingMode
        var (read, write) = try throughput(fields, billing: mode, creating: false)
        if read < 0 {
            guard mode == current.billingMode || mode == "PAY_PER_REQUEST" else {
                throw .validation(
                    "One or more parameter values were invalid: ProvisionedThroughput must be specified when BillingMode is PROVISIONED"
                )
            }
            (read, write) = mode == "PAY_PER_REQUEST" ? (0, 0) : (current.readCapacity, current.writeCapacity)
        }
        let capacity = (read: read, write: write)
        let info = try await catalog.update(name) { (table: inout TableInfo) throws(DynamoError) in
            table.billingMode = mode
            table.readCapacity = capacity.read
            table.writeCapacity = capacity.write
            if let protection { table.deletionProtection = protection }
            if let tableClass { table.tableClass = tableClass }
        }
        let (items, bytes) = try await statistics(info)
        return .object(["TableDescription": description(info, items: items, bytes: bytes)])
    }

    // MARK: Tags

    /// The table an ARN names, from this core's catalog copy.
    private func table(arn: String, operation: String) throws(DynamoError) -> TableInfo {
        let parts = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "arn", parts[2] == "dynamodb", parts[5].hasPrefix("table/") else {
            // DynamoDB answers a malformed ARN as a resource the caller may not touch.
            let shown = arn.utf8.count > 1283 ? String(arn.prefix(1283)) : arn
            throw DynamoError(
                "AccessDeniedException",
                "User: arn:aws:iam::\(Self.account):root is not authorized to perform: dynamodb:\(operation) on resource: \(shown)",
                namespace: "com.amazon.coral.service")
        }
        let name = String(parts[5].dropFirst("table/".count))
        guard let info = tables.tables[name] else {
            throw .resourceNotFound("Requested resource not found: ResourcArn: \(arn) not found")
        }
        return info
    }

    func tagResource(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(arn: try fields.requiredString("ResourceArn"), operation: "TagResource")
        guard let list = try fields.array("Tags") else { throw RequestFields.missing("Tags") }
        let added = try tags(list)
        _ = try await catalog.update(info.name) { (table: inout TableInfo) throws(DynamoError) in
            table.tags.merge(added) { $1 }
            guard table.tags.count <= 50 else {
                throw .validation("One or more parameter values were invalid: a table has at most 50 tags")
            }
        }
        return .object([:])
    }

    func untagResource(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(arn: try fields.requiredString("ResourceArn"), operation: "UntagResource")
        guard let keys = try fields.array("TagKeys") else { throw RequestFields.missing("TagKeys") }
        let removed = keys.compactMap {
            if case .string(let key) = $0 { return key }; return nil
        }
        _ = try await catalog.update(info.name) { (table: inout TableInfo) throws(DynamoError) in
            for key in removed { table.tags[key] = nil }
        }
        return .object([:])
    }

    func listTagsOfResource(_ fields: RequestFields) throws(DynamoError) -> JSON {
        let info = try table(arn: try fields.requiredString("ResourceArn"), operation: "ListTagsOfResource")
        let tags: [JSON] = info.tags.sorted { $0.key < $1.key }.map {
            .object(["Key": .string($0.key), "Value": .string($0.value)])
        }
        return .object(["Tags": .array(tags)])
    }

    // MARK: Endpoints, limits, time to live

    func describeEndpoints(_ request: HTTPRequest) -> JSON {
        let address = request.header("Host") ?? "127.0.0.1:8000"
        return .object([
            "Endpoints": .array([.object(["Address": .string(address), "CachePeriodInMinutes": .number("1440")])])
        ])
    }

    func describeLimits() -> JSON {
        .object([
            "AccountMaxReadCapacityUnits": .number("80000"), "AccountMaxWriteCapacityUnits": .number("80000"),
            "TableMaxReadCapacityUnits": .number("40000"), "TableMaxWriteCapacityUnits": .number("40000"),
        ])
    }

    /// Backups come with a later issue: until then every table reports them off.
    func describeContinuousBackups(_ fields: RequestFields) throws(DynamoError) -> JSON {
        let name = try fields.tableName()
        guard tables.tables[name] != nil else {
            throw DynamoError("TableNotFoundException", "Table not found: \(name)")
        }
        return .object([
            "ContinuousBackupsDescription": .object([
                "ContinuousBackupsStatus": .string("ENABLED"),
                "PointInTimeRecoveryDescription": .object(["PointInTimeRecoveryStatus": .string("DISABLED")]),
            ])
        ])
    }

    func describeTimeToLive(_ fields: RequestFields) throws(DynamoError) -> JSON {
        let info = try table(fields)
        var description: [String: JSON] = ["TimeToLiveStatus": .string(info.ttlEnabled ? "ENABLED" : "DISABLED")]
        if info.ttlEnabled, let attribute = info.ttlAttribute { description["AttributeName"] = .string(attribute) }
        return .object(["TimeToLiveDescription": .object(description)])
    }

    func updateTimeToLive(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(fields)
        guard let specification = try fields.object("TimeToLiveSpecification") else {
            throw RequestFields.missing("TimeToLiveSpecification")
        }
        guard case .bool(let enabled)? = specification["Enabled"] else {
            throw RequestFields.missing("TimeToLiveSpecification.Enabled")
        }
        guard case .string(let attribute)? = specification["AttributeName"], !attribute.isEmpty else {
            throw RequestFields.missing("TimeToLiveSpecification.AttributeName")
        }
        _ = try await catalog.update(info.name) { (table: inout TableInfo) throws(DynamoError) in
            if enabled && table.ttlEnabled { throw .validation("TimeToLive is already enabled") }
            if !enabled && !table.ttlEnabled { throw .validation("TimeToLive is already disabled") }
            if !enabled && table.ttlAttribute != attribute {
                throw .validation("The attribute name provided does not match the one that TimeToLive is enabled on")
            }
            table.ttlEnabled = enabled
            table.ttlAttribute = attribute
        }
        return .object([
            "TimeToLiveSpecification": .object(["Enabled": .bool(enabled), "AttributeName": .string(attribute)])
        ])
    }
}
