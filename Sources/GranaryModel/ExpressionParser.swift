/// A recursive-descent parser for DynamoDB's expressions. Recursion is bounded: nesting
/// deeper than `nestingMax` (parentheses, NOT, functions) is refused, as is an expression
/// longer than 4 KB, so no request can exhaust the stack.
public struct ExpressionParser {
    static let nestingMax = 64
    static let inListMax = 100

    private let kind: String
    private let text: String
    private let tokens: [Token]
    private var position = 0
    private let context: ExpressionContext

    private init(_ text: String, kind: String, context: ExpressionContext) throws(DynamoError) {
        guard !text.isEmpty else { throw .invalidExpression(kind, "The expression can not be empty;") }
        self.kind = kind
        self.text = text
        self.tokens = try ExpressionLexer.tokens(text, kind: kind)
        self.context = context
    }

    // MARK: Entry points

    /// A ConditionExpression, FilterExpression or KeyConditionExpression.
    public static func condition(
        _ text: String, kind: String = "ConditionExpression", context: ExpressionContext
    ) throws(DynamoError) -> Condition {
        var parser = try ExpressionParser(text, kind: kind, context: context)
        let condition = try parser.parseOr(depth: 0)
        try parser.expectEnd()
        return condition
    }

    /// An UpdateExpression: its actions in order, checked for overlapping paths.
    public static func update(_ text: String, context: ExpressionContext) throws(DynamoError) -> [UpdateAction] {
        var parser = try ExpressionParser(text, kind: "UpdateExpression", context: context)
        let actions = try parser.parseUpdate()
        try checkDistinctPaths(actions.map(\.path), kind: "UpdateExpression")
        return actions
    }

    /// A ProjectionExpression: the paths to return.
    public static func projection(_ text: String, context: ExpressionContext) throws(DynamoError) -> [DocumentPath] {
        var parser = try ExpressionParser(text, kind: "ProjectionExpression", context: context)
        var paths = [try parser.parsePath()]
        while parser.take(symbol: ",") { paths.append(try parser.parsePath()) }
        try parser.expectEnd()
        try checkDistinctPaths(paths, kind: "ProjectionExpression")
        return paths
    }

    /// No path may be a prefix of another (they overlap), nor may two paths go on from a
    /// shared prefix one by a name and the other by an index (they conflict).
    private static func checkDistinctPaths(_ paths: [DocumentPath], kind: String) throws(DynamoError) {
        for (index, path) in paths.enumerated() {
            for other in paths[(index + 1)...] {
                switch path.relation(to: other) {
                case .overlap:
                    throw .invalidExpression(
                        kind,
                        "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: \(path), path two: \(other)"
                    )
                case .conflict:
                    throw .invalidExpression(
                        kind,
                        "Two document paths conflict with each other; must remove or rewrite one of these paths; path one: \(path), path two: \(other)"
                    )
                case .distinct:
                    continue
                }
            }
        }
    }

    // MARK: Tokens

    private var current: Token { tokens[position] }
    private var next: Token { position + 1 < tokens.count ? tokens[position + 1] : .end }

    private mutating func advance() { if position < tokens.count - 1 { position += 1 } }

    private mutating func take(symbol: String) -> Bool {
        if current == .symbol(symbol) { advance(); return true }
        return false
    }

    private mutating func take(keyword: String) -> Bool {
        if current.isKeyword(keyword) { advance(); return true }
        return false
    }

    private mutating func expect(symbol: String) throws(DynamoError) {
        guard take(symbol: symbol) else { throw syntaxError() }
    }

    private func expectEnd() throws(DynamoError) {
        guard current == .end else { throw syntaxError() }
    }

    private func syntaxError() -> DynamoError {
        let before = position > 0 ? tokens[position - 1].description + " " : ""
        let after =
            position + 1 < tokens.count && tokens[position + 1] != .end ? " " + tokens[position + 1].description : ""
        return .invalidExpression(kind, "Syntax error; token: \"\(current)\", near: \"\(before)\(current)\(after)\"")
    }

    // MARK: Conditions

    private mutating func parseOr(depth: Int) throws(DynamoError) -> Condition {
        guard depth < Self.nestingMax else { throw .invalidExpression(kind, "The expression is nested too deeply") }
        var condition = try parseAnd(depth: depth)
        while take(keyword: "OR") { condition = .or(condition, try parseAnd(depth: depth)) }
        return condition
    }

    private mutating func parseAnd(depth: Int) throws(DynamoError) -> Condition {
        var condition = try parseNot(depth: depth)
        while take(keyword: "AND") { condition = .and(condition, try parseNot(depth: depth)) }
        return condition
    }

    private mutating func parseNot(depth: Int) throws(DynamoError) -> Condition {
        if take(keyword: "NOT") {
            guard depth + 1 < Self.nestingMax else {
                throw .invalidExpression(kind, "The expression is nested too deeply")
            }
            return .not(try parseNot(depth: depth + 1))
        }
        return try parsePrimary(depth: depth)
    }

