/// The tokens of DynamoDB's expression language (condition, filter, key condition, update
/// and projection expressions share them).
enum Token: Equatable, CustomStringConvertible {
    case name(String)  // a bare attribute name or keyword
    case nameAlias(String)  // #name
    case valueAlias(String)  // :value
    case index(Int)  // the digits inside [ ]
    case symbol(String)  // ( ) [ ] , . = <> < <= > >= + -
    case end

    var description: String {
        switch self {
        case .name(let text), .nameAlias(let text), .valueAlias(let text), .symbol(let text): text
        case .index(let value): String(value)
        case .end: "<EOF>"
        }
    }

    func isKeyword(_ keyword: String) -> Bool {
        if case .name(let text) = self { return text.uppercased() == keyword }
        return false
    }
}

enum ExpressionLexer {
    /// DynamoDB's bound on any one expression's length.
    static let expressionBytesMax = 4096

    static func tokens(_ text: String, kind: String) throws(DynamoError) -> [Token] {
        let bytes = Array(text.utf8)
        guard bytes.count <= expressionBytesMax else {
            throw .invalidExpression(
                kind, "Expression size has exceeded the maximum allowed size; expression size: \(bytes.count)")
        }
        var tokens: [Token] = []
        var index = 0
        func isNameByte(_ byte: UInt8) -> Bool {
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x5F
        }
        func word(from start: Int) -> (String, Int) {
            var end = start
            while end < bytes.count && isNameByte(bytes[end]) { end += 1 }
            return (String(decoding: bytes[start..<end], as: UTF8.self), end)
        }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0D:
                index += 1
            case UInt8(ascii: "#"), UInt8(ascii: ":"):
                let (name, end) = word(from: index + 1)
                guard !name.isEmpty else {
                    throw syntaxError(kind, token: String(UnicodeScalar(byte)), near: text)
                }
                tokens.append(byte == UInt8(ascii: "#") ? .nameAlias("#" + name) : .valueAlias(":" + name))
                index = end
            case UInt8(ascii: "["):
                tokens.append(.symbol("["))
                index += 1
                var end = index
                while end < bytes.count && bytes[end] == 0x20 { end += 1 }
                let digitsStart = end
                while end < bytes.count && bytes[end] >= 0x30 && bytes[end] <= 0x39 { end += 1 }
                if end > digitsStart {
                    guard end - digitsStart <= 9,
                        let value = Int(String(decoding: bytes[digitsStart..<end], as: UTF8.self))
                    else {
                        throw .invalidExpression(kind, "List index is too large")
                    }
                    tokens.append(.index(value))
                    index = end
                }
            case UInt8(ascii: "<"):
                if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "=") {
                    tokens.append(.symbol("<=")); index += 2
                } else if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: ">") {
                    tokens.append(.symbol("<>")); index += 2
                } else {
                    tokens.append(.symbol("<")); index += 1
                }
            case UInt8(ascii: ">"):
                if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "=") {
                    tokens.append(.symbol(">=")); index += 2
                } else {
                    tokens.append(.symbol(">")); index += 1
                }
            case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "]"), UInt8(ascii: ","), UInt8(ascii: "."),
                UInt8(ascii: "="), UInt8(ascii: "+"), UInt8(ascii: "-"):
                tokens.append(.symbol(String(UnicodeScalar(byte))))
                index += 1
            default:
                guard isNameByte(byte) else {
                    let scalar = String(decoding: bytes[index...].prefix(1), as: UTF8.self)
                    throw .invalidExpression(
                        kind, "Syntax error; token: \"\(scalar)\", near: \"\(near(text, at: index))\"")
                }
                let (name, end) = word(from: index)
                tokens.append(.name(name))
                index = end
            }
        }
        tokens.append(.end)
        return tokens
    }

    static func near(_ text: String, at offset: Int) -> String {
        let bytes = Array(text.utf8)
        let start = max(0, offset - 8)
        let end = min(bytes.count, offset + 8)
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    static func syntaxError(_ kind: String, token: String, near text: String) -> DynamoError {
        .invalidExpression(kind, "Syntax error; token: \"\(token)\", near: \"\(text)\"")
    }
}
