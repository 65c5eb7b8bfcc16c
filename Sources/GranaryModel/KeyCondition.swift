/// A Query's KeyConditionExpression, checked against the table's key schema the way
/// DynamoDB checks it, and turned into the B-tree key range it selects.
///
/// The partition key is compared with `=`; the sort key, when there is a condition on it,
/// with one of `= < <= > >=`, BETWEEN or begins_with; the two are joined by AND.
public struct KeyCondition: Sendable {
    public enum SortCondition: Sendable {
        case compare(Comparator, AttributeValue)
        case between(AttributeValue, AttributeValue)
        case beginsWith(AttributeValue)
    }

    public let partitionKey: AttributeValue
    public let sort: SortCondition?

    public init(partitionKey: AttributeValue, sort: SortCondition?) {
        self.partitionKey = partitionKey
        self.sort = sort
    }

    /// Reads the parsed expression. Every operand on the value side must be a value.
    public init(_ condition: Condition, table: TableInfo) throws(DynamoError) {
        var parts: [Condition] = []
        try Self.flatten(condition, into: &parts)
        guard parts.count <= 2 else { throw .validation("Query key condition not supported") }
        var partition: AttributeValue?
        var sort: SortCondition?
        var seen: Set<String> = []
        for part in parts {
            let (name, constraint) = try Self.keyConstraint(part)
            guard seen.insert(name).inserted else {
                throw .validation("KeyConditionExpressions must only contain one condition per key")
            }
            if name == table.partitionKey.name {
                guard case .compare(.equal, let value) = constraint else {
                    throw .validation("Query key condition not supported")
                }
                try Self.checkValue(value, table.partitionKey, table: table)
                partition = value
            } else if let sortKey = table.sortKey, name == sortKey.name {
                switch constraint {
                case .compare(_, let value): try Self.checkValue(value, sortKey, table: table)
                case .between(let low, let high):
                    try Self.checkValue(low, sortKey, table: table)
                    try Self.checkValue(high, sortKey, table: table)  // the parser has checked low <= high
                case .beginsWith(let value):
                    guard sortKey.type != "N" else {
                        throw .invalidExpression(
                            "KeyConditionExpression",
                            "Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"
                        )
                    }
                    try Self.checkValue(value, sortKey, table: table)
                }
                sort = constraint
            } else {
                throw .validation(
                    "Query condition missed key schema element: \(table.sortKey?.name ?? table.partitionKey.name)")
            }
        }
        guard let partition else {
            throw .validation("Query condition missed key schema element: \(table.partitionKey.name)")
        }
        self.init(partitionKey: partition, sort: sort)
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
    private static func checkValue(_ value: AttributeValue, _ key: KeyAttribute, table: TableInfo) throws(DynamoError) {
        guard value.typeName == key.type else {
            throw .validation(
                "One or more parameter values were invalid: Condition parameter type does not match schema type")
        }
        try table.checkKeySize(value, of: key)
    }

    /// Whether an item's sort key satisfies the condition (for a starting key's check).
    public func matchesSort(_ value: AttributeValue?) -> Bool {
        guard let sort else { return true }
        guard let value else { return false }
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

    /// The B-tree keys of the entries this condition selects in local secondary index
    /// `index` (`SecondaryIndex`: the index sort key terminated, then the table's).
    public func keyRange(index: UInt32) -> (lower: [UInt8], upper: [UInt8]) {
        keyRange(
            prefix: KeyEncoding.partitionPrefix(table: index, partitionKey: partitionKey),
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
