/// What a run does: YCSB's core workloads A–F, or a custom mix.
///
/// Records are numbered 0..<records. Keys are scattered by hashing the record number, as
/// YCSB does. Every workload but E keeps one item per record under a partition key alone.
/// E reads short ranges, which in DynamoDB is a Query within one partition key, so its
/// table has a sort key: records are grouped `groupSize` to a partition key, sorted by
/// record number, and a range is a Query from a record onward within its group.
public struct Workload: Sendable, Equatable {
    public enum Operation: String, Sendable, CaseIterable, Codable {
        case read, update, insert, scan
        case readModifyWrite = "read-modify-write"
    }

    public let name: String
    /// Proportions of each operation; they sum to 1.
    public let mix: [(Operation, Double)]
    public let distribution: KeyDistribution
    /// Whether items have a sort key (workload E's ranges need one).
    public let ranged: Bool

    public static let groupSize = 100
    /// YCSB's maxscanlength: a range reads 1...maxRangeLength items, uniformly.
    public static let maxRangeLength = 100

    public init(name: String, mix: [(Operation, Double)], distribution: KeyDistribution, ranged: Bool = false) {
        self.name = name
        self.mix = mix.filter { $0.1 > 0 }
        self.distribution = distribution
        self.ranged = ranged
    }

    public static func == (lhs: Workload, rhs: Workload) -> Bool {
        lhs.name == rhs.name && lhs.distribution == rhs.distribution && lhs.ranged == rhs.ranged
            && lhs.mix.map(\.0) == rhs.mix.map(\.0) && lhs.mix.map(\.1) == rhs.mix.map(\.1)
    }

    /// YCSB's core workloads, with their default proportions and distributions.
    public static func core(_ letter: String) -> Workload? {
        switch letter.lowercased() {
        case "a": Workload(name: "a", mix: [(.read, 0.5), (.update, 0.5)], distribution: .zipfian)
        case "b": Workload(name: "b", mix: [(.read, 0.95), (.update, 0.05)], distribution: .zipfian)
        case "c": Workload(name: "c", mix: [(.read, 1)], distribution: .zipfian)
        case "d": Workload(name: "d", mix: [(.read, 0.95), (.insert, 0.05)], distribution: .latest)
        case "e": Workload(name: "e", mix: [(.scan, 0.95), (.insert, 0.05)], distribution: .zipfian, ranged: true)
        case "f": Workload(name: "f", mix: [(.read, 0.5), (.readModifyWrite, 0.5)], distribution: .zipfian)
        default: nil
        }
    }

    /// A custom mix such as "read=0.7,update=0.2,insert=0.1" (weights are normalized).
    public static func custom(_ text: String, distribution: KeyDistribution, ranged: Bool) -> Workload? {
        var mix: [(Operation, Double)] = []
        for part in text.split(separator: ",") {
            let pair = part.split(separator: "=")
            guard pair.count == 2, let operation = Operation(rawValue: pair[0].trimmingCharacters(in: .whitespaces)),
                let weight = Double(pair[1].trimmingCharacters(in: .whitespaces)), weight >= 0,
                !mix.contains(where: { $0.0 == operation })
            else { return nil }
            mix.append((operation, weight))
        }
        let total = mix.reduce(0) { $0 + $1.1 }
        guard total > 0 else { return nil }
        if mix.contains(where: { $0.0 == .scan }) && !ranged { return nil }
        return Workload(
            name: "custom", mix: mix.map { ($0.0, $0.1 / total) }, distribution: distribution, ranged: ranged)
    }

    /// Picks an operation by the mix, from a uniform draw in [0, 1).
    public func operation(for draw: Double) -> Operation {
        var remaining = draw
        for (operation, share) in mix {
            if remaining < share { return operation }
            remaining -= share
        }
        return mix.last!.0
    }
}

/// How record numbers become DynamoDB keys and values.
public struct RecordLayout: Sendable {
    public let table: String
    public let ranged: Bool
    public let fieldCount: Int
    public let valueBytes: Int

    public init(table: String, ranged: Bool, fieldCount: Int, valueBytes: Int) {
        precondition(fieldCount >= 1 && valueBytes >= 24, "a record has at least one field of at least 24 bytes")
        self.table = table
        self.ranged = ranged
        self.fieldCount = fieldCount
        self.valueBytes = valueBytes
    }

    /// The partition key's value: "user" and the hashed record number (YCSB's key names),
    /// or for ranged tables "group" and the hashed group number.
    public func partitionKey(_ record: Int) -> String {
        ranged ? "group\(fnvHash64(Int64(record / Workload.groupSize)))" : "user\(fnvHash64(Int64(record)))"
    }

    /// The key attributes in DynamoDB JSON: `"pk":{"S":"..."}` and, ranged, `"sk":{"N":"..."}`.
    public func keyJSON(_ record: Int) -> String {
        ranged
            ? #""pk":{"S":"\#(partitionKey(record))"},"sk":{"N":"\#(record)"}"#
            : #""pk":{"S":"\#(partitionKey(record))"}"#
    }

    public static func fieldName(_ index: Int) -> String { "field\(index)" }

    /// A field's value: the write's sequence number, ':', then filler drawn from the record,
    /// the field and the sequence number, `valueBytes` long in all. The checker recomputes
    /// the filler, so a stored value that is not exactly what some write sent is caught.
    public func value(record: Int, field: Int, sequence: Int) -> String {
        var bytes = Array("\(sequence):".utf8)
        bytes.reserveCapacity(valueBytes)
        var random = FastRandom(
            seed: UInt64(truncatingIfNeeded: record) &* 0x9E37_79B9 ^ UInt64(field) << 48
                ^ UInt64(truncatingIfNeeded: sequence))
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        var word = random.next()
        var left = 10
        while bytes.count < valueBytes {
            if left == 0 { word = random.next(); left = 10 }
            bytes.append(alphabet[Int(word % 62)])
            word /= 62
            left -= 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The sequence number in a stored value, or nil if the value is not one this layout
    /// wrote for that record and field.
    public func sequence(inValue value: String, record: Int, field: Int) -> Int? {
        guard let colon = value.firstIndex(of: ":"), let sequence = Int(value[..<colon]),
            self.value(record: record, field: field, sequence: sequence) == value
        else { return nil }
        return sequence
    }
}
