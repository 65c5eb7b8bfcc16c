/// One DynamoDB attribute value, of one of the ten types.
public indirect enum AttributeValue: Sendable, Hashable, Codable {
    case s(String)
    case n(Number)
    case b([UInt8])
    case bool(Bool)
    case null
    case m([String: AttributeValue])
    case l([AttributeValue])
    case ss([String])
    case ns([Number])
    case bs([[UInt8]])

    /// The type's name in the protocol and in `attribute_type`.
    public var typeName: String {
        switch self {
        case .s: "S"
        case .n: "N"
        case .b: "B"
        case .bool: "BOOL"
        case .null: "NULL"
        case .m: "M"
        case .l: "L"
        case .ss: "SS"
        case .ns: "NS"
        case .bs: "BS"
        }
    }

    /// DynamoDB's size of the value in bytes, as it counts item size: strings and binaries by
    /// length, numbers by digits, 1 byte for BOOL and NULL, 3 bytes plus 1 per element for
    /// lists and maps.
    public var sizeBytes: Int {
        switch self {
        case .s(let text): text.utf8.count
        case .n(let number): number.sizeBytes
        case .b(let bytes): bytes.count
        case .bool, .null: 1
        case .m(let members): members.reduce(3) { $0 + 1 + $1.key.utf8.count + $1.value.sizeBytes }
        case .l(let elements): elements.reduce(3) { $0 + 1 + $1.sizeBytes }
        case .ss(let texts): texts.reduce(0) { $0 + $1.utf8.count }
        case .ns(let numbers): numbers.reduce(0) { $0 + $1.sizeBytes }
        case .bs(let blobs): blobs.reduce(0) { $0 + $1.count }
        }
    }
}

/// An item: attribute names to values.
public typealias Item = [String: AttributeValue]

public enum ItemLimits {
    /// DynamoDB's item size bound: 400 KB, counted as `Item.sizeBytes` counts.
    public static let itemBytesMax = 400 * 1024
    public static let partitionKeyBytesMax = 2048
    public static let sortKeyBytesMax = 1024
    /// Levels of nested maps and lists an attribute value may have.
    public static let nestingDepthMax = 32
    /// An attribute name, anywhere a request names one (items, expressions' names, the
    /// legacy parameters): DynamoDB accepts 65,535 bytes and refuses 65,536.
    public static let attributeNameBytesMax = 65535
    /// A key attribute's name (CreateTable's KeySchema and AttributeDefinitions).
    public static let keyAttributeNameBytesMax = 255

    /// An item within DynamoDB's 400 KB.
    public static func checkItemSize(_ item: Item) throws(DynamoError) {
        guard item.sizeBytes <= itemBytesMax else {
            throw .validation("Item size has exceeded the maximum allowed size")
        }
    }

    /// An attribute name within `attributeNameBytesMax`, not empty.
    public static func checkAttributeName(_ name: String) throws(DynamoError) {
        if name.isEmpty {
            throw .validation("One or more parameter values were invalid: An attribute name cannot be empty")
        }
        guard name.utf8.count <= attributeNameBytesMax else {
            throw .validation(
                "One or more parameter values were invalid: Attribute name is too large, must be less than 65536 bytes")
        }
    }
}

extension Dictionary where Key == String, Value == AttributeValue {
    /// DynamoDB's size of the item: each attribute's name and value.
    public var sizeBytes: Int { reduce(0) { $0 + $1.key.utf8.count + $1.value.sizeBytes } }
}

// MARK: The protocol's JSON form