    private mutating func parsePrimary(depth: Int) throws(DynamoError) -> Condition {
        if take(symbol: "(") {
            let condition = try parseOr(depth: depth + 1)
            try expect(symbol: ")")
            return condition
        }
        if case .name(let function) = current, next == .symbol("("), function != "size" {
            return try parseFunction(function, depth: depth)
        }
        let left = try parseOperand(depth: depth)
        if case .symbol(let symbol) = current, let comparator = Comparator(rawValue: symbol) {
            advance()
            let right = try parseOperand(depth: depth)
            try checkComparable(
                comparator.rawValue, [left, right], ordered: comparator != .equal && comparator != .notEqual)
            try checkDistinct(comparator.rawValue, left, right)
            return .compare(left, comparator, right)
        }
        if take(keyword: "BETWEEN") {
            let lower = try parseOperand(depth: depth)
            guard take(keyword: "AND") else { throw syntaxError() }
            let upper = try parseOperand(depth: depth)
            try checkComparable("BETWEEN", [left, lower, upper], ordered: true)
            if case .value(let low) = lower, case .value(let high) = upper {
                let bounds =
                    "lower bound operand: AttributeValue: {\(low.typeName):\(low.shortDescription)}, upper bound operand: AttributeValue: {\(high.typeName):\(high.shortDescription)}"
                guard low.typeName == high.typeName else {
                    throw .invalidExpression(
                        kind, "The BETWEEN operator requires same data type for lower and upper bounds; \(bounds)")
                }
                if let order = AttributeValue.compare(low, high), order > 0 {
                    throw .invalidExpression(
                        kind,
                        "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; \(bounds)"
                    )
                }
            }
            return .between(left, lower, upper)
        }
        if take(keyword: "IN") {
            try expect(symbol: "(")
            var options = [try parseOperand(depth: depth)]
            while take(symbol: ",") {
                options.append(try parseOperand(depth: depth))
                guard options.count <= Self.inListMax else {
                    throw .invalidExpression(
                        kind, "The IN operator is provided with too many operands; number of operands: \(options.count)"
                    )
                }
            }
            try expect(symbol: ")")
            return .isIn(left, options)
        }
        if case .size = left {
            throw .invalidExpression(
                kind, "The function is not allowed to be used this way in an expression; function: size")
        }
        throw syntaxError()
    }

    /// The functions a condition may call, with their operand counts.
    private static let conditionFunctions = [
        "attribute_exists": 1, "attribute_not_exists": 1, "attribute_type": 2, "begins_with": 2, "contains": 2,
        "size": 1,
    ]
    /// The functions an update expression's SET may call, with their operand counts.
    private static let updateFunctions = ["if_not_exists": 2, "list_append": 2]

    /// The error for calling `name` where a condition expects a function, or nil when it is
    /// one of the condition functions.
    private func unknownConditionFunction(_ name: String) -> DynamoError? {
        if Self.conditionFunctions[name] != nil { return nil }
        if Self.updateFunctions[name] != nil {
            return .invalidExpression(kind, "The function is not allowed in a condition expression; function: \(name)")
        }
        return .invalidExpression(kind, "Invalid function name; function: \(name)")
    }

    /// `name(` and its operands up to `)`, checked against the operand count `name` takes.
    private mutating func parseArguments<T>(
        _ name: String, count: Int, _ parseOne: (inout ExpressionParser) throws(DynamoError) -> T
    ) throws(DynamoError) -> [T] {
        advance()  // the name
        advance()  // (
        var arguments = [try parseOne(&self)]
        while take(symbol: ",") {
            arguments.append(try parseOne(&self))
            guard arguments.count <= Self.inListMax else { break }
        }
        try expect(symbol: ")")
        guard arguments.count == count else {
            throw .invalidExpression(
                kind,
                "Incorrect number of operands for operator or function; operator or function: \(name), number of operands: \(arguments.count)"
            )
        }
        return arguments
    }

