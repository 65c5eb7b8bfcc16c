import GranaryModel
import GranaryCommands

/// PutItem, GetItem, UpdateItem and DeleteItem: validated on the core that received the
/// request, then carried out on the core that owns the item's partition.
extension DynamoService {
    func putItem(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(fields)
        guard let item = try fields.item("Item") else { throw RequestFields.missing("Item") }
        let (partitionKey, sortKey) = try info.primaryKey(of: item, keyOnly: false)
        try ItemLimits.checkItemSize(item)
        return try await replace(fields, info: info, partitionKey: partitionKey, sortKey: sortKey, with: .put(item))
    }

    func getItem(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(fields)
        guard let key = try fields.item("Key") else { throw RequestFields.missing("Key") }
        let (partitionKey, sortKey) = try info.primaryKey(of: key, keyOnly: true)
        let consistent = try fields.bool("ConsistentRead") ?? false
        let context = try fields.expressionContext(usesExpressions: fields.has("ProjectionExpression"))
        let projection = try Self.projection(fields, context: context)
        try context.checkAllUsed()
        let stored = try await transport.get(
            info.storageKey(partition: partitionKey, sort: sortKey), at: partition(for: partitionKey),
            consistent: consistent)
        var result: [String: JSON] = [:]
        var itemBytes = 0
        if let stored {
            let shown = try Self.shownItem(stored, projection: projection)
            result["Item"] = shown.json
            itemBytes = shown.itemBytes
        }
        let units = Self.readUnits(itemBytes, consistent: consistent)
        try addConsumedCapacity(fields, info: info, units: units, to: &result)
        return .object(result)
    }

    /// A stored item as a read shows it: its JSON, written from the stored bytes unless a
    /// projection must look into it, DynamoDB's size of the whole item (what a read is
    /// charged) and of the part shown (what bounds a batch's answer).
    static func shownItem(
        _ stored: [UInt8], projection: [DocumentPath]?
    ) throws(DynamoError) -> (json: JSON, itemBytes: Int, shownBytes: Int) {
        var json: [UInt8] = []
        json.reserveCapacity(stored.count * 2 + 64)
        if let projection {
            let item = try StoredItem.decode(stored)
            let shown = Projection.apply(projection, to: item)
            shown.writeJSON(to: &json)
            return (.serialized(json), item.sizeBytes, shown.sizeBytes)
        }
        try StoredItem.writeJSON(stored, to: &json)
        let size = try StoredItem.size(stored)
        return (.serialized(json), size, size)
    }

    func deleteItem(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(fields)
        guard let key = try fields.item("Key") else { throw RequestFields.missing("Key") }
        let (partitionKey, sortKey) = try info.primaryKey(of: key, keyOnly: true)
        return try await replace(fields, info: info, partitionKey: partitionKey, sortKey: sortKey, with: .delete)
    }

