/// The parsed forms of DynamoDB's expressions, with every #name and :value already
/// replaced by what it stands for.

/// One step of a document path: `a`, `.b` or `[3]`.
public enum PathElement: Hashable, Sendable, Codable {
    case attribute(String)
    case index(Int)
}

/// A document path such as `a.b[3].c`.
public struct DocumentPath: Hashable, Sendable, Codable, CustomStringConvertible {
    public var elements: [PathElement]

    public init(_ elements: [PathElement]) {
        precondition(!elements.isEmpty)
        if case .index = elements[0] { preconditionFailure("a path starts with an attribute name") }
        self.elements = elements
    }

    public static func attribute(_ name: String) -> DocumentPath { DocumentPath([.attribute(name)]) }

    /// The top-level attribute the path starts from.
    public var attributeName: String {
        guard case .attribute(let name) = elements[0] else { preconditionFailure() }
        return name
    }

    /// As DynamoDB prints paths in messages: `[a, b, [3]]`.
    public var description: String {
        "["
            + elements.map { element in
                switch element {
                case .attribute(let name): name
                case .index(let index): "[\(index)]"
                }
            }.joined(separator: ", ") + "]"
    }

    public enum Relation { case distinct, overlap, conflict }

    /// How two paths of one expression relate: one is a prefix of the other (`a` and
    /// `a.b`: they overlap), they part at a step that is a name in one and an index in the
    /// other (`a.b` and `a[0]`: they conflict), or they part at two names or two indexes.
    public func relation(to other: DocumentPath) -> Relation {
        for (mine, theirs) in zip(elements, other.elements) where mine != theirs {
            switch (mine, theirs) {
            case (.attribute, .attribute), (.index, .index): return .distinct
            default: return .conflict
            }
        }
        return .overlap
    }
}

public enum Comparator: String, Sendable, Codable {
    case equal = "=", notEqual = "<>", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
}

/// A value inside an expression.
public indirect enum Operand: Sendable, Codable {
    case path(DocumentPath)
    case value(AttributeValue)
    case size(DocumentPath)
    // Update expressions only (SET's right-hand side):
    case ifNotExists(DocumentPath, Operand)
    case listAppend(Operand, Operand)
    case plus(Operand, Operand)
    case minus(Operand, Operand)
}

/// A condition, filter or key condition expression.
public indirect enum Condition: Sendable, Codable {
    case compare(Operand, Comparator, Operand)
    case between(Operand, Operand, Operand)
    case isIn(Operand, [Operand])
    case and(Condition, Condition)
    case or(Condition, Condition)
    case not(Condition)
    case exists(DocumentPath)
    case notExists(DocumentPath)
    case hasType(DocumentPath, Operand)
    case beginsWith(Operand, Operand)
    case contains(Operand, Operand)
}

/// One action of an update expression, in the order written.
public enum UpdateAction: Sendable, Codable {
    case set(DocumentPath, Operand)
    case remove(DocumentPath)
    case add(DocumentPath, AttributeValue)
    case delete(DocumentPath, AttributeValue)

    public var path: DocumentPath {
        switch self {
        case .set(let path, _), .remove(let path), .add(let path, _), .delete(let path, _): path
        }
    }
}

/// The ExpressionAttributeNames and ExpressionAttributeValues of one request, shared by its
/// expressions, and which of them the expressions used: DynamoDB refuses a request that
/// defines a name or value no expression uses.
public final class ExpressionContext {
    let names: [String: String]
    let values: [String: AttributeValue]
    var usedNames: Set<String> = []
    var usedValues: Set<String> = []

    public init(names: [String: String], values: [String: AttributeValue]) {
        self.names = names
        self.values = values
    }

    func name(_ alias: String) throws(DynamoError) -> String {
        guard let name = names[alias] else {
            throw .validation(
                "An expression attribute name used in the document path is not defined; attribute name: \(alias)")
        }
        usedNames.insert(alias)
        return name
    }

    func value(_ alias: String) throws(DynamoError) -> AttributeValue {
        guard let value = values[alias] else {
            throw .validation(
                "An expression attribute value used in expression is not defined; attribute value: \(alias)")
        }
        usedValues.insert(alias)
        return value
    }

    /// Throws when a defined name or value was used by no expression.
    public func checkAllUsed() throws(DynamoError) {
        let unusedNames = Set(names.keys).subtracting(usedNames)
        if !unusedNames.isEmpty {
            throw .validation(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {\(unusedNames.sorted().joined(separator: ", "))}"
            )
        }
        let unusedValues = Set(values.keys).subtracting(usedValues)
        if !unusedValues.isEmpty {
            throw .validation(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {\(unusedValues.sorted().joined(separator: ", "))}"
            )
        }
    }
}

// MARK: Decoding checks what the initializers check

// Expressions travel as Codable values inside partition commands (to another core, and
// later another node), and a decoder is fed bytes that may be anything: a path must
// still start with a name and index no list below zero, or evaluating it would trap.

extension PathElement {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let index = try? container.decode(Int.self) {
            guard index >= 0 else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "a negative list index")
            }
            self = .index(index)
        } else {
            self = .attribute(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .attribute(let name): try container.encode(name)
        case .index(let index): try container.encode(index)
        }
    }
}

extension DocumentPath {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let elements = try container.decode([PathElement].self)
        guard case .attribute? = elements.first else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "a path starts with a name")
        }
        self.init(elements)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(elements)
    }
}