    private mutating func parseFunction(_ name: String, depth: Int) throws(DynamoError) -> Condition {
        if let error = unknownConditionFunction(name) { throw error }
        guard depth < Self.nestingMax else { throw .invalidExpression(kind, "The expression is nested too deeply") }
        let arguments = try parseArguments(name, count: Self.conditionFunctions[name]!) {
            (parser) throws(DynamoError) in
            try parser.parseOperand(depth: depth + 1)
        }
        func path(_ operand: Operand) throws(DynamoError) -> DocumentPath {
            guard case .path(let path) = operand else {
                throw .invalidExpression(
                    kind, "Operator or function requires a document path; operator or function: \(name)")
            }
            return path
        }
        switch name {
        case "attribute_exists":
            return .exists(try path(arguments[0]))
        case "attribute_not_exists":
            return .notExists(try path(arguments[0]))
        case "attribute_type":
            let subject = try path(arguments[0])
            if let type = arguments[1].constantTypeName {
                guard case .value(.s(let typeName)) = arguments[1] else {
                    throw .invalidExpression(
                        kind,
                        "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: \(type)"
                    )
                }
                let valid = ["B", "NULL", "SS", "BOOL", "L", "BS", "N", "NS", "S", "M"]
                guard valid.contains(typeName) else {
                    throw .invalidExpression(
                        kind,
                        "Invalid attribute type name found; type: \(typeName), valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}"
                    )
                }
            }
            return .hasType(subject, arguments[1])
        case "begins_with":
            for operand in arguments {
                if let type = operand.constantTypeName, type != "S" && type != "B" {
                    throw .invalidExpression(
                        kind,
                        "Incorrect operand type for operator or function; operator or function: begins_with, operand type: \(type)"
                    )
                }
            }
            try checkDistinct(name, arguments[0], arguments[1])
            return .beginsWith(arguments[0], arguments[1])
        case "contains":
            try checkDistinct(name, arguments[0], arguments[1])
            return .contains(arguments[0], arguments[1])
        default:
            // size: a value, not a condition.
            throw .invalidExpression(
                kind, "The function is not allowed to be used this way in an expression; function: \(name)")
        }
    }

    /// A two-operand operator or function may not compare a path with itself.
    private func checkDistinct(_ name: String, _ first: Operand, _ second: Operand) throws(DynamoError) {
        if case .path(let one) = first, case .path(let two) = second, one == two {
            throw .invalidExpression(
                kind,
                "The first operand must be distinct from the remaining operands for this operator or function; operator: \(name), first operand: \(one)"
            )
        }
    }

    /// Constant operands of an ordered comparison must be S, N or B; DynamoDB refuses others
    /// when it parses, not when it evaluates.
    private func checkComparable(_ name: String, _ operands: [Operand], ordered: Bool) throws(DynamoError) {
        guard ordered else { return }
        for operand in operands {
            if case .value(let value) = operand, !["S", "N", "B"].contains(value.typeName) {
                throw .invalidExpression(
                    kind,
                    "Incorrect operand type for operator or function; operator or function: \(name), operand type: \(value.typeName)"
                )
            }
        }
    }

    private mutating func parseOperand(depth: Int) throws(DynamoError) -> Operand {
        switch current {
        case .valueAlias(let alias):
            advance()
            return .value(try context.value(alias))
        case .name("size") where next == .symbol("("):
            guard depth < Self.nestingMax else { throw .invalidExpression(kind, "The expression is nested too deeply") }
            let argument = try parseArguments("size", count: 1) { (parser) throws(DynamoError) in
                try parser.parseOperand(depth: depth + 1)
            }[0]
            if let type = argument.constantTypeName, ["N", "BOOL", "NULL"].contains(type) {
                throw .invalidExpression(
                    kind,
                    "Incorrect operand type for operator or function; operator or function: size, operand type: \(type)"
                )
            }
            switch argument {
            case .path(let path): return .size(path)
            case .value(let value): return .value(.n(Number(value.size!)))  // the size of a constant is one
            default: preconditionFailure("size's operand is a path or a value of a type with a size")
            }
        case .name(let name) where next == .symbol("("):
            if let error = unknownConditionFunction(name) { throw error }
            throw .invalidExpression(
                kind, "The function is not allowed to be used this way in an expression; function: \(name)")
        default:
            return .path(try parsePath())
        }
    }

    // MARK: Paths

    private mutating func parsePath() throws(DynamoError) -> DocumentPath {
        var elements = [PathElement.attribute(try parseName())]
        while true {
            if take(symbol: ".") {
                elements.append(.attribute(try parseName()))
            } else if take(symbol: "[") {
                guard case .index(let index) = current else { throw syntaxError() }
                advance()
                try expect(symbol: "]")
                elements.append(.index(index))
            } else {
                break
            }
        }
        guard elements.count <= ItemLimits.nestingDepthMax else {
            throw .invalidExpression(
                kind, "The document path has too many nesting levels; nesting levels: \(elements.count)")
        }
        return DocumentPath(elements)
    }

    private mutating func parseName() throws(DynamoError) -> String {
        switch current {
        case .name(let name):
            guard !ReservedWords.contains(name) else {
                throw .invalidExpression(kind, "Attribute name is a reserved keyword; reserved keyword: \(name)")
            }
            guard let first = name.utf8.first, !(0x30...0x39).contains(first) else { throw syntaxError() }
            advance()
            return name
        case .nameAlias(let alias):
            advance()
            return try context.name(alias)
        default:
            throw syntaxError()
        }
    }

    // MARK: Updates

