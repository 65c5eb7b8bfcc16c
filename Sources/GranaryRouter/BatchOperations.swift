import GranaryModel
import GranaryCommands

/// BatchGetItem and BatchWriteItem: many independent single-item operations in one request,
/// validated whole before any of them runs, then run side by side on their partitions.
extension DynamoService {
    static let batchGetKeysMax = 100
    static let batchWriteRequestsMax = 25
    static let batchGetResponseBytesMax = 16 << 20

    // MARK: BatchGetItem

    private struct TableKeys {
        var info: TableInfo
        var request: [String: JSON]  // the table's KeysAndAttributes, for UnprocessedKeys
        var keys: [Item]
        var projection: [DocumentPath]?
        var consistent: Bool
    }

    func batchGetItem(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let requestItems = try batchRequestItems(fields)
        var tables: [TableKeys] = []
        var lookups: [(partition: Int, key: [UInt8], consistent: Bool)] = []  // every key, in request order
        var keyCount = 0
        for (name, value) in requestItems.sorted(by: { $0.key < $1.key }) {
            let info = try table(named: name)
            let request = try RequestFields(value)
            guard let keysJSON = try request.array("Keys") else { throw RequestFields.missing("Keys") }
            guard !keysJSON.isEmpty else {
                throw .validation(
                    "1 validation error detected: Value '[]' at 'requestItems.\(name).member.keys' failed to satisfy constraint: Member must have length greater than or equal to 1"
                )
            }
            keyCount += keysJSON.count
            guard keyCount <= Self.batchGetKeysMax else {
                throw .validation("Too many items requested for the BatchGetItem call")
            }
            let consistent = try request.bool("ConsistentRead") ?? false
            var keys: [Item] = []
            var seen: Set<[UInt8]> = []
            for keyJSON in keysJSON {
                let key = try Item(itemJSON: keyJSON)
                let (partitionKey, sortKey) = try info.primaryKey(of: key, keyOnly: true)
                let storageKey = info.storageKey(partition: partitionKey, sort: sortKey)
                guard seen.insert(storageKey).inserted else {
                    throw .validation("Provided list of item keys contains duplicates")
                }
                keys.append(key)
                lookups.append((partition(for: partitionKey), storageKey, consistent))
            }
            let context = try request.expressionContext(usesExpressions: request.has("ProjectionExpression"))
            let projection = try Self.projection(request, context: context)
            try context.checkAllUsed()
            tables.append(
                TableKeys(
                    info: info, request: request.members, keys: keys, projection: projection,
                    consistent: consistent))
        }

        // Every key is read at once; the answer then takes items in request order up to
        // 16 MB and hands the rest back as UnprocessedKeys.
        let found = try await concurrently(lookups) { [transport] (partition, key, consistent) throws(DynamoError) in
            try await transport.get(key, at: partition, consistent: consistent)
        }

        var responses: [String: JSON] = [:]
        var unprocessed: [String: JSON] = [:]
        var units: [(TableInfo, Double)] = []
        var responseBytes = 0
        var index = 0
        for entry in tables {
            var items: [JSON] = []
            var leftover: [JSON] = []
            for key in entry.keys {
                defer { index += 1 }
                guard responseBytes <= Self.batchGetResponseBytesMax else { leftover.append(key.json); continue }
                guard let stored = found[index] else {
                    units.append((entry.info, Self.readUnits(0, consistent: entry.consistent)))
                    continue
                }
                let shown = try Self.shownItem(stored, projection: entry.projection)
                responseBytes += shown.shownBytes
                units.append((entry.info, Self.readUnits(shown.itemBytes, consistent: entry.consistent)))
                items.append(shown.json)
            }
            responses[entry.info.name] = .array(items)
            if !leftover.isEmpty {
                var request = entry.request
                request["Keys"] = .array(leftover)
                unprocessed[entry.info.name] = .object(request)
            }
        }
        var result: [String: JSON] = ["Responses": .object(responses), "UnprocessedKeys": .object(unprocessed)]
        try addConsumedCapacity(fields, units: units, to: &result)
        return .object(result)
    }

