/// A Query's KeyConditionExpression, checked against the key schema of the table or index
/// it reads the way DynamoDB checks it, and turned into the B-tree key range it selects.
///
/// Each partition key attribute is compared with `=`; the sort key, when there is a
/// condition on it, with one of `= < <= > >=`, BETWEEN or begins_with; the parts are joined
/// by AND. On a multi-attribute sort key the conditions name its attributes from the first
/// with no gap, each with `=` but the last named.
public struct KeyCondition: Sendable {
    public enum SortCondition: Sendable {
        case compare(Comparator, AttributeValue)
        case between(AttributeValue, AttributeValue)
        case beginsWith(AttributeValue)
    }

    /// The partition key's value (`SecondaryIndex.partitionValue` of a multi-attribute key).
    public let partitionKey: AttributeValue
    /// The values a multi-attribute sort key's leading attributes are equal to, before the
    /// attribute `sort` constrains.
    public let sortPrefix: [AttributeValue]
    public let sort: SortCondition?

    public init(partitionKey: AttributeValue, sortPrefix: [AttributeValue] = [], sort: SortCondition?) {
        self.partitionKey = partitionKey
        self.sortPrefix = sortPrefix
        self.sort = sort
    }

    /// Reads the parsed expression against the table's key. Every operand on the value side
    /// must be a value.
    public init(_ condition: Condition, table: TableInfo) throws(DynamoError) {
        try self.init(condition, partitionKeys: [table.partitionKey], sortKeys: table.sortKey.map { [$0] } ?? [])
    }

    /// Reads the parsed expression against `index`'s key.
    public init(_ condition: Condition, index: SecondaryIndex) throws(DynamoError) {
        try self.init(condition, partitionKeys: index.partitionKeys, sortKeys: index.sortKeys)
    }

    private init(_ condition: Condition, partitionKeys: [KeyAttribute], sortKeys: [KeyAttribute]) throws(DynamoError) {
        var parts: [Condition] = []
        try Self.flatten(condition, into: &parts)
        guard parts.count <= partitionKeys.count + max(sortKeys.count, 1) else {
            throw .validation("Query key condition not supported")
        }
        var constraints: [String: SortCondition] = [:]
        for part in parts {
            let (name, constraint) = try Self.keyConstraint(part)
            guard constraints[name] == nil else {
                throw .validation("KeyConditionExpressions must only contain one condition per key")
            }
            guard partitionKeys.contains(where: { $0.name == name }) || sortKeys.contains(where: { $0.name == name })
            else {
                let unnamed = sortKeys.first { constraints[$0.name] == nil } ?? sortKeys.last ?? partitionKeys[0]
                throw .validation("Query condition missed key schema element: \(unnamed.name)")
            }
            constraints[name] = constraint
        }
        var partitionValues: [AttributeValue] = []
        for key in partitionKeys {
            guard let constraint = constraints[key.name] else {
                throw .validation("Query condition missed key schema element: \(key.name)")
            }
            guard case .compare(.equal, let value) = constraint else {
                throw .validation("Query key condition not supported")
            }
            try Self.checkValue(value, key, partition: true)
            partitionValues.append(value)
        }
        guard let partition = SecondaryIndex.partitionValue(partitionValues) else {
            throw .validation(
                "One or more parameter values were invalid: Size of the index partition key attributes together has "
                    + "exceeded the maximum size limit of \(ItemLimits.partitionKeyBytesMax) bytes")
        }
        let named = sortKeys.prefix { constraints[$0.name] != nil }
        if named.count < sortKeys.count, sortKeys[named.count...].contains(where: { constraints[$0.name] != nil }) {
            throw .validation("Query condition missed key schema element: \(sortKeys[named.count].name)")
        }
        var prefix: [AttributeValue] = []
        var sort: SortCondition?
        for (position, key) in named.enumerated() {
            let constraint = constraints[key.name]!
            guard position == named.count - 1 else {
                guard case .compare(.equal, let value) = constraint else {
                    throw .validation(
                        "Query key condition not supported: sort key attribute \(key.name) is compared with other "
                            + "than = and is not the last sort key attribute the condition names")
                }
                try Self.checkValue(value, key, partition: false)
                prefix.append(value)
                continue
            }
            switch constraint {
            case .compare(_, let value): try Self.checkValue(value, key, partition: false)
            case .between(let low, let high):
                try Self.checkValue(low, key, partition: false)
                try Self.checkValue(high, key, partition: false)  // the parser has checked low <= high
            case .beginsWith(let value):
                guard key.type != "N" else {
                    throw .invalidExpression(
                        "KeyConditionExpression",
                        "Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"
                    )
                }
                try Self.checkValue(value, key, partition: false)
            }
            sort = constraint
        }
        self.init(partitionKey: partition, sortPrefix: prefix, sort: sort)
    }