    private mutating func parseUpdate() throws(DynamoError) -> [UpdateAction] {
        var actions: [UpdateAction] = []
        var seen: Set<String> = []
        while current != .end {
            guard case .name(let word) = current else { throw syntaxError() }
            let clause = word.uppercased()
            guard ["SET", "REMOVE", "ADD", "DELETE"].contains(clause) else { throw syntaxError() }
            guard seen.insert(clause).inserted else {
                throw .invalidExpression(
                    "UpdateExpression", "The \"\(clause)\" section can only be used once in an update expression;")
            }
            advance()
            repeat {
                actions.append(try parseAction(clause))
            } while take(symbol: ",")
        }
        return actions
    }

    private mutating func parseAction(_ clause: String) throws(DynamoError) -> UpdateAction {
        let path = try parsePath()
        switch clause {
        case "SET":
            try expect(symbol: "=")
            return .set(path, try parseSetValue(depth: 0))
        case "REMOVE":
            return .remove(path)
        default:
            guard case .valueAlias(let alias) = current else { throw syntaxError() }
            advance()
            let value = try context.value(alias)
            if clause == "ADD" {
                guard ["N", "SS", "NS", "BS"].contains(value.typeName) else {
                    throw .invalidExpression(
                        "UpdateExpression",
                        "Incorrect operand type for operator or function; operator: ADD, operand type: \(value.operandTypeName)"
                    )
                }
                return .add(path, value)
            }
            guard ["SS", "NS", "BS"].contains(value.typeName) else {
                throw .invalidExpression(
                    "UpdateExpression",
                    "Incorrect operand type for operator or function; operator: DELETE, operand type: \(value.operandTypeName)"
                )
            }
            return .delete(path, value)
        }
    }

    private mutating func parseSetValue(depth: Int) throws(DynamoError) -> Operand {
        let left = try parseSetOperand(depth: depth)
        for (symbol, combine) in [("+", Operand.plus), ("-", Operand.minus)] where take(symbol: symbol) {
            let right = try parseSetOperand(depth: depth)
            for operand in [left, right] {
                if let type = operand.constantTypeName, type != "N" {
                    throw .invalidExpression(
                        kind,
                        "Incorrect operand type for operator or function; operator or function: \(symbol), operand type: \(type)"
                    )
                }
            }
            return combine(left, right)
        }
        return left
    }

    private mutating func parseSetOperand(depth: Int) throws(DynamoError) -> Operand {
        guard depth < Self.nestingMax else { throw .invalidExpression(kind, "The expression is nested too deeply") }
        if case .name(let function) = current, next == .symbol("(") {
            guard let count = Self.updateFunctions[function] else {
                if Self.conditionFunctions[function] != nil {
                    throw .invalidExpression(
                        kind, "The function is not allowed in an update expression; function: \(function)")
                }
                throw .invalidExpression(kind, "Invalid function name; function: \(function)")
            }
            let arguments = try parseArguments(function, count: count) { (parser) throws(DynamoError) in
                try parser.parseSetOperand(depth: depth + 1)
            }
            if function == "if_not_exists" {
                guard case .path(let path) = arguments[0] else {
                    throw .invalidExpression(
                        kind, "Operator or function requires a document path; operator or function: if_not_exists")
                }
                return .ifNotExists(path, arguments[1])
            }
            for operand in arguments {
                if let type = operand.constantTypeName, type != "L" {
                    throw .invalidExpression(
                        kind,
                        "Incorrect operand type for operator or function; operator or function: list_append, operand type: \(type)"
                    )
                }
            }
            return .listAppend(arguments[0], arguments[1])
        }
        if case .valueAlias(let alias) = current {
            advance()
            return .value(try context.value(alias))
        }
        return .path(try parsePath())
    }
}

extension Operand {
    /// The type an operand has whatever the item holds (a value's, or what a function
    /// returns), or nil when it depends on the item.
    var constantTypeName: String? {
        switch self {
        case .value(let value): value.typeName
        case .size, .plus, .minus: "N"
        case .listAppend: "L"
        case .ifNotExists(_, let fallback): fallback.constantTypeName
        case .path: nil
        }
    }
}

extension AttributeValue {
    /// How DynamoDB names a type in "operand type" messages.
    var operandTypeName: String {
        switch self {
        case .s: "STRING"
        case .n: "NUMBER"
        case .b: "BINARY"
        case .bool: "BOOLEAN"
        case .null: "NULL"
        case .m: "MAP"
        case .l: "LIST"
        case .ss: "STRING_SET"
        case .ns: "NUMBER_SET"
        case .bs: "BINARY_SET"
        }
    }

    var shortDescription: String {
        switch self {
        case .s(let text): text
        case .n(let number): number.description
        case .b(let bytes): Base64.encode(bytes)
        default: typeName
        }
    }
}
