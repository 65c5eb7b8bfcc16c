import GranaryCommands
import GranaryModel

/// Query and Scan on a secondary index: its entries are walked as a table's items are, in
/// the index's key space, and shown as DynamoDB shows them: what the index projects, or,
/// for a local index asked for more (ALL_ATTRIBUTES, or attributes it does not project),
/// the table's item, read in the same partition. A global index is never read through to
/// the table: such a request is refused (`checkGlobalRead`).
extension DynamoService {
    /// The index a Query or Scan names, if any; ValidationException if the table has none
    /// of that name, or for a strongly consistent read of a global index.
    func secondaryIndex(_ fields: RequestFields, info: TableInfo) throws(DynamoError) -> SecondaryIndex? {
        guard let name = try fields.string("IndexName") else { return nil }
        guard let index = info.index(named: name) else {
            throw .validation("The table does not have the specified index: \(name)")
        }
        if index.creating {
            throw .validation("Cannot read from backfilling global secondary index: \(name)")
        }
        if index.global, try fields.bool("ConsistentRead") == true {
            throw .validation("Consistent reads are not supported on global secondary indexes")
        }
        return index
    }

    /// An ExclusiveStartKey of an index walk: the table's keys and the index's, checked
    /// against both schemas; the entry key after which the walk resumes, and the index's
    /// partition key value (`SecondaryIndex.partitionValue`) and sort key attributes' values.
    func indexStartKey(
        _ start: Item, info: TableInfo, index: SecondaryIndex
    ) throws(DynamoError) -> (entry: [UInt8], partitionKey: AttributeValue, sortKeys: [AttributeValue]) {
        let keys = info.keyAttributes + index.keyAttributes.filter { key in !info.keyNames.contains(key.name) }
        let invalid = DynamoError.validation(
            "The provided starting key is invalid: The provided key element does not match the schema")
        guard start.count == keys.count else { throw invalid }
        for key in keys {
            guard let value = start[key.name], value.typeName == key.type, value.sizeBytes > 0,
                value.sizeBytes <= ItemLimits.partitionKeyBytesMax
            else { throw invalid }
        }
        guard let maintenance = info.indexMaintenance, let entry = maintenance.entry(of: start, in: index) else {
            throw invalid
        }
        guard let partition = SecondaryIndex.partitionValue(index.partitionKeys.map { start[$0.name]! }) else {
            throw invalid
        }
        return (entry.key, partition, index.sortKeys.map { start[$0.name]! })
    }

    /// Refuses what a global index cannot answer: attributes it does not project (nothing
    /// is read from the table for it), as DynamoDB does.
    func checkGlobalRead(_ options: ReadOptions, index: SecondaryIndex, info: TableInfo) throws(DynamoError) {
        guard index.global, readsTable(options, index: index, info: info) else { return }
        if options.select == "ALL_ATTRIBUTES" {
            throw .validation(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global "
                    + "secondary index \(index.name) because its projection type is not ALL")
        }
        throw .validation(
            "One or more parameter values were invalid: Global secondary index \(index.name) does not project the "
                + "attributes the request names")
    }

    /// Whether a walk of `index` must read the table's items: the request asks for every
    /// attribute, or names one the index does not project.
    func readsTable(_ options: ReadOptions, index: SecondaryIndex, info: TableInfo) -> Bool {
        guard index.projection.kind != .all else { return false }
        if options.select == "ALL_ATTRIBUTES" { return true }
        guard let maintenance = info.indexMaintenance else { return false }
        var named = Set(options.projection?.map(\.attributeName) ?? [])
        named.formUnion(options.filter?.attributeNames ?? [])
        return named.contains {
            !maintenance.isKey($0, of: index) && !index.projection.nonKeyAttributes.contains($0)
        }
    }

    /// A page of index entries as the items to show: each entry's projection, or the
    /// table's item when `readingTable` (or when the entry is a reference, then projected).
    /// An entry whose item was deleted since is left out. With the read units the table's
    /// items cost when `readingTable` (each item's, as DynamoDB charges a local index's
    /// fetches; a reference's read is this node's own affair, not charged).
    func shownEntries(
        _ page: RangePage, info: TableInfo, index: SecondaryIndex, readingTable: Bool, consistent: Bool
    ) async throws(DynamoError) -> (page: RangePage, tableUnits: Double) {
        guard let maintenance = info.indexMaintenance else { return (page, 0) }
        var tableUnits = 0.0
        var shown = page
        shown.storedItems = []
        shown.storedItems.reserveCapacity(page.storedItems.count)
        for stored in page.storedItems {
            // Most entries are shown as stored: only their names are read.
            let reference = try StoredItem.has(IndexMaintenance.referenceMarker, in: stored)
            guard readingTable || reference else {
                shown.storedItems.append(stored)
                continue
            }
            let item = try StoredItem.decode(stored)
            guard let partitionKey = item[info.partitionKey.name] else { continue }
            let key = info.storageKey(partition: partitionKey, sort: info.sortKey.flatMap { item[$0.name] })
            guard let base = try await transport.get(key, at: partition(for: partitionKey), consistent: consistent)
            else { continue }
            let whole = try StoredItem.decode(base)
            if readingTable { tableUnits += Self.readUnits(whole.sizeBytes, consistent: consistent) }
            shown.storedItems.append(ItemCodec.encode(readingTable ? whole : maintenance.project(whole, in: index)))
        }
        return (shown, tableUnits)
    }

    // MARK: Item collection metrics

    /// Whether a write asks for ItemCollectionMetrics (SIZE).
    static func reportsCollection(_ fields: RequestFields) throws(DynamoError) -> Bool {
        try fields.enumeration("ReturnItemCollectionMetrics", allowed: ["SIZE", "NONE"]) == "SIZE"
    }

    /// A write's ItemCollectionMetrics: its item's partition key, and the collection's size
    /// as DynamoDB gives it, a range of gigabytes around it; nil for a table without local
    /// indexes.
    static func collectionMetrics(_ outcome: WriteOutcome, info: TableInfo) -> JSON? {
        guard let bytes = outcome.collectionBytes,
            let partitionKey = (outcome.new ?? outcome.old)?[info.partitionKey.name]
        else { return nil }
        let gigabytes = (Double(bytes) / Double(1 << 30)).rounded(.down)
        return .object([
            "ItemCollectionKey": [info.partitionKey.name: partitionKey].json,
            "SizeEstimateRangeGB": .array([.number(String(gigabytes)), .number(String(gigabytes + 1))]),
        ])
    }
}
