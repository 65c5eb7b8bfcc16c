import GranaryModel
import GranaryCommands

/// Query and Scan: bounded cursor walks over the B-tree, a page at a time.
///
/// A Query reads one partition key's items, which are contiguous and in sort-key order in
/// one partition. A Scan reads a table's items in hash order: partitions own consecutive
/// hash ranges, so a scan walks them one after another, and a segment of a parallel scan
/// is a slice of the hash space. A page stops at Limit items or at 1 MB of items read,
/// before the filter, as DynamoDB's does; LastEvaluatedKey is the key of the last item
/// read, and the next page resumes just past it, so every item present for the whole walk
/// is returned exactly once whatever is written meanwhile.
extension DynamoService {
    static let pageBytesMax = 1 << 20

    /// What Query and Scan share: what to return of each item and how much to read.
    struct ReadOptions {
        var filter: Condition?
        var projection: [DocumentPath]?
        var countOnly = false
        var limit = Int.max
        var consistent = false
        var select: String?

        init(
            _ fields: RequestFields, filter: Condition?, context: ExpressionContext, onIndex: Bool = false
        ) throws(DynamoError) {
            self.filter = filter
            projection = try DynamoService.projection(fields, context: context)
            let select = try fields.enumeration(
                "Select", allowed: ["ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT"])
            let projectionName = fields.has("ProjectionExpression") ? "ProjectionExpression" : "AttributesToGet"
            self.select = select
            switch select {
            case "ALL_PROJECTED_ATTRIBUTES" where !onIndex:
                throw .validation("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
            case "ALL_PROJECTED_ATTRIBUTES" where projection != nil:
                throw .validation("Cannot specify the \(projectionName) when choosing to get ALL_PROJECTED_ATTRIBUTES")
            case "ALL_ATTRIBUTES" where projection != nil:
                throw .validation("Cannot specify the \(projectionName) when choosing to get ALL_ATTRIBUTES")
            case "COUNT" where projection != nil:
                throw .validation("Cannot specify the \(projectionName) when choosing to get COUNT")
            case "SPECIFIC_ATTRIBUTES" where projection == nil:
                throw .validation(
                    "SPECIFIC_ATTRIBUTES requires either ProjectionExpression or AttributesToGet to be specified")
            default: break
            }
            countOnly = select == "COUNT"
            if let limit = try fields.integer("Limit") {
                guard limit >= 1 else {
                    throw .validation(
                        "1 validation error detected: Value '\(limit)' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
                    )
                }
                self.limit = limit
            }
            consistent = try fields.bool("ConsistentRead") ?? false
        }
    }

    /// The items of a walk that pass the filter, as the response shows them.
    struct ReadResult {
        /// The items shown, as a JSON array written as they are added (closed by `json`).
        var items: [UInt8] = [UInt8(ascii: "[")]
        var count = 0
        var scanned = 0
        var bytes = 0
        var lastStoredItem: [UInt8]?

        mutating func add(_ page: RangePage, options: ReadOptions) throws(DynamoError) {
            // Without a filter or a projection nothing looks into an item: each is written
            // from its stored form.
            let decodes = options.filter != nil || options.projection != nil
            for stored in page.storedItems {
                scanned += 1
                let item = decodes ? try StoredItem.decode(stored) : nil
                if let item, !(options.filter?.evaluate(item) ?? true) { continue }
                count += 1
                guard !options.countOnly else { continue }
                if count > 1 { items.append(UInt8(ascii: ",")) }
                if let item {
                    (options.projection.map { Projection.apply($0, to: item) } ?? item).writeJSON(to: &items)
                } else {
                    try StoredItem.writeJSON(stored, to: &items)
                }
            }
            bytes += page.bytes
            lastStoredItem = page.storedItems.last ?? lastStoredItem
        }

        /// The response's members. Takes the written items (no copy of the page): call once.
        mutating func json(
            info: TableInfo, more: Bool, options: ReadOptions, index: SecondaryIndex? = nil
        ) throws(DynamoError) -> [String: JSON] {
            var result: [String: JSON] = ["Count": .number(String(count)), "ScannedCount": .number(String(scanned))]
            if !options.countOnly {
                items.append(UInt8(ascii: "]"))
                result["Items"] = .serialized(items)
                items = []
            }
            if more, let lastStoredItem {
                let lastItem = try StoredItem.decode(lastStoredItem)
                let keyNames = info.keyNames + (index?.keyNames ?? [])
                result["LastEvaluatedKey"] = lastItem.filter { keyNames.contains($0.key) }.json
            }
            return result
        }

        /// Read units: the bytes read, in 4 KB units rounded up, halved when eventually consistent.
        func units(consistent: Bool) -> Double {
            DynamoService.readUnits(bytes, consistent: consistent)
        }
    }

    // MARK: Query