    private static func flatten(_ condition: Condition, into parts: inout [Condition]) throws(DynamoError) {
        switch condition {
        case .and(let left, let right):
            try flatten(left, into: &parts)
            try flatten(right, into: &parts)
        case .or:
            throw .invalidExpression("KeyConditionExpression", "Invalid operator used in KeyConditionExpression: OR")
        case .not:
            throw .invalidExpression("KeyConditionExpression", "Invalid operator used in KeyConditionExpression: NOT")
        case .isIn:
            throw .invalidExpression("KeyConditionExpression", "Invalid operator used in KeyConditionExpression: IN")
        case .exists:
            throw .invalidExpression(
                "KeyConditionExpression", "Invalid operator used in KeyConditionExpression: attribute_exists")
        case .notExists:
            throw .invalidExpression(
                "KeyConditionExpression", "Invalid operator used in KeyConditionExpression: attribute_not_exists")
        case .hasType:
            throw .invalidExpression(
                "KeyConditionExpression", "Invalid operator used in KeyConditionExpression: attribute_type")
        case .contains:
            throw .invalidExpression(
                "KeyConditionExpression", "Invalid operator used in KeyConditionExpression: contains")
        case .compare(_, .notEqual, _):
            throw .invalidExpression("KeyConditionExpression", "Invalid operator used in KeyConditionExpression: <>")
        default: parts.append(condition)
        }
    }

    /// The key attribute a comparison constrains and how.
    private static func keyConstraint(_ condition: Condition) throws(DynamoError) -> (String, SortCondition) {
        switch condition {
        case .compare(let left, let comparator, let right):
            if let name = keyName(left), case .value(let value) = right { return (name, .compare(comparator, value)) }
            if let name = keyName(right), case .value(let value) = left {
                return (name, .compare(comparator.mirrored, value))
            }
        case .between(let subject, .value(let low), .value(let high)):
            if let name = keyName(subject) { return (name, .between(low, high)) }
        case .beginsWith(let subject, .value(let prefix)):
            if let name = keyName(subject) { return (name, .beginsWith(prefix)) }
        default: break
        }
        throw .validation("Query key condition not supported")
    }

    private static func keyName(_ operand: Operand) -> String? {
        guard case .path(let path) = operand, path.elements.count == 1 else { return nil }
        return path.attributeName
    }

    /// A key value's type and size: `keyRange` encodes every value this lets through.
    private static func checkValue(_ value: AttributeValue, _ key: KeyAttribute, partition: Bool) throws(DynamoError) {
        guard value.typeName == key.type else {
            throw .validation(
                "One or more parameter values were invalid: Condition parameter type does not match schema type")
        }
        try TableInfo.checkKeySize(value, of: key, partition: partition)
    }

    /// Whether an item's sort key satisfies the condition (for a starting key's check).
    public func matchesSort(_ value: AttributeValue?) -> Bool {
        matchesSort(value.map { [$0] } ?? [])
    }

