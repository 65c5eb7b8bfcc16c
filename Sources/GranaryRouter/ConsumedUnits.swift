import GranaryModel

/// What a request consumed in one table, itemized as ReturnConsumedCapacity INDEXES shows
/// it: the table's own units and each index's.
struct ConsumedUnits: Sendable {
    var table: Double
    var localIndexes: [String: Double] = [:]
    var globalIndexes: [String: Double] = [:]

    init(table: Double) { self.table = table }

    /// Units of `index` alone (a Query or Scan of it).
    init(_ units: Double, of index: SecondaryIndex) {
        table = 0
        add(units, to: index)
    }

    var total: Double { table + localIndexes.values.reduce(0, +) + globalIndexes.values.reduce(0, +) }

    mutating func add(_ units: Double, to index: SecondaryIndex) {
        if index.global {
            globalIndexes[index.name, default: 0] += units
        } else {
            localIndexes[index.name, default: 0] += units
        }
    }

    static func + (left: ConsumedUnits, right: ConsumedUnits) -> ConsumedUnits {
        var sum = left
        sum.table += right.table
        sum.localIndexes.merge(right.localIndexes, uniquingKeysWith: +)
        sum.globalIndexes.merge(right.globalIndexes, uniquingKeysWith: +)
        return sum
    }

    static func * (units: ConsumedUnits, factor: Double) -> ConsumedUnits {
        var product = units
        product.table *= factor
        product.localIndexes = product.localIndexes.mapValues { $0 * factor }
        product.globalIndexes = product.globalIndexes.mapValues { $0 * factor }
        return product
    }

    /// A write of an item from `old` to `new` (nil: absent) as DynamoDB charges it: the
    /// table a write unit per KB of the larger; each index whose entry changes, a write
    /// unit per KB of its entry (the projected item) for an entry put or deleted, both for
    /// an entry whose index key changed, nothing for an index the write leaves as it was.
    static func write(_ info: TableInfo, old: Item?, new: Item?) -> ConsumedUnits {
        var units = ConsumedUnits(table: DynamoService.writeUnits(max(old?.sizeBytes ?? 0, new?.sizeBytes ?? 0)))
        guard let maintenance = info.indexMaintenance else { return units }
        for index in maintenance.indexes {
            let before = old.flatMap { maintenance.entry(of: $0, in: index) }
            let after = new.flatMap { maintenance.entry(of: $0, in: index) }
            var charged = 0.0
            switch (before, after) {
            case (nil, nil): continue
            case (let before?, nil): charged = DynamoService.writeUnits(before.item.sizeBytes)
            case (nil, let after?): charged = DynamoService.writeUnits(after.item.sizeBytes)
            case (let before?, let after?):
                if before.key != after.key {
                    charged =
                        DynamoService.writeUnits(before.item.sizeBytes) + DynamoService.writeUnits(after.item.sizeBytes)
                } else if before.item != after.item {
                    charged = DynamoService.writeUnits(after.item.sizeBytes)
                } else {
                    continue
                }
            }
            units.add(charged, to: index)
        }
        return units
    }

    /// The ConsumedCapacity member for `table` in `mode` (TOTAL or INDEXES).
    func json(table name: String, mode: String) -> JSON {
        var consumed: [String: JSON] = ["TableName": .string(name), "CapacityUnits": .number(String(total))]
        guard mode == "INDEXES" else { return .object(consumed) }
        consumed["Table"] = .object(["CapacityUnits": .number(String(table))])
        for (member, indexes) in [("LocalSecondaryIndexes", localIndexes), ("GlobalSecondaryIndexes", globalIndexes)]
        where !indexes.isEmpty {
            consumed[member] = .object(indexes.mapValues { .object(["CapacityUnits": .number(String($0))]) })
        }
        return .object(consumed)
    }
}
