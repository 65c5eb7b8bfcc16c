/// The binary form items take in the B-tree: compact, and decoded without parsing text.
///
///     item   = varint(count) { varint(nameLength) name value }
///     value  = tag payload
///     S, B   = varint(length) bytes          N  = number
///     BOOL   = 0 | 1                          NULL = (nothing)
///     M      = varint(count) { name value }   L  = varint(count) { value }
///     SS, BS = varint(count) { varint(length) bytes }   NS = varint(count) { number }
///     number = sign(0|1) zigzag-varint(exponent) varint(digitCount) digits
public enum ItemCodec {
    enum Tag: UInt8 {
        case s = 1, n, b, bool, null, m, l, ss, ns, bs
    }

    public struct DecodingError: Error, Sendable, CustomStringConvertible {
        public let offset: Int
        public var description: String { "a stored item does not decode (byte \(offset))" }
    }

    public static func encode(_ item: Item) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(item.sizeBytes + 4 * item.count + 8)
        writeVarint(UInt64(item.count), to: &output)
        for (name, value) in item {
            writeBytes(name.utf8, to: &output)
            write(value, to: &output)
        }
        return output
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> Item {
        var reader = Reader(bytes: bytes)
        let item = try reader.readItem(depth: 0)
        guard reader.index == bytes.count else { throw DecodingError(offset: reader.index) }
        return item
    }

    /// Writes the stored item's protocol JSON (what `decode(bytes).writeJSON` writes)
    /// straight from its stored form: a GetItem answers without building the item.
    public static func writeJSON(_ bytes: [UInt8], to output: inout [UInt8]) throws(DecodingError) {
        var reader = Reader(bytes: bytes)
        try reader.writeItemJSON(depth: 0, to: &output)
        guard reader.index == bytes.count else { throw DecodingError(offset: reader.index) }
    }

    /// DynamoDB's size of the stored item (`Item.sizeBytes` of what `decode` gives), read
    /// off its stored form: a Query or Scan counts its 1 MB page without decoding.
    public static func storedSize(_ bytes: [UInt8]) throws(DecodingError) -> Int {
        var reader = Reader(bytes: bytes)
        let size = try reader.itemSize(depth: 0, inMap: false)
        guard reader.index == bytes.count else { throw DecodingError(offset: reader.index) }
        return size
    }

    /// Whether the stored item has a top-level attribute named `name`, read off its stored
    /// form: its names are compared and its values skipped, nothing is built.
    public static func hasAttribute(named name: String, in bytes: [UInt8]) throws(DecodingError) -> Bool {
        var reader = Reader(bytes: bytes)
        let wanted = Array(name.utf8)
        for _ in 0..<(try reader.varint()) {
            if try reader.slice().elementsEqual(wanted) { return true }
            _ = try reader.valueSize(depth: 0)
        }
        return false
    }

    static func write(_ value: AttributeValue, to output: inout [UInt8]) {
        switch value {
        case .s(let text):
            output.append(Tag.s.rawValue); writeBytes(text.utf8, to: &output)
        case .n(let number):
            output.append(Tag.n.rawValue); write(number, to: &output)
        case .b(let bytes):
            output.append(Tag.b.rawValue); writeBytes(bytes, to: &output)
        case .bool(let flag):
            output.append(Tag.bool.rawValue); output.append(flag ? 1 : 0)
        case .null:
            output.append(Tag.null.rawValue)
        case .m(let members):
            output.append(Tag.m.rawValue)
            writeVarint(UInt64(members.count), to: &output)
            for (name, member) in members {
                writeBytes(name.utf8, to: &output)
                write(member, to: &output)
            }
        case .l(let elements):
            output.append(Tag.l.rawValue)
            writeVarint(UInt64(elements.count), to: &output)
            for element in elements { write(element, to: &output) }
        case .ss(let texts):
            output.append(Tag.ss.rawValue)
            writeVarint(UInt64(texts.count), to: &output)
            for text in texts { writeBytes(text.utf8, to: &output) }
        case .ns(let numbers):
            output.append(Tag.ns.rawValue)
            writeVarint(UInt64(numbers.count), to: &output)
            for number in numbers { write(number, to: &output) }
        case .bs(let blobs):
            output.append(Tag.bs.rawValue)
            writeVarint(UInt64(blobs.count), to: &output)
            for blob in blobs { writeBytes(blob, to: &output) }
        }
    }

