/// The parameters DynamoDB had before expressions, which older applications still send:
/// Expected, KeyConditions, QueryFilter and ScanFilter (with ConditionalOperator), and
/// AttributeUpdates. Each is read into the same Condition and UpdateAction forms the
/// expressions parse into, so there is one evaluator.
public enum LegacyParameters {
    /// Expected: per attribute, Value/Exists or ComparisonOperator/AttributeValueList.
    public static func expected(
        _ members: [String: JSON], conditionalOperator: String?
    ) throws(DynamoError) -> Condition? {
        var conditions: [Condition] = []
        for (name, json) in members.sorted(by: { $0.key < $1.key }) {
            guard case .object(let entry) = json else { throw .serialization("Expected.\(name) must be a structure") }
            let path = DocumentPath.attribute(name)
            if entry["ComparisonOperator"] != nil {
                if entry["Value"] != nil || entry["Exists"] != nil {
                    throw .validation(
                        "One or more parameter values were invalid: Value or Exists cannot be used with ComparisonOperator"
                    )
                }
                conditions.append(try comparison(path, entry))
                continue
            }
            var exists = true
            if let flag = entry["Exists"] {
                guard case .bool(let value) = flag else {
                    throw .serialization("Expected.\(name).Exists must be a boolean")
                }
                exists = value
            }
            let value = try entry["Value"].map { (json) throws(DynamoError) in try AttributeValue(json: json) }
            switch (exists, value) {
            case (true, let value?): conditions.append(.compare(.path(path), .equal, .value(value)))
            case (false, nil): conditions.append(.notExists(path))
            case (false, _?):
                throw .validation(
                    "One or more parameter values were invalid: Value cannot be used when Exists is false for Attribute: \(name)"
                )
            case (true, nil):
                throw .validation(
                    "One or more parameter values were invalid: Value must be provided when Exists is true for Attribute: \(name)"
                )
            }
        }
        return combine(conditions, conditionalOperator)
    }

    /// QueryFilter, ScanFilter or KeyConditions: per attribute, a ComparisonOperator and
    /// its AttributeValueList.
    public static func filter(
        _ members: [String: JSON], conditionalOperator: String?, parameter: String
    ) throws(DynamoError) -> Condition? {
        var conditions: [Condition] = []
        for (name, json) in members.sorted(by: { $0.key < $1.key }) {
            guard case .object(let entry) = json else {
                throw .serialization("\(parameter).\(name) must be a structure")
            }
            conditions.append(try comparison(.attribute(name), entry))
        }
        return combine(conditions, conditionalOperator)
    }

    /// KeyConditions, read as a filter but allowing only the operators a key range can use.
    public static func keyConditions(_ members: [String: JSON]) throws(DynamoError) -> Condition {
        for (_, json) in members {
            if case .object(let entry) = json, case .string(let name)? = entry["ComparisonOperator"],
                !["EQ", "LE", "LT", "GE", "GT", "BEGINS_WITH", "BETWEEN"].contains(name)
            {
                throw .validation("Attempted conditional constraint is not an indexable operation")
            }
        }
        guard let condition = try filter(members, conditionalOperator: nil, parameter: "KeyConditions") else {
            throw .validation("Query condition missed key schema element")
        }
        return condition
    }

