import GranaryModel

/// Typed access to a request's top-level JSON members, with DynamoDB's errors: a missing
/// required member is a ValidationException naming it, a member of the wrong JSON type a
/// SerializationException.
struct RequestFields {
    let members: [String: JSON]

    init(_ json: JSON) throws(DynamoError) {
        guard case .object(let members) = json else {
            throw .serialization("Start of structure or map found where not expected")
        }
        self.members = members
    }

    func has(_ name: String) -> Bool {
        if let value = members[name], value != .null { return true }
        return false
    }

    static func memberPath(_ name: String) -> String { name.prefix(1).lowercased() + name.dropFirst() }

    static func missing(_ name: String) -> DynamoError {
        .validation(
            "1 validation error detected: Value null at '\(memberPath(name))' failed to satisfy constraint: Member must not be null"
        )
    }

    static func wrongType(_ name: String, _ value: JSON, expected: String) -> DynamoError {
        .serialization("Unexpected \(value.typeName) value for '\(name)': expected \(expected)")
    }

    func string(_ name: String) throws(DynamoError) -> String? {
        guard let value = members[name], value != .null else { return nil }
        guard case .string(let text) = value else { throw Self.wrongType(name, value, expected: "a string") }
        return text
    }

    func requiredString(_ name: String) throws(DynamoError) -> String {
        guard let text = try string(name) else { throw Self.missing(name) }
        return text
    }

    func bool(_ name: String) throws(DynamoError) -> Bool? {
        guard let value = members[name], value != .null else { return nil }
        guard case .bool(let flag) = value else { throw Self.wrongType(name, value, expected: "a boolean") }
        return flag
    }

    func integer(_ name: String, in object: [String: JSON]? = nil) throws(DynamoError) -> Int? {
        guard let value = (object ?? members)[name], value != .null else { return nil }
        guard case .number(let text) = value else { throw Self.wrongType(name, value, expected: "a number") }
        guard let number = Int(text) else { throw .serialization("'\(name)' must be an integer, found \(text)") }
        return number
    }

    func object(_ name: String) throws(DynamoError) -> [String: JSON]? {
        guard let value = members[name], value != .null else { return nil }
        guard case .object(let object) = value else { throw Self.wrongType(name, value, expected: "a structure") }
        return object
    }

    func array(_ name: String) throws(DynamoError) -> [JSON]? {
        guard let value = members[name], value != .null else { return nil }
        guard case .array(let elements) = value else { throw Self.wrongType(name, value, expected: "a list") }
        return elements
    }

    /// One of `allowed`, or DynamoDB's enum-constraint error.
    func enumeration(_ name: String, allowed: [String]) throws(DynamoError) -> String? {
        guard let text = try string(name) else { return nil }
        guard allowed.contains(text) else {
            throw .validation(
                "1 validation error detected: Value '\(text)' at '\(Self.memberPath(name))' failed to satisfy constraint: Member must satisfy enum value set: [\(allowed.joined(separator: ", "))]"
            )
        }
        return text
    }

    /// TableName, checked as DynamoDB checks it: 3 to 255 of [a-zA-Z0-9_.-].
    func tableName(_ name: String = "TableName") throws(DynamoError) -> String {
        let text = try requiredString(name)
        try Self.checkTableName(text, member: Self.memberPath(name))
        return text
    }