    /// A Query's table, its key condition, its filter's text and the expression context
    /// the rest of it reads: the part of a Query that names its partition, which the
    /// router reads too (`owningCore`).
    func queryKey(
        _ fields: RequestFields
    ) throws(DynamoError)
        -> (
            info: TableInfo, keyCondition: KeyCondition, filterText: String?, context: ExpressionContext,
            index: SecondaryIndex?
        )
    {
        let info = try table(fields)
        let index = try secondaryIndex(fields, info: info)
        func read(_ condition: Condition) throws(DynamoError) -> KeyCondition {
            if let index { try KeyCondition(condition, index: index) } else { try KeyCondition(condition, table: info) }
        }
        let keyText = try fields.string("KeyConditionExpression")
        let filterText = try fields.string("FilterExpression")
        let context = try fields.expressionContext(
            usesExpressions: keyText != nil || filterText != nil || fields.has("ProjectionExpression"))
        let keyCondition: KeyCondition
        if let keyText {
            keyCondition = try read(
                ExpressionParser.condition(keyText, kind: "KeyConditionExpression", context: context))
        } else if let legacy = try fields.object("KeyConditions") {
            keyCondition = try read(LegacyParameters.keyConditions(legacy))
        } else {
            throw .validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
        }
        return (info, keyCondition, filterText, context, index)
    }

    func query(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let (info, keyCondition, filterText, context, index) = try queryKey(fields)
        let keyNames = index?.keyNames ?? info.keyNames
        var filter = try filterText.map { (text) throws(DynamoError) in
            try ExpressionParser.condition(text, kind: "FilterExpression", context: context)
        }
        if let filter, let key = keyNames.first(where: filter.attributeNames.contains) {
            throw .validation(
                "Filter Expression can only contain non-primary key attributes: Primary key attribute: \(key)")
        }
        let conditionalOperator = try fields.conditionalOperator()
        if let legacy = try fields.object("QueryFilter") {
            if let key = keyNames.first(where: legacy.keys.contains) {
                throw .validation("QueryFilter can only contain non-key attributes: Primary key attribute: \(key)")
            }
            filter = try LegacyParameters.filter(
                legacy, conditionalOperator: conditionalOperator, parameter: "QueryFilter")
        }
        let options = try ReadOptions(fields, filter: filter, context: context, onIndex: index != nil)
        try context.checkAllUsed()
        if let index { try checkGlobalRead(options, index: index, info: info) }
        let forward = try fields.bool("ScanIndexForward") ?? true

        var after: [UInt8]?
        if let index, let start = try fields.item("ExclusiveStartKey") {
            let (entry, partitionKey, sortKeys) = try indexStartKey(start, info: info, index: index)
            guard partitionKey == keyCondition.partitionKey else {
                throw .validation(
                    "The provided starting key is invalid: The provided key element does not match the schema")
            }
            guard keyCondition.matchesSort(sortKeys) else {
                throw .validation("The provided starting key does not match the range key predicate")
            }
            after = entry
        } else if let start = try fields.item("ExclusiveStartKey") {
            let (partitionKey, sortKey) = try startKey(start, info: info)
            guard partitionKey == keyCondition.partitionKey else {
                throw .validation(
                    "The provided starting key is invalid: The provided key element does not match the schema")
            }
            guard keyCondition.matchesSort(sortKey) else {
                throw .validation("The provided starting key does not match the range key predicate")
            }
            after = info.storageKey(partition: partitionKey, sort: sortKey)
        }
        let (lower, upper) = index.map { keyCondition.keyRange(index: $0.id) } ?? keyCondition.keyRange(table: info.id)
        var page = try await transport.readRange(
            RangeRead(
                KeyRange(lower: lower, upper: upper), after: after, reverse: !forward, limit: options.limit,
                byteLimit: Self.pageBytesMax, consistent: options.consistent),
            at: partition(for: keyCondition.partitionKey))
        var fetchUnits = 0.0
        if let index {
            (page, fetchUnits) = try await shownEntries(
                page, info: info, index: index, readingTable: readsTable(options, index: index, info: info),
                consistent: options.consistent)
        }
        var result = ReadResult()
        try result.add(page, options: options)
        var json = try result.json(info: info, more: page.more, options: options, index: index)
        try addConsumedCapacity(
            fields, info: info, units: Self.readUnits(result, index: index, fetchUnits: fetchUnits, options: options),
            to: &json)
        return .object(json)
    }

    // MARK: Scan