extension AttributeValue {
    /// Reads `{"S": "..."}` and the like, checking what DynamoDB checks of any value:
    /// exactly one type, NULL only true, sets non-empty and without duplicates, numbers
    /// valid, nesting bounded.
    public init(json: JSON, depth: Int = 0) throws(DynamoError) {
        guard case .object(let members) = json else {
            throw .serialization("Start of structure or map expected for an AttributeValue, found \(json.typeName)")
        }
        guard members.count == 1, let (type, value) = members.first else {
            if members.isEmpty {
                throw .validation(
                    "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")
            }
            throw .validation(
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"
            )
        }
        guard depth < ItemLimits.nestingDepthMax || (type != "M" && type != "L") else {
            throw .validation("Nesting Levels have exceeded supported limits")
        }
        switch type {
        case "S": self = .s(try Self.string(value, type))
        case "N": self = .n(try Number(parsing: try Self.string(value, type)))
        case "B": self = .b(try Self.binary(value))
        case "BOOL":
            guard case .bool(let flag) = value else {
                throw .serialization("BOOL must be a boolean, found \(value.typeName)")
            }
            self = .bool(flag)
        case "NULL":
            guard case .bool(let flag) = value else {
                throw .serialization("NULL must be a boolean, found \(value.typeName)")
            }
            guard flag else {
                throw .validation(
                    "One or more parameter values were invalid: Null attribute value types must have the value of true")
            }
            self = .null
        case "M":
            guard case .object(let fields) = value else {
                throw .serialization("M must be a structure, found \(value.typeName)")
            }
            var map: [String: AttributeValue] = [:]
            map.reserveCapacity(fields.count)
            for (name, field) in fields { map[name] = try AttributeValue(json: field, depth: depth + 1) }
            self = .m(map)
        case "L":
            guard case .array(let elements) = value else {
                throw .serialization("L must be a list, found \(value.typeName)")
            }
            var list: [AttributeValue] = []
            list.reserveCapacity(elements.count)
            for element in elements { list.append(try AttributeValue(json: element, depth: depth + 1)) }
            self = .l(list)
        case "SS":
            let texts = try Self.list(value, type).map { (element) throws(DynamoError) in try Self.string(element, type)
            }
            try Self.checkSet(texts, name: "string")
            self = .ss(texts)
        case "NS":
            let numbers = try Self.list(value, type).map { (element) throws(DynamoError) in
                try Number(parsing: try Self.string(element, type))
            }
            try Self.checkSet(numbers, name: "number", shown: numbers.map(\.description))
            self = .ns(numbers)
        case "BS":
            let blobs = try Self.list(value, type).map { (element) throws(DynamoError) in try Self.binary(element) }
            try Self.checkSet(blobs, name: "binary", shown: blobs.map { Base64.encode($0) })
            self = .bs(blobs)
        default:
            throw .serialization("Unknown AttributeValue type \(type)")
        }
    }

    private static func string(_ value: JSON, _ type: String) throws(DynamoError) -> String {
        guard case .string(let text) = value else {
            throw .serialization("\(type) must be a string, found \(value.typeName)")
        }
        return text
    }

    private static func list(_ value: JSON, _ type: String) throws(DynamoError) -> [JSON] {
        guard case .array(let elements) = value else {
            throw .serialization("\(type) must be a list, found \(value.typeName)")
        }
        return elements
    }

    private static func binary(_ value: JSON) throws(DynamoError) -> [UInt8] {
        guard case .string(let text) = value else {
            throw .serialization("B must be a base64 string, found \(value.typeName)")
        }
        guard let bytes = Base64.decode(text) else {
            throw .serialization(
                "Base64 encoded length is expected a multiple of 4 bytes but found: \(text.utf8.count)")
        }
        return bytes
    }

    private static func checkSet<T: Hashable>(_ elements: [T], name: String, shown: [String]? = nil) throws(DynamoError)
    {
        guard !elements.isEmpty else {
            throw .validation("One or more parameter values were invalid: An \(name) set  may not be empty")
        }
        guard Set(elements).count == elements.count else {
            let listed = shown ?? elements.map { "\($0)" }
            throw .validation(
                "One or more parameter values were invalid: Input collection [\(listed.joined(separator: ", "))] contains duplicates."
            )
        }
    }

    /// The value in the protocol's JSON form.
    public var json: JSON {
        switch self {
        case .s(let text): .object(["S": .string(text)])
        case .n(let number): .object(["N": .string(number.description)])
        case .b(let bytes): .object(["B": .string(Base64.encode(bytes))])
        case .bool(let flag): .object(["BOOL": .bool(flag)])
        case .null: .object(["NULL": .bool(true)])
        case .m(let members): .object(["M": .object(members.mapValues(\.json))])
        case .l(let elements): .object(["L": .array(elements.map(\.json))])
        case .ss(let texts): .object(["SS": .array(texts.map { .string($0) })])
        case .ns(let numbers): .object(["NS": .array(numbers.map { .string($0.description) })])
        case .bs(let blobs): .object(["BS": .array(blobs.map { .string(Base64.encode($0)) })])
        }
    }
}