    static func checkTableName(_ text: String, member: String) throws(DynamoError) {
        var problems: [String] = []
        if text.utf8.count < 3 { problems.append("Member must have length greater than or equal to 3") }
        if text.utf8.count > 255 { problems.append("Member must have length less than or equal to 255") }
        let allowed = text.utf8.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x5F || byte == 0x2E || byte == 0x2D
        }
        if !allowed { problems.append("Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+") }
        guard problems.isEmpty else {
            let shown = text.utf8.count > 300 ? String(text.prefix(300)) + "..." : text
            let count = problems.count == 1 ? "1 validation error" : "\(problems.count) validation errors"
            throw .validation(
                "\(count) detected: "
                    + problems.map { "Value '\(shown)' at '\(member)' failed to satisfy constraint: \($0)" }.joined(
                        separator: "; "))
        }
    }

    func item(_ name: String) throws(DynamoError) -> Item? {
        guard let value = members[name], value != .null else { return nil }
        return try Item(itemJSON: value)
    }

    /// DynamoDB refuses a request that mixes the legacy parameters with expressions.
    /// Every request runs this: it walks the request's few members once rather than
    /// looking up all twelve names (each a hash of the name), and builds the names' lists
    /// only for the error.
    func refuseMixedParameters() throws(DynamoError) {
        var usesLegacy = false, usesExpressions = false
        for (name, value) in members where value != .null {
            if Self.legacyParameters.contains(name) { usesLegacy = true }
            if Self.expressionParameters.contains(name) { usesExpressions = true }
        }
        guard usesLegacy && usesExpressions else { return }
        // DynamoDB itself accepts a Query's legacy KeyConditions beside FilterExpression and
        // ProjectionExpression (its documentation says otherwise; clients rely on it).
        let legacyNames = Self.legacyParameters.filter(has), expressionNames = Self.expressionParameters.filter(has)
        if legacyNames == ["KeyConditions"]
            && expressionNames.allSatisfy({ $0 == "FilterExpression" || $0 == "ProjectionExpression" })
        {
            return
        }
        let legacy = Self.legacyParameters.filter(has), expressions = Self.expressionParameters.filter(has)
        throw .validation(
            "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {\(legacy.joined(separator: ", "))} Expression parameters: {\(expressions.joined(separator: ", "))}"
        )
    }

    static let legacyParameters = [
        "AttributesToGet", "Expected", "AttributeUpdates", "KeyConditions", "QueryFilter", "ScanFilter",
        "ConditionalOperator",
    ]
    static let expressionParameters = [
        "ProjectionExpression", "ConditionExpression", "UpdateExpression", "KeyConditionExpression", "FilterExpression",
    ]

    /// ConditionalOperator (AND or OR), which only combines the legacy conditions.
    func conditionalOperator() throws(DynamoError) -> String? {
        let value = try enumeration("ConditionalOperator", allowed: ["AND", "OR"])
        if value != nil && !["Expected", "QueryFilter", "ScanFilter"].contains(where: has) {
            throw .validation("ConditionalOperator can only be used when Filter or Expected has been specified")
        }
        return value
    }

    /// ExpressionAttributeNames and ExpressionAttributeValues, with DynamoDB's rules for
    /// when they may appear.
    func expressionContext(usesExpressions: Bool) throws(DynamoError) -> ExpressionContext {
        var names: [String: String] = [:]
        if let object = try object("ExpressionAttributeNames") {
            guard usesExpressions else {
                throw .validation("ExpressionAttributeNames can only be specified when using expressions")
            }
            guard !object.isEmpty else { throw .validation("ExpressionAttributeNames must not be empty") }
            for (alias, value) in object {
                guard case .string(let name) = value else {
                    throw Self.wrongType("ExpressionAttributeNames", value, expected: "a string")
                }
                try ItemLimits.checkAttributeName(name)
                names[alias] = name
            }
        }
        var values: [String: AttributeValue] = [:]
        if let object = try object("ExpressionAttributeValues") {
            guard usesExpressions else {
                throw .validation("ExpressionAttributeValues can only be specified when using expressions")
            }
            guard !object.isEmpty else { throw .validation("ExpressionAttributeValues must not be empty") }
            for (alias, value) in object {
                guard alias.hasPrefix(":") else {
                    throw .validation("ExpressionAttributeValues contains invalid key: Syntax error; key: \"\(alias)\"")
                }
                values[alias] = try AttributeValue(json: value)
            }
        }
        return ExpressionContext(names: names, values: values)
    }
}