    // MARK: BatchWriteItem

    func batchWriteItem(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let requestItems = try batchRequestItems(fields)
        let reportsCollection = try Self.reportsCollection(fields)
        let reportsCapacity = try Self.reportsCapacity(fields)
        var writes: [(info: TableInfo, partitionKey: AttributeValue, key: [UInt8], action: WriteCommand.Action)] = []
        for (name, value) in requestItems.sorted(by: { $0.key < $1.key }) {
            let info = try table(named: name)
            guard case .array(let requests) = value else {
                throw RequestFields.wrongType("RequestItems", value, expected: "a list")
            }
            guard !requests.isEmpty else {
                throw .validation(
                    "1 validation error detected: Value '[]' at 'requestItems.\(name).member' failed to satisfy constraint: Member must have length greater than or equal to 1"
                )
            }
            var seen: Set<[UInt8]> = []
            for requestJSON in requests {
                guard writes.count < Self.batchWriteRequestsMax else {
                    throw .validation("Too many items requested for the BatchWriteItem call")
                }
                let request = try RequestFields(requestJSON)
                let put = try request.object("PutRequest")
                let delete = try request.object("DeleteRequest")
                let item: Item
                let action: WriteCommand.Action
                switch (put, delete) {
                case (let put?, nil):
                    guard let itemJSON = put["Item"], itemJSON != .null else { throw RequestFields.missing("Item") }
                    item = try Item(itemJSON: itemJSON)
                    try ItemLimits.checkItemSize(item)
                    action = .put(item)
                case (nil, let delete?):
                    guard let keyJSON = delete["Key"], keyJSON != .null else { throw RequestFields.missing("Key") }
                    item = try Item(itemJSON: keyJSON)
                    action = .delete
                default:
                    throw .validation(
                        "1 validation error detected: A WriteRequest must contain exactly one of PutRequest or DeleteRequest"
                    )
                }
                let isDelete: Bool
                if case .delete = action { isDelete = true } else { isDelete = false }
                let (partitionKey, sortKey) = try info.primaryKey(of: item, keyOnly: isDelete)
                let key = info.storageKey(partition: partitionKey, sort: sortKey)
                guard seen.insert(key).inserted else {
                    throw .validation("Provided list of item keys contains duplicates")
                }
                writes.append((info, partitionKey, key, action))
            }
        }
        // The old item is decoded only for the capacity figure (or the indexes).
        let work = writes.map { write in
            (
                partition(for: write.partitionKey),
                WriteCommand(
                    table: write.info.id, key: write.key, action: write.action, readsOld: reportsCapacity,
                    indexes: write.info.indexMaintenance)
            )
        }
        let outcomes = try await concurrently(work) { [transport] (partition, command) throws(DynamoError) in
            try await transport.execute(command, at: partition)
        }
        var result: [String: JSON] = ["UnprocessedItems": .object([:])]
        if reportsCollection {
            var metrics: [String: [JSON]] = [:]
            for (write, outcome) in zip(writes, outcomes) {
                if let metric = Self.collectionMetrics(outcome, info: write.info) {
                    metrics[write.info.name, default: []].append(metric)
                }
            }
            result["ItemCollectionMetrics"] = .object(metrics.mapValues { .array($0) })
        }
        if reportsCapacity {
            try addConsumedCapacity(
                fields, units: zip(writes, outcomes).map { ($0.info, .write($0.info, old: $1.old, new: $1.new)) },
                to: &result)
        }
        return .object(result)
    }

    // MARK: Helpers

    private func batchRequestItems(_ fields: RequestFields) throws(DynamoError) -> [String: JSON] {
        guard let requestItems = try fields.object("RequestItems") else { throw RequestFields.missing("RequestItems") }
        guard !requestItems.isEmpty else {
            throw .validation(
                "1 validation error detected: Value '{}' at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        }
        for name in requestItems.keys { try RequestFields.checkTableName(name, member: "requestItems") }
        return requestItems
    }

    func table(named name: String) throws(DynamoError) -> TableInfo {
        guard let info = tables.tables[name] else { throw .resourceNotFound() }
        return info
    }
}