    /// Whether an entry's sort key attributes' values satisfy the condition.
    public func matchesSort(_ values: [AttributeValue]) -> Bool {
        guard values.count > sortPrefix.count, Array(values.prefix(sortPrefix.count)) == sortPrefix else {
            return sort == nil && sortPrefix.isEmpty
        }
        guard let sort else { return true }
        let value = values[sortPrefix.count]
        switch sort {
        case .compare(let comparator, let bound):
            return Condition.compare(.value(value), comparator, .value(bound)).evaluate(nil)
        case .between(let low, let high):
            return Condition.between(.value(value), .value(low), .value(high)).evaluate(nil)
        case .beginsWith(let prefix):
            return Condition.beginsWith(.value(value), .value(prefix)).evaluate(nil)
        }
    }

    /// The B-tree keys of the items this condition selects in table `table`.
    public func keyRange(table: UInt32) -> (lower: [UInt8], upper: [UInt8]) {
        // `k + [0]` is the least key above `k`: an item's key ends with its sort key.
        keyRange(
            prefix: KeyEncoding.partitionPrefix(table: table, partitionKey: partitionKey),
            sortBytes: KeyEncoding.keyBytes, startOfSortBytes: KeyEncoding.keyBytes, endOfEqualKeys: { $0 + [0] })
    }

    /// The B-tree keys of the entries this condition selects in secondary index `index`
    /// (`SecondaryIndex`: each index sort key attribute terminated, then the table's keys).
    public func keyRange(index: UInt32) -> (lower: [UInt8], upper: [UInt8]) {
        keyRange(
            prefix: KeyEncoding.partitionPrefix(table: index, partitionKey: partitionKey)
                + SecondaryIndex.sortBytes(sortPrefix),
            sortBytes: { KeyEncoding.terminated(KeyEncoding.keyBytes($0)) },
            startOfSortBytes: { KeyEncoding.escaped(KeyEncoding.keyBytes($0)) },
            endOfEqualKeys: KeyEncoding.prefixEnd)
    }

    /// The range under `prefix` whose sort part (`sortBytes` of a value, followed by
    /// nothing or, in an index, the table's sort key) the condition selects. The keys of
    /// one sort value are from `prefix + sortBytes(v)` to `endOfEqualKeys` of that;
    /// `startOfSortBytes(s)` begins the bytes of every value that begins with `s`.
    private func keyRange(
        prefix: [UInt8], sortBytes: (AttributeValue) -> [UInt8], startOfSortBytes: (AttributeValue) -> [UInt8],
        endOfEqualKeys: ([UInt8]) -> [UInt8]
    ) -> (lower: [UInt8], upper: [UInt8]) {
        let end = KeyEncoding.prefixEnd(prefix)
        guard let sort else { return (prefix, end) }
        func first(_ value: AttributeValue) -> [UInt8] { prefix + sortBytes(value) }
        func past(_ value: AttributeValue) -> [UInt8] { endOfEqualKeys(first(value)) }
        switch sort {
        case .compare(.equal, let value): return (first(value), past(value))
        case .compare(.less, let value): return (prefix, first(value))
        case .compare(.lessOrEqual, let value): return (prefix, past(value))
        case .compare(.greater, let value): return (past(value), end)
        case .compare(.greaterOrEqual, let value): return (first(value), end)
        case .compare(.notEqual, _): preconditionFailure("<> is refused when the condition is read")
        case .between(let low, let high): return (first(low), past(high))
        case .beginsWith(let start):
            let start = prefix + startOfSortBytes(start)
            return (start, KeyEncoding.prefixEnd(start))
        }
    }
}

extension Comparator {
    /// The comparator with its operands swapped: `:v < k` is `k > :v`.
    var mirrored: Comparator {
        switch self {
        case .less: .greater
        case .lessOrEqual: .greaterOrEqual
        case .greater: .less
        case .greaterOrEqual: .lessOrEqual
        default: self
        }
    }
}