    /// PutItem's and DeleteItem's shared path: ReturnValues NONE or ALL_OLD, an optional
    /// ConditionExpression, one write.
    private func replace(
        _ fields: RequestFields, info: TableInfo, partitionKey: AttributeValue, sortKey: AttributeValue?,
        with action: WriteCommand.Action
    ) async throws(DynamoError) -> JSON {
        let returnValues =
            try fields.enumeration(
                "ReturnValues", allowed: ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"]) ?? "NONE"
        guard returnValues == "NONE" || returnValues == "ALL_OLD" else {
            throw .validation("ReturnValues can only be ALL_OLD or NONE")
        }
        let condition = try conditionOnly(fields)
        let returnOldOnFailure = try Self.returnOldOnFailure(fields)
        let reportsCollection = try Self.reportsCollection(fields)
        let reportsCapacity = try Self.reportsCapacity(fields)
        let command = WriteCommand(
            table: info.id, key: info.storageKey(partition: partitionKey, sort: sortKey), condition: condition,
            action: action, readsOld: returnValues == "ALL_OLD" || reportsCapacity,
            returnsOldOnFailure: returnOldOnFailure, indexes: info.indexMaintenance)
        let outcome = try await transport.execute(command, at: partition(for: partitionKey))
        let (old, new) = (outcome.old, outcome.new)
        var result: [String: JSON] = [:]
        if returnValues == "ALL_OLD", let old { result["Attributes"] = old.json }
        if reportsCollection { result["ItemCollectionMetrics"] = Self.collectionMetrics(outcome, info: info) }
        if reportsCapacity {
            try addConsumedCapacity(fields, info: info, units: .write(info, old: old, new: new), to: &result)
        }
        return .object(result)
    }

    func updateItem(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(fields)
        guard let key = try fields.item("Key") else { throw RequestFields.missing("Key") }
        let (partitionKey, sortKey) = try info.primaryKey(of: key, keyOnly: true)
        let returnValues =
            try fields.enumeration(
                "ReturnValues", allowed: ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"]) ?? "NONE"
        let updateText = try fields.string("UpdateExpression")
        let conditionText = try fields.string("ConditionExpression")
        let context = try fields.expressionContext(usesExpressions: updateText != nil || conditionText != nil)
        let conditionalOperator = try fields.conditionalOperator()
        let actions: [UpdateAction]
        if let updates = try fields.object("AttributeUpdates") {
            actions = try LegacyParameters.attributeUpdates(updates)
        } else {
            actions =
                try updateText.map { (text) throws(DynamoError) in try ExpressionParser.update(text, context: context) }
                ?? []
        }
        let condition: Condition?
        if let expected = try fields.object("Expected") {
            condition = try LegacyParameters.expected(expected, conditionalOperator: conditionalOperator)
        } else {
            condition = try conditionText.map { (text) throws(DynamoError) in
                try ExpressionParser.condition(text, context: context)
            }
        }
        try context.checkAllUsed()
        for action in actions where info.keyNames.contains(action.path.attributeName) {
            throw .validation(
                "One or more parameter values were invalid: Cannot update attribute \(action.path.attributeName). This attribute is part of the key"
            )
        }
        let command = WriteCommand(
            table: info.id, key: info.storageKey(partition: partitionKey, sort: sortKey), condition: condition,
            action: .update(actions, keyItem: key), returnsOldOnFailure: try Self.returnOldOnFailure(fields),
            indexes: info.indexMaintenance)
        let reportsCollection = try Self.reportsCollection(fields)
        let outcome = try await transport.execute(command, at: partition(for: partitionKey))
        let (old, new) = (outcome.old, outcome.new)
        var result: [String: JSON] = [:]
        if reportsCollection { result["ItemCollectionMetrics"] = Self.collectionMetrics(outcome, info: info) }
        let paths = actions.map(\.path)
        switch returnValues {
        case "ALL_OLD": if let old { result["Attributes"] = old.json }
        case "ALL_NEW": if let new { result["Attributes"] = new.json }
        case "UPDATED_OLD":
            if let old {
                let changed = Projection.apply(paths, to: old);
                if !changed.isEmpty { result["Attributes"] = changed.json }
            }
        case "UPDATED_NEW":
            if let new {
                let changed = Projection.apply(paths, to: new);
                if !changed.isEmpty { result["Attributes"] = changed.json }
            }
        default: break
        }
        if try Self.reportsCapacity(fields) {
            try addConsumedCapacity(fields, info: info, units: .write(info, old: old, new: new), to: &result)
        }
        return .object(result)
    }

    // MARK: Helpers

    /// The paths to return, from ProjectionExpression or the legacy AttributesToGet.
    static func projection(_ fields: RequestFields, context: ExpressionContext) throws(DynamoError) -> [DocumentPath]? {
        if let text = try fields.string("ProjectionExpression") {
            return try ExpressionParser.projection(text, context: context)
        }
        guard let names = try fields.array("AttributesToGet") else { return nil }
        guard !names.isEmpty else {
            throw .validation(
                "1 validation error detected: Value '[]' at 'attributesToGet' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        }
        var paths: [DocumentPath] = []
        for name in names {
            guard case .string(let text) = name else {
                throw RequestFields.wrongType("AttributesToGet", name, expected: "a string")
            }
            try ItemLimits.checkAttributeName(text)
            guard !paths.contains(.attribute(text)) else {
                throw .validation(
                    "One or more parameter values were invalid: Duplicate value in attribute name: \(text)")
            }
            paths.append(.attribute(text))
        }
        return paths
    }

    /// The ConditionExpression (or legacy Expected) of a PutItem or DeleteItem.
    private func conditionOnly(_ fields: RequestFields) throws(DynamoError) -> Condition? {
        let conditionalOperator = try fields.conditionalOperator()
        if let expected = try fields.object("Expected") {
            return try LegacyParameters.expected(expected, conditionalOperator: conditionalOperator)
        }
        let text = try fields.string("ConditionExpression")
        let context = try fields.expressionContext(usesExpressions: text != nil)
        let condition = try text.map { (text) throws(DynamoError) in
            try ExpressionParser.condition(text, context: context)
        }
        try context.checkAllUsed()
        return condition
    }

    private static func returnOldOnFailure(_ fields: RequestFields) throws(DynamoError) -> Bool {
        try fields.enumeration("ReturnValuesOnConditionCheckFailure", allowed: ["ALL_OLD", "NONE"]) == "ALL_OLD"
    }

    /// Write capacity units: one per KB, rounded up, at least one.
    static func writeUnits(_ bytes: Int) -> Double { Double(max(1, (bytes + 1023) / 1024)) }

    /// Read capacity units: one per 4 KB, rounded up, at least one; half as many for an
    /// eventually consistent read.
    static func readUnits(_ bytes: Int, consistent: Bool = true) -> Double {
        Double(max(1, (bytes + 4095) / 4096)) * (consistent ? 1 : 0.5)
    }

    func addConsumedCapacity(
        _ fields: RequestFields, info: TableInfo, units: Double, to result: inout [String: JSON]
    ) throws(DynamoError) {
        try addConsumedCapacity(fields, info: info, units: ConsumedUnits(table: units), to: &result)
    }

    func addConsumedCapacity(
        _ fields: RequestFields, info: TableInfo, units: ConsumedUnits, to result: inout [String: JSON]
    ) throws(DynamoError) {
        if let mode = try Self.capacityMode(fields) {
            result["ConsumedCapacity"] = units.json(table: info.name, mode: mode)
        }
    }

    /// ConsumedCapacity of a request touching several tables (batches, transactions): the
    /// units summed per table, one entry for each.
    func addConsumedCapacity(
        _ fields: RequestFields, units: [(TableInfo, Double)], to result: inout [String: JSON]
    ) throws(DynamoError) {
        try addConsumedCapacity(fields, units: units.map { ($0, ConsumedUnits(table: $1)) }, to: &result)
    }

    func addConsumedCapacity(
        _ fields: RequestFields, units: [(TableInfo, ConsumedUnits)], to result: inout [String: JSON]
    ) throws(DynamoError) {
        guard let mode = try Self.capacityMode(fields) else { return }
        var totals: [String: (info: TableInfo, units: ConsumedUnits)] = [:]
        for (info, amount) in units {
            totals[info.name] = (info, (totals[info.name]?.units).map { $0 + amount } ?? amount)
        }
        result["ConsumedCapacity"] = .array(
            totals.values.sorted { $0.info.name < $1.info.name }.map { $0.units.json(table: $0.info.name, mode: mode) })
    }

    /// Whether the request asks for ConsumedCapacity (INDEXES or TOTAL). Writes that need
    /// the old item for nothing else skip decoding it when not.
    static func reportsCapacity(_ fields: RequestFields) throws(DynamoError) -> Bool {
        try fields.enumeration("ReturnConsumedCapacity", allowed: ["INDEXES", "TOTAL", "NONE"]).map { $0 != "NONE" }
            ?? false
    }

    /// How ReturnConsumedCapacity asks for it: TOTAL or INDEXES, nil for NONE.
    static func capacityMode(_ fields: RequestFields) throws(DynamoError) -> String? {
        try fields.enumeration("ReturnConsumedCapacity", allowed: ["INDEXES", "TOTAL", "NONE"]).flatMap {
            $0 == "NONE" ? nil : $0
        }
    }
}