    /// AttributeUpdates: per attribute, an Action (PUT, ADD or DELETE) and a Value.
    public static func attributeUpdates(_ members: [String: JSON]) throws(DynamoError) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        for (name, json) in members.sorted(by: { $0.key < $1.key }) {
            guard case .object(let entry) = json else {
                throw .serialization("AttributeUpdates.\(name) must be a structure")
            }
            try ItemLimits.checkAttributeName(name)
            var action = "PUT"
            if let given = entry["Action"], given != .null {
                guard case .string(let text) = given, ["PUT", "ADD", "DELETE"].contains(text) else {
                    throw .validation(
                        "1 validation error detected: Value '\(given)' at 'attributeUpdates.\(name).member.action' failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"
                    )
                }
                action = text
            }
            let path = DocumentPath.attribute(name)
            let value = try entry["Value"].flatMap { $0 == .null ? nil : $0 }.map { (json) throws(DynamoError) in
                try AttributeValue(json: json)
            }
            switch (action, value) {
            case ("PUT", let value?): actions.append(.set(path, .value(value)))
            case ("DELETE", nil): actions.append(.remove(path))
            case ("DELETE", let value?):
                guard ["SS", "NS", "BS"].contains(value.typeName) else {
                    throw .validation(
                        "One or more parameter values were invalid: DELETE action with value is not supported for the type \(value.typeName)"
                    )
                }
                actions.append(.delete(path, value))
            case ("ADD", let value?):
                guard ["N", "SS", "NS", "BS"].contains(value.typeName) else {
                    throw .validation(
                        "One or more parameter values were invalid: ADD action is not supported for the type \(value.typeName)"
                    )
                }
                actions.append(.add(path, value))
            default:
                throw .validation(
                    "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified"
                )
            }
        }
        return actions
    }

    // MARK: Comparisons

    private static let argumentCounts: [String: ClosedRange<Int>] = [
        "EQ": 1...1, "NE": 1...1, "LE": 1...1, "LT": 1...1, "GE": 1...1, "GT": 1...1, "NOT_NULL": 0...0, "NULL": 0...0,
        "CONTAINS": 1...1, "NOT_CONTAINS": 1...1, "BEGINS_WITH": 1...1, "IN": 1...100, "BETWEEN": 2...2,
    ]

    private static func comparison(_ path: DocumentPath, _ entry: [String: JSON]) throws(DynamoError) -> Condition {
        guard case .string(let name)? = entry["ComparisonOperator"], let counts = argumentCounts[name] else {
            let shown = entry["ComparisonOperator"].map { "\($0)" } ?? "null"
            throw .validation(
                "1 validation error detected: Value '\(shown)' at 'comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
            )
        }
        var values: [AttributeValue] = []
        if let list = entry["AttributeValueList"], list != .null {
            guard case .array(let elements) = list else { throw .serialization("AttributeValueList must be a list") }
            for element in elements { values.append(try AttributeValue(json: element)) }
        }
        guard counts.contains(values.count) else {
            throw .validation(
                "One or more parameter values were invalid: Invalid number of argument(s) for the \(name) ComparisonOperator"
            )
        }
        if let first = values.first, values.contains(where: { $0.typeName != first.typeName }) {
            throw .validation(
                "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type"
            )
        }
        let scalarOnly = ["LE", "LT", "GE", "GT", "BETWEEN", "BEGINS_WITH", "CONTAINS", "NOT_CONTAINS", "IN"]
        for value in values where scalarOnly.contains(name) && !["S", "N", "B"].contains(value.typeName) {
            throw .validation(
                "One or more parameter values were invalid: ComparisonOperator \(name) is not valid for \(value.typeName) AttributeValue type"
            )
        }
        if name == "BEGINS_WITH", values[0].typeName == "N" {
            throw .validation(
                "One or more parameter values were invalid: ComparisonOperator BEGINS_WITH is not valid for N AttributeValue type"
            )
        }
        let subject = Operand.path(path)
        switch name {
        case "EQ": return .compare(subject, .equal, .value(values[0]))
        case "NE": return .compare(subject, .notEqual, .value(values[0]))
        case "LE": return .compare(subject, .lessOrEqual, .value(values[0]))
        case "LT": return .compare(subject, .less, .value(values[0]))
        case "GE": return .compare(subject, .greaterOrEqual, .value(values[0]))
        case "GT": return .compare(subject, .greater, .value(values[0]))
        case "NOT_NULL": return .exists(path)
        case "NULL": return .notExists(path)
        case "CONTAINS": return .contains(subject, .value(values[0]))
        case "NOT_CONTAINS": return .and(.exists(path), .not(.contains(subject, .value(values[0]))))
        case "BEGINS_WITH": return .beginsWith(subject, .value(values[0]))
        case "IN": return .isIn(subject, values.map { .value($0) })
        default:
            if let order = AttributeValue.compare(values[0], values[1]), order > 0 {
                throw .validation(
                    "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound")
            }
            return .between(subject, .value(values[0]), .value(values[1]))
        }
    }

    private static func combine(_ conditions: [Condition], _ conditionalOperator: String?) -> Condition? {
        guard var combined = conditions.first else { return nil }
        for next in conditions.dropFirst() {
            combined = conditionalOperator == "OR" ? .or(combined, next) : .and(combined, next)
        }
        return combined
    }
}
