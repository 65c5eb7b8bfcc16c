/// A DynamoDB number: a decimal of up to 38 significant digits, with magnitude from
/// 1E-130 up to (not including) 1E+126, or zero. Compared by value; printed in canonical
/// form (no exponent, no leading or trailing zeros: "1.50" is "1.5", "1E+2" is "100").
///
/// Kept as sign, digits and exponent: value = ±0.d₁d₂…dₙ × 10^exponent, with d₁ ≠ 0 and
/// dₙ ≠ 0. Zero has no digits.
public struct Number: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public private(set) var negative: Bool
    /// Significant digits, each 0...9, no leading or trailing zero.
    public private(set) var digits: [UInt8]
    /// Where the decimal point sits: value = 0.digits × 10^exponent.
    public private(set) var exponent: Int

    public static let significantDigitsMax = 38
    /// 0.1 × 10^-129 = 1E-130.
    static let exponentMin = -129
    /// Below 0.1 × 10^127 = 1E+126.
    static let exponentMax = 126

    public static let zero = Number(negative: false, digits: [], exponent: 0)

    public var isZero: Bool { digits.isEmpty }

    init(negative: Bool, digits: [UInt8], exponent: Int) {
        self.negative = negative
        self.digits = digits
        self.exponent = exponent
    }

    /// Builds a number from raw digits, normalizing them and checking DynamoDB's bounds.
    static func normalized(
        negative: Bool, digits raw: [UInt8], exponent raw_exponent: Int
    ) throws(DynamoError) -> Number {
        var first = 0
        while first < raw.count && raw[first] == 0 { first += 1 }
        var end = raw.count
        while end > first && raw[end - 1] == 0 { end -= 1 }
        if first == end { return .zero }
        let digits = Array(raw[first..<end])
        let exponent = raw_exponent - first
        guard digits.count <= significantDigitsMax else {
            throw .validation("Attempting to store more than 38 significant digits in a Number")
        }
        guard exponent <= exponentMax else {
            throw .validation(
                "Number overflow. Attempting to store a number with magnitude larger than supported range")
        }
        guard exponent >= exponentMin else {
            throw .validation(
                "Number underflow. Attempting to store a number with magnitude smaller than supported range")
        }
        return Number(negative: negative, digits: digits, exponent: exponent)
    }

    /// An integer, exactly (every Int has fewer than 38 digits).
    public init(_ integer: Int) {
        if integer == 0 { self = .zero; return }
        var digits = String(integer.magnitude).utf8.map { $0 - UInt8(ascii: "0") }
        let exponent = digits.count
        while digits.last == 0 { digits.removeLast() }
        self.init(negative: integer < 0, digits: digits, exponent: exponent)
    }

    /// Parses DynamoDB's number text: an optional sign, digits with an optional point, an
    /// optional exponent. Leading and trailing spaces are not allowed.
    public init(parsing text: String) throws(DynamoError) {
        let shown = text.utf8.count > 100 ? String(text.prefix(100)) + "..." : text
        let invalid = DynamoError.validation("The parameter cannot be converted to a numeric value: \(shown)")
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 1024 else { throw invalid }
        var index = 0
        var negative = false
        if bytes[0] == UInt8(ascii: "-") || bytes[0] == UInt8(ascii: "+") {
            negative = bytes[0] == UInt8(ascii: "-")
            index = 1
        }
        var digits: [UInt8] = []
        var pointPosition: Int?
        var sawDigit = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                digits.append(byte - UInt8(ascii: "0"))
                sawDigit = true
            } else if byte == UInt8(ascii: ".") && pointPosition == nil {
                pointPosition = digits.count
            } else {
                break
            }
            index += 1
        }
        guard sawDigit else { throw invalid }
        var exponent10 = 0
        if index < bytes.count {
            guard bytes[index] | 0x20 == UInt8(ascii: "e") else { throw invalid }
            index += 1
            var exponentNegative = false
            if index < bytes.count && (bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+")) {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            guard index < bytes.count else { throw invalid }
            while index < bytes.count {
                let byte = bytes[index]
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { throw invalid }
                exponent10 = min(exponent10 * 10 + Int(byte - UInt8(ascii: "0")), 100_000)
                index += 1
            }
            if exponentNegative { exponent10 = -exponent10 }
        }
        let number = try Number.normalized(
            negative: negative, digits: digits, exponent: (pointPosition ?? digits.count) + exponent10)
        self = number
    }

    /// The canonical text DynamoDB returns.
    public var description: String {
        var text: [UInt8] = []
        Number.writeText(negative: negative, digits: digits, exponent: exponent, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends the canonical text of ±0.digits × 10^exponent: "0", "-12.5", "0.007",
    /// "1200". Stored items are written as JSON with it without becoming a Number first.
    static func writeText<Digits: Collection<UInt8>>(
        negative: Bool, digits: Digits, exponent: Int, to output: inout [UInt8]
    ) {
        guard !digits.isEmpty else { output.append(UInt8(ascii: "0")); return }
        if negative { output.append(UInt8(ascii: "-")) }
        if exponent <= 0 {
            output.append(contentsOf: "0.".utf8)
            output.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -exponent))
            for digit in digits { output.append(digit + UInt8(ascii: "0")) }
        } else {
            var position = 0
            for digit in digits {
                if position == exponent { output.append(UInt8(ascii: ".")) }
                output.append(digit + UInt8(ascii: "0"))
                position += 1
            }
            output.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: max(0, exponent - position)))
        }
    }

    // MARK: Order

    public static func < (lhs: Number, rhs: Number) -> Bool {
        compare(lhs, rhs) < 0
    }

    /// -1, 0 or 1.
    static func compare(_ lhs: Number, _ rhs: Number) -> Int {
        let lhsSign = lhs.isZero ? 0 : (lhs.negative ? -1 : 1)
        let rhsSign = rhs.isZero ? 0 : (rhs.negative ? -1 : 1)
        if lhsSign != rhsSign { return lhsSign < rhsSign ? -1 : 1 }
        if lhsSign == 0 { return 0 }
        let magnitude = compareMagnitude(lhs, rhs)
        return lhsSign > 0 ? magnitude : -magnitude
    }

    static func compareMagnitude(_ lhs: Number, _ rhs: Number) -> Int {
        if lhs.exponent != rhs.exponent { return lhs.exponent < rhs.exponent ? -1 : 1 }
        for (left, right) in zip(lhs.digits, rhs.digits) where left != right {
            return left < right ? -1 : 1
        }
        if lhs.digits.count == rhs.digits.count { return 0 }
        return lhs.digits.count < rhs.digits.count ? -1 : 1
    }

    // MARK: Arithmetic (SET a = a + :n, ADD)

    public static func + (lhs: Number, rhs: Number) throws(DynamoError) -> Number {
        if lhs.isZero { return rhs }
        if rhs.isZero { return lhs }
        // Align both on the lower power of ten: value = coefficient × 10^(scale).
        let lhsScale = lhs.exponent - lhs.digits.count
        let rhsScale = rhs.exponent - rhs.digits.count
        let scale = min(lhsScale, rhsScale)
        let lhsCoefficient = lhs.digits + [UInt8](repeating: 0, count: lhsScale - scale)
        let rhsCoefficient = rhs.digits + [UInt8](repeating: 0, count: rhsScale - scale)
        guard max(lhsCoefficient.count, rhsCoefficient.count) <= 400 else {
            // The exponents are so far apart that the smaller is below the 38-digit
            // precision of the larger: DynamoDB refuses that as too many digits.
            throw .validation("Attempting to store more than 38 significant digits in a Number")
        }
        let width = max(lhsCoefficient.count, rhsCoefficient.count) + 1
        let left = [UInt8](repeating: 0, count: width - lhsCoefficient.count) + lhsCoefficient
        let right = [UInt8](repeating: 0, count: width - rhsCoefficient.count) + rhsCoefficient
        var result = [UInt8](repeating: 0, count: width)
        var negative: Bool
        if lhs.negative == rhs.negative {
            negative = lhs.negative
            var carry: UInt8 = 0
            for position in stride(from: width - 1, through: 0, by: -1) {
                let sum = left[position] + right[position] + carry
                result[position] = sum % 10
                carry = sum / 10
            }
        } else {
            // Subtract the smaller magnitude from the larger.
            let leftLarger = left.lexicographicallyPrecedes(right) == false
            let (big, small) = leftLarger ? (left, right) : (right, left)
            negative = leftLarger ? lhs.negative : rhs.negative
            var borrow: Int = 0
            for position in stride(from: width - 1, through: 0, by: -1) {
                var difference = Int(big[position]) - Int(small[position]) - borrow
                borrow = difference < 0 ? 1 : 0
                if difference < 0 { difference += 10 }
                result[position] = UInt8(difference)
            }
        }
        let value = try normalized(negative: negative, digits: result, exponent: scale + width)
        if value.isZero { negative = false }
        return value
    }

    public static prefix func - (value: Number) -> Number {
        value.isZero ? value : Number(negative: !value.negative, digits: value.digits, exponent: value.exponent)
    }

    public static func - (lhs: Number, rhs: Number) throws(DynamoError) -> Number {
        try lhs + (-rhs)
    }

    /// DynamoDB's size of a number in bytes: one byte per two significant digits, plus one.
    public var sizeBytes: Int { (digits.count + 1) / 2 + 1 }
}

extension Number {
    /// Decoded from its canonical text through the parser, so that decoded bytes meet the
    /// same bounds as a request's number.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            self = try Number(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.message)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
