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
    public static func condition(_ text: String, kind: String = "ConditionExpression", context: ExpressionContext) throws(DynamoError) -> Condition {
        var parser = try ExpressionParser(text, kind: kind, context: context)
        let condition = try parser.parseOr(depth: 0)
        try parser.expectEnd()
        return condition
    }

    /// An UpdateExpression: its actions in order, checked for overlapping paths.
    public static func update(_ text: String, context: ExpressionContext) throws(DynamoError) -> [UpdateAction] {
        var parser = try ExpressionParser(text, kind: "UpdateExpression", context: context)
        let actions = try parser.parseUpdate()
        for (index, action) in actions.enumerated() {
            for other in actions[(index + 1)...] where action.path.overlaps(other.path) {
                throw .invalidExpression("UpdateExpression", "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: \(action.path), path two: \(other.path)")
            }
        }
        return actions
    }

    /// A ProjectionExpression: the paths to return.
    public static func projection(_ text: String, context: ExpressionContext) throws(DynamoError) -> [DocumentPath] {
        var parser = try ExpressionParser(text, kind: "ProjectionExpression", context: context)
        var paths = [try parser.parsePath()]
        while parser.take(symbol: ",") { paths.append(try parser.parsePath()) }
        try parser.expectEnd()
        for (index, path) in paths.enumerated() {
            for other in paths[(index + 1)...] where path.overlaps(other) {
                throw .invalidExpression("ProjectionExpression", "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: \(path), path two: \(other)")
            }
        }
        return paths
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
        let after = position + 1 < tokens.count && tokens[position + 1] != .end ? " " + tokens[position + 1].description : ""
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
            guard depth + 1 < Self.nestingMax else { throw .invalidExpression(kind, "The expression is nested too deeply") }
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
            return try parseFunction(function)
        }
        let left = try parseOperand()
        if case .symbol(let symbol) = current, let comparator = Comparator(rawValue: symbol) {
            advance()
            let right = try parseOperand()
            try checkComparable(comparator.rawValue, [left, right], ordered: comparator != .equal && comparator != .notEqual)
            return .compare(left, comparator, right)
        }
        if take(keyword: "BETWEEN") {
            let lower = try parseOperand()
            guard take(keyword: "AND") else { throw syntaxError() }
            let upper = try parseOperand()
            try checkComparable("BETWEEN", [left, lower, upper], ordered: true)
            if case .value(let low) = lower, case .value(let high) = upper,
               let order = AttributeValue.compare(low, high), order > 0 {
                throw .invalidExpression(kind, "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {\(low.typeName):\(low.shortDescription)}, upper bound operand: AttributeValue: {\(high.typeName):\(high.shortDescription)}")
            }
            return .between(left, lower, upper)
        }
        if take(keyword: "IN") {
            try expect(symbol: "(")
            var options = [try parseOperand()]
            while take(symbol: ",") {
                options.append(try parseOperand())
                guard options.count <= Self.inListMax else {
                    throw .invalidExpression(kind, "The IN operator is provided with too many operands; number of operands: \(options.count)")
                }
            }
            try expect(symbol: ")")
            return .isIn(left, options)
        }
        throw syntaxError()
    }

    private mutating func parseFunction(_ name: String) throws(DynamoError) -> Condition {
        advance()  // the name
        advance()  // (
        let condition: Condition
        switch name {
        case "attribute_exists":
            condition = .exists(try parsePath())
        case "attribute_not_exists":
            condition = .notExists(try parsePath())
        case "attribute_type":
            let path = try parsePath()
            try expect(symbol: ",")
            let type = try parseOperand()
            if case .value(let value) = type {
                guard case .s(let typeName) = value else {
                    throw .invalidExpression(kind, "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: \(value.typeName)")
                }
                let valid = ["B", "NULL", "SS", "BOOL", "L", "BS", "N", "NS", "S", "M"]
                guard valid.contains(typeName) else {
                    throw .invalidExpression(kind, "Invalid attribute type name found; type: \(typeName), valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}")
                }
            }
            condition = .hasType(path, type)
        case "begins_with":
            let subject = try parseOperand()
            try expect(symbol: ",")
            let prefix = try parseOperand()
            for operand in [subject, prefix] {
                if case .value(let value) = operand, value.typeName != "S" && value.typeName != "B" {
                    throw .invalidExpression(kind, "Incorrect operand type for operator or function; operator or function: begins_with, operand type: \(value.typeName)")
                }
            }
            condition = .beginsWith(subject, prefix)
        case "contains":
            let subject = try parseOperand()
            try expect(symbol: ",")
            condition = .contains(subject, try parseOperand())
        default:
            throw .invalidExpression(kind, "Invalid function name; function: \(name)")
        }
        try expect(symbol: ")")
        return condition
    }

    /// Constant operands of an ordered comparison must be S, N or B; DynamoDB refuses others
    /// when it parses, not when it evaluates.
    private func checkComparable(_ name: String, _ operands: [Operand], ordered: Bool) throws(DynamoError) {
        guard ordered else { return }
        for operand in operands {
            if case .value(let value) = operand, !["S", "N", "B"].contains(value.typeName) {
                throw .invalidExpression(kind, "Incorrect operand type for operator or function; operator or function: \(name), operand type: \(value.typeName)")
            }
        }
    }

    private mutating func parseOperand() throws(DynamoError) -> Operand {
        switch current {
        case .valueAlias(let alias):
            advance()
            return .value(try context.value(alias))
        case .name("size") where next == .symbol("("):
            advance(); advance()
            let path = try parsePath()
            try expect(symbol: ")")
            return .size(path)
        case .name(let name) where next == .symbol("("):
            throw .invalidExpression(kind, "The function is not allowed to be used this way in an expression; function: \(name)")
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
            guard elements.count <= ItemLimits.nestingDepthMax + 1 else {
                throw .invalidExpression(kind, "The document path has too many nesting levels; nesting levels: \(elements.count)")
            }
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
                throw .invalidExpression("UpdateExpression", "The \"\(clause)\" section can only be used once in an update expression;")
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
                    throw .invalidExpression("UpdateExpression", "Incorrect operand type for operator or function; operator: ADD, operand type: \(value.operandTypeName)")
                }
                return .add(path, value)
            }
            guard ["SS", "NS", "BS"].contains(value.typeName) else {
                throw .invalidExpression("UpdateExpression", "Incorrect operand type for operator or function; operator: DELETE, operand type: \(value.operandTypeName)")
            }
            return .delete(path, value)
        }
    }

    private mutating func parseSetValue(depth: Int) throws(DynamoError) -> Operand {
        let left = try parseSetOperand(depth: depth)
        if take(symbol: "+") { return .plus(left, try parseSetOperand(depth: depth)) }
        if take(symbol: "-") { return .minus(left, try parseSetOperand(depth: depth)) }
        return left
    }

    private mutating func parseSetOperand(depth: Int) throws(DynamoError) -> Operand {
        guard depth < Self.nestingMax else { throw .invalidExpression(kind, "The expression is nested too deeply") }
        if case .name(let function) = current, next == .symbol("(") {
            advance(); advance()
            let operand: Operand
            switch function {
            case "if_not_exists":
                let path = try parsePath()
                try expect(symbol: ",")
                operand = .ifNotExists(path, try parseSetOperand(depth: depth + 1))
            case "list_append":
                let first = try parseSetOperand(depth: depth + 1)
                try expect(symbol: ",")
                operand = .listAppend(first, try parseSetOperand(depth: depth + 1))
            default:
                if ["attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains", "size"].contains(function) {
                    throw .invalidExpression(kind, "The function is not allowed in an update expression; function: \(function)")
                }
                throw .invalidExpression(kind, "Invalid function name; function: \(function)")
            }
            try expect(symbol: ")")
            return operand
        }
        if case .valueAlias(let alias) = current {
            advance()
            return .value(try context.value(alias))
        }
        return .path(try parsePath())
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