extension AttributeValue {
    /// Writes `json`'s bytes straight to `output`, without building it.
    public func writeJSON(to output: inout [UInt8]) {
        func open(_ type: StaticString) {
            output.append(contentsOf: #"{""#.utf8)
            output.append(contentsOf: UnsafeBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount))
            output.append(contentsOf: #"":"#.utf8)
        }
        func strings<S: Sequence>(_ type: StaticString, _ elements: S, _ text: (S.Element) -> String) {
            open(type)
            output.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 { output.append(UInt8(ascii: ",")) }
                JSON.writeString(text(element), to: &output)
            }
            output.append(contentsOf: "]}".utf8)
        }
        switch self {
        case .s(let text): open("S"); JSON.writeString(text, to: &output); output.append(UInt8(ascii: "}"))
        case .n(let number):
            open("N"); JSON.writeString(number.description, to: &output); output.append(UInt8(ascii: "}"))
        case .b(let bytes):
            open("B"); JSON.writeString(Base64.encode(bytes), to: &output); output.append(UInt8(ascii: "}"))
        case .bool(let flag): open("BOOL"); output.append(contentsOf: (flag ? "true}" : "false}").utf8)
        case .null: open("NULL"); output.append(contentsOf: "true}".utf8)
        case .m(let members): open("M"); members.writeJSON(to: &output); output.append(UInt8(ascii: "}"))
        case .l(let elements):
            open("L")
            output.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 { output.append(UInt8(ascii: ",")) }
                element.writeJSON(to: &output)
            }
            output.append(contentsOf: "]}".utf8)
        case .ss(let texts): strings("SS", texts) { $0 }
        case .ns(let numbers): strings("NS", numbers) { $0.description }
        case .bs(let blobs): strings("BS", blobs) { Base64.encode($0) }
        }
    }
}

extension Dictionary where Key == String, Value == AttributeValue {
    /// Writes the item's JSON (`json`) straight to `output`, without building it.
    public func writeJSON(to output: inout [UInt8]) {
        output.append(UInt8(ascii: "{"))
        var first = true
        for (name, value) in self {
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
            JSON.writeString(name, to: &output)
            output.append(UInt8(ascii: ":"))
            value.writeJSON(to: &output)
        }
        output.append(UInt8(ascii: "}"))
    }

    /// Reads an item (`{"name": {"S": "..."}, ...}`).
    public init(itemJSON json: JSON) throws(DynamoError) {
        guard case .object(let members) = json else {
            throw .serialization("Start of structure or map expected for an item, found \(json.typeName)")
        }
        var item: Item = [:]
        item.reserveCapacity(members.count)
        for (name, value) in members {
            try ItemLimits.checkAttributeName(name)
            item[name] = try AttributeValue(json: value)
        }
        self = item
    }

    public var json: JSON { .object(mapValues(\.json)) }
}

// MARK: Equality and order, as expressions see them

extension AttributeValue {
    /// Equal as DynamoDB compares values: sets regardless of order, numbers by value, maps
    /// and lists element by element.
    public static func == (lhs: AttributeValue, rhs: AttributeValue) -> Bool {
        switch (lhs, rhs) {
        case (.s(let a), .s(let b)): a == b
        case (.n(let a), .n(let b)): a == b
        case (.b(let a), .b(let b)): a == b
        case (.bool(let a), .bool(let b)): a == b
        case (.null, .null): true
        case (.m(let a), .m(let b)): a == b
        case (.l(let a), .l(let b)): a == b
        case (.ss(let a), .ss(let b)): a.count == b.count && Set(a) == Set(b)
        case (.ns(let a), .ns(let b)): a.count == b.count && Set(a) == Set(b)
        case (.bs(let a), .bs(let b)): a.count == b.count && Set(a) == Set(b)
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(typeName)
        switch self {
        case .s(let text): hasher.combine(text)
        case .n(let number): hasher.combine(number)
        case .b(let bytes): hasher.combine(bytes)
        case .bool(let flag): hasher.combine(flag)
        case .null: break
        case .m(let members): hasher.combine(members.count)
        case .l(let elements): hasher.combine(elements.count)
        case .ss(let texts): hasher.combine(Set(texts))
        case .ns(let numbers): hasher.combine(Set(numbers))
        case .bs(let blobs): hasher.combine(Set(blobs))
        }
    }

    /// The order of two values of the same scalar type (S by UTF-8 bytes, N by value, B by
    /// bytes); nil when they cannot be ordered.
    public static func compare(_ lhs: AttributeValue, _ rhs: AttributeValue) -> Int? {
        switch (lhs, rhs) {
        case (.s(let a), .s(let b)): return compareBytes(Array(a.utf8), Array(b.utf8))
        case (.n(let a), .n(let b)): return Number.compare(a, b)
        case (.b(let a), .b(let b)): return compareBytes(a, b)
        default: return nil
        }
    }

    static func compareBytes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Int {
        for (a, b) in zip(lhs, rhs) where a != b { return a < b ? -1 : 1 }
        return lhs.count == rhs.count ? 0 : (lhs.count < rhs.count ? -1 : 1)
    }
}