    static func write(_ number: Number, to output: inout [UInt8]) {
        output.append(number.negative ? 1 : 0)
        let exponent = Int64(number.exponent)
        writeVarint(UInt64(bitPattern: (exponent << 1) ^ (exponent >> 63)), to: &output)
        writeVarint(UInt64(number.digits.count), to: &output)
        output.append(contentsOf: number.digits)
    }

    static func writeBytes<C: Collection>(_ bytes: C, to output: inout [UInt8]) where C.Element == UInt8 {
        writeVarint(UInt64(bytes.count), to: &output)
        output.append(contentsOf: bytes)
    }

    static func writeVarint(_ value: UInt64, to output: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            output.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        output.append(UInt8(rest))
    }

    struct Reader {
        let bytes: [UInt8]
        var index = 0

        func failure() -> DecodingError { DecodingError(offset: index) }

        mutating func byte() throws(DecodingError) -> UInt8 {
            guard index < bytes.count else { throw failure() }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func varint() throws(DecodingError) -> Int {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let next = try byte()
                value |= UInt64(next & 0x7F) << shift
                if next < 0x80 { break }
                shift += 7
                guard shift < 64 else { throw failure() }
            }
            guard value <= UInt64(Int32.max) else { throw failure() }
            return Int(value)
        }

        mutating func slice() throws(DecodingError) -> ArraySlice<UInt8> {
            let count = try varint()
            guard count <= bytes.count - index else { throw failure() }
            defer { index += count }
            return bytes[index..<(index + count)]
        }

        mutating func string() throws(DecodingError) -> String {
            String(decoding: try slice(), as: UTF8.self)
        }

        mutating func number() throws(DecodingError) -> Number {
            let negative = try byte() == 1
            let zigzag = UInt64(try varintRaw())
            let exponent = Int(Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1))
            let digits = Array(try slice())
            guard digits.count <= Number.significantDigitsMax, digits.allSatisfy({ $0 <= 9 }) else { throw failure() }
            return Number(negative: negative, digits: digits, exponent: exponent)
        }

        /// The sizes `Item.sizeBytes` and `AttributeValue.sizeBytes` give: a map's members
        /// cost a byte each more than an item's attributes.
        mutating func itemSize(depth: Int, inMap: Bool) throws(DecodingError) -> Int {
            var size = 0
            for _ in 0..<(try varint()) {
                size += (inMap ? 1 : 0) + (try slice().count) + (try valueSize(depth: depth))
            }
            return size
        }

        mutating func numberSize() throws(DecodingError) -> Int {
            _ = try byte()
            _ = try varintRaw()
            let digits = try slice()
            guard digits.count <= Number.significantDigitsMax else { throw failure() }
            return (digits.count + 1) / 2 + 1
        }

        mutating func valueSize(depth: Int) throws(DecodingError) -> Int {
            guard depth <= ItemLimits.nestingDepthMax + 1, let tag = Tag(rawValue: try byte()) else { throw failure() }
            switch tag {
            case .s, .b: return try slice().count
            case .n: return try numberSize()
            case .bool: _ = try byte(); return 1
            case .null: return 1
            case .m: return 3 + (try itemSize(depth: depth + 1, inMap: true))
            case .l:
                var size = 3
                for _ in 0..<(try varint()) { size += 1 + (try valueSize(depth: depth + 1)) }
                return size
            case .ss, .bs:
                var size = 0
                for _ in 0..<(try varint()) { size += try slice().count }
                return size
            case .ns:
                var size = 0
                for _ in 0..<(try varint()) { size += try numberSize() }
                return size
            }
        }

        mutating func writeStringJSON(to output: inout [UInt8]) throws(DecodingError) {
            try slice().withUnsafeBufferPointer { JSON.writeString(utf8: $0, to: &output) }
        }