    func scan(_ fields: RequestFields) async throws(DynamoError) -> JSON {
        let info = try table(fields)
        let index = try secondaryIndex(fields, info: info)
        let space = index?.id ?? info.id
        let filterText = try fields.string("FilterExpression")
        let context = try fields.expressionContext(
            usesExpressions: filterText != nil || fields.has("ProjectionExpression"))
        var filter = try filterText.map { (text) throws(DynamoError) in
            try ExpressionParser.condition(text, kind: "FilterExpression", context: context)
        }
        let conditionalOperator = try fields.conditionalOperator()
        if let legacy = try fields.object("ScanFilter") {
            filter = try LegacyParameters.filter(
                legacy, conditionalOperator: conditionalOperator, parameter: "ScanFilter")
        }
        let options = try ReadOptions(fields, filter: filter, context: context, onIndex: index != nil)
        try context.checkAllUsed()
        if let index { try checkGlobalRead(options, index: index, info: info) }
        let (low, high) = try segmentHashes(fields)

        // The segment's keys: from its first hash to the next segment's (or the table's end).
        let lower = KeyEncoding.hashStart(table: space, hash: low)
        let upper =
            high.map { KeyEncoding.hashStart(table: space, hash: $0) }
            ?? KeyEncoding.prefixEnd(KeyEncoding.tablePrefix(space))
        var first = partitionIndex(hash: low)
        let last = partitionIndex(hash: high.map { $0 - 1 } ?? UInt64.max)
        var after: [UInt8]?
        if let start = try fields.item("ExclusiveStartKey") {
            let partitionKey: AttributeValue
            if let index {
                let found = try indexStartKey(start, info: info, index: index)
                (after, partitionKey) = (found.entry, found.partitionKey)
            } else {
                let (partition, sortKey) = try startKey(start, info: info)
                (after, partitionKey) = (info.storageKey(partition: partition, sort: sortKey), partition)
            }
            let hash = KeyEncoding.hash(partitionKey)
            guard hash >= low, high.map({ hash < $0 }) ?? true else {
                throw .validation("The provided Exclusive start key does not map to the provided segment")
            }
            first = partitionIndex(hash: hash)
        }

        var result = ReadResult()
        var more = false
        var fetchUnits = 0.0
        for partitionIndex in first...last {
            var page = try await transport.readRange(
                RangeRead(
                    KeyRange(lower: lower, upper: upper), after: partitionIndex == first ? after : nil,
                    limit: options.limit - result.scanned, byteLimit: Self.pageBytesMax - result.bytes,
                    consistent: options.consistent),
                at: partitionIndex)
            if let index {
                let fetched: Double
                (page, fetched) = try await shownEntries(
                    page, info: info, index: index, readingTable: readsTable(options, index: index, info: info),
                    consistent: options.consistent)
                fetchUnits += fetched
            }
            try result.add(page, options: options)
            if page.more || result.scanned == options.limit || result.bytes >= Self.pageBytesMax {
                more = page.more || partitionIndex < last
                break
            }
        }
        var json = try result.json(info: info, more: more, options: options, index: index)
        try addConsumedCapacity(
            fields, info: info, units: Self.readUnits(result, index: index, fetchUnits: fetchUnits, options: options),
            to: &json)
        return .object(json)
    }

    /// A Query's or Scan's units: the table's, or an index's and the table's fetches.
    private static func readUnits(
        _ result: ReadResult, index: SecondaryIndex?, fetchUnits: Double, options: ReadOptions
    ) -> ConsumedUnits {
        let units = result.units(consistent: options.consistent)
        guard let index else { return ConsumedUnits(table: units) }
        var consumed = ConsumedUnits(units, of: index)
        consumed.table = fetchUnits
        return consumed
    }

    /// The hash range of the requested segment: `low` inclusive, `high` exclusive (nil for
    /// the end of the hash space).
    private func segmentHashes(_ fields: RequestFields) throws(DynamoError) -> (UInt64, UInt64?) {
        let segment = try fields.integer("Segment")
        let total = try fields.integer("TotalSegments")
        switch (segment, total) {
        case (nil, nil): return (0, nil)
        case (_?, nil):
            throw .validation(
                "The TotalSegments parameter is required but was not present in the request when Segment parameter is present"
            )
        case (nil, _?):
            throw .validation(
                "The Segment parameter is required but was not present in the request when parameter TotalSegments is present"
            )
        case (let segment?, let total?):
            guard (1...1_000_000).contains(total) else {
                let bound = total < 1 ? "greater than or equal to 1" : "less than or equal to 1000000"
                throw .validation(
                    "1 validation error detected: Value '\(total)' at 'totalSegments' failed to satisfy constraint: Member must have value \(bound)"
                )
            }
            guard segment >= 0 else {
                throw .validation(
                    "1 validation error detected: Value '\(segment)' at 'segment' failed to satisfy constraint: Member must have value greater than or equal to 0"
                )
            }
            guard segment < total else {
                throw .validation(
                    "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: \(segment) is out of bounds of TotalSegments: \(total)"
                )
            }
            func boundary(_ index: Int) -> UInt64 { UInt64((UInt128(index) << 64) / UInt128(total)) }
            return (boundary(segment), segment + 1 == total ? nil : boundary(segment + 1))
        }
    }

    // MARK: Helpers

    /// An ExclusiveStartKey's primary key, checked against the schema.
    private func startKey(_ start: Item, info: TableInfo) throws(DynamoError) -> (AttributeValue, AttributeValue?) {
        do {
            return try info.primaryKey(of: start, keyOnly: true)
        } catch {
            throw .validation("The provided starting key is invalid: \(error.message)")
        }
    }

}