        mutating func writeNumberJSON(to output: inout [UInt8]) throws(DecodingError) {
            let negative = try byte() == 1
            let zigzag = try varintRaw()
            let exponent = Int(Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1))
            let digits = try slice()
            guard digits.count <= Number.significantDigitsMax, digits.allSatisfy({ $0 <= 9 }) else { throw failure() }
            output.append(UInt8(ascii: "\""))
            Number.writeText(negative: negative, digits: digits, exponent: exponent, to: &output)
            output.append(UInt8(ascii: "\""))
        }

        mutating func writeItemJSON(depth: Int, to output: inout [UInt8]) throws(DecodingError) {
            let count = try varint()
            output.append(UInt8(ascii: "{"))
            for position in 0..<count {
                if position > 0 { output.append(UInt8(ascii: ",")) }
                try writeStringJSON(to: &output)
                output.append(UInt8(ascii: ":"))
                try writeValueJSON(depth: depth, to: &output)
            }
            output.append(UInt8(ascii: "}"))
        }

        /// Mirrors `value(depth:)`, writing `AttributeValue.writeJSON`'s bytes.
        mutating func writeValueJSON(depth: Int, to output: inout [UInt8]) throws(DecodingError) {
            guard depth <= ItemLimits.nestingDepthMax + 1, let tag = Tag(rawValue: try byte()) else { throw failure() }
            func open(_ type: StaticString) {
                output.append(contentsOf: #"{""#.utf8)
                output.append(contentsOf: UnsafeBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount))
                output.append(contentsOf: #"":"#.utf8)
            }
            /// A list or set: `[element,...]` with each element written by `element`.
            func elements(
                _ type: StaticString, _ element: (inout Reader) throws(DecodingError) -> Void
            ) throws(DecodingError) {
                open(type)
                output.append(UInt8(ascii: "["))
                for position in 0..<(try varint()) {
                    if position > 0 { output.append(UInt8(ascii: ",")) }
                    try element(&self)
                }
                output.append(contentsOf: "]}".utf8)
            }
            switch tag {
            case .s: open("S"); try writeStringJSON(to: &output); output.append(UInt8(ascii: "}"))
            case .n: open("N"); try writeNumberJSON(to: &output); output.append(UInt8(ascii: "}"))
            case .b:
                open("B"); JSON.writeString(Base64.encode(Array(try slice())), to: &output);
                output.append(UInt8(ascii: "}"))
            case .bool: open("BOOL"); output.append(contentsOf: (try byte() == 1 ? "true}" : "false}").utf8)
            case .null: open("NULL"); output.append(contentsOf: "true}".utf8)
            case .m: open("M"); try writeItemJSON(depth: depth + 1, to: &output); output.append(UInt8(ascii: "}"))
            case .l:
                try elements("L") { (reader) throws(DecodingError) in
                    try reader.writeValueJSON(depth: depth + 1, to: &output)
                }
            case .ss: try elements("SS") { (reader) throws(DecodingError) in try reader.writeStringJSON(to: &output) }
            case .ns: try elements("NS") { (reader) throws(DecodingError) in try reader.writeNumberJSON(to: &output) }
            case .bs:
                try elements("BS") { (reader) throws(DecodingError) in
                    JSON.writeString(Base64.encode(Array(try reader.slice())), to: &output)
                }
            }
        }

        mutating func varintRaw() throws(DecodingError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let next = try byte()
                value |= UInt64(next & 0x7F) << shift
                if next < 0x80 { return value }
                shift += 7
                guard shift < 64 else { throw failure() }
            }
        }

        mutating func readItem(depth: Int) throws(DecodingError) -> Item {
            let count = try varint()
            var item: Item = [:]
            item.reserveCapacity(min(count, 1024))
            for _ in 0..<count {
                let name = try string()
                item[name] = try value(depth: depth)
            }
            return item
        }

        mutating func value(depth: Int) throws(DecodingError) -> AttributeValue {
            guard depth <= ItemLimits.nestingDepthMax + 1, let tag = Tag(rawValue: try byte()) else { throw failure() }
            switch tag {
            case .s: return .s(try string())
            case .n: return .n(try number())
            case .b: return .b(Array(try slice()))
            case .bool: return .bool(try byte() == 1)
            case .null: return .null
            case .m: return .m(try readItem(depth: depth + 1))
            case .l:
                let count = try varint()
                var elements: [AttributeValue] = []
                elements.reserveCapacity(min(count, 1024))
                for _ in 0..<count { elements.append(try value(depth: depth + 1)) }
                return .l(elements)
            case .ss:
                let count = try varint()
                var texts: [String] = []
                for _ in 0..<count { texts.append(try string()) }
                return .ss(texts)
            case .ns:
                let count = try varint()
                var numbers: [Number] = []
                for _ in 0..<count { numbers.append(try number()) }
                return .ns(numbers)
            case .bs:
                let count = try varint()
                var blobs: [[UInt8]] = []
                for _ in 0..<count { blobs.append(Array(try slice())) }
                return .bs(blobs)
            }
        }
    }
}
