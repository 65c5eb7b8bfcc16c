/// How an item's primary key becomes its B-tree key.
///
///     table id (4 bytes, big-endian)
///     hash of the partition key (8 bytes, big-endian)
///     partition key length (2 bytes, big-endian), partition key bytes
///     sort key bytes, order-preserving
///
/// Items of one partition key are contiguous and sorted by sort key the way DynamoDB sorts
/// (bytes for S and B, value for N), so Query is one cursor walk. Partition keys are in
/// hash order, as in DynamoDB, and a table's partitions (and later its scan segments) are
/// ranges of the hash. The length prefix keeps one partition key's items from interleaving
/// with another's of the same hash, and bounds the key: 4 + 8 + 2 + 2048 + 1024 bytes.
public enum KeyEncoding {
    public static let tablePrefixBytes = 4

    /// A stable 64-bit hash of a key value (FNV-1a, then a SplitMix64 finalizer so that the
    /// high bits, which pick the partition, are well mixed). Stable across runs and
    /// machines: it decides where items live on disk.
    public static func hash(_ value: AttributeValue) -> UInt64 {
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        state = (state ^ UInt64(typeTag(value))) &* 0x100_0000_01b3
        for byte in keyBytes(value) {
            state = (state ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        state = (state ^ (state >> 30)) &* 0xbf58_476d_1ce4_e5b9
        state = (state ^ (state >> 27)) &* 0x94d0_49bb_1331_11eb
        return state ^ (state >> 31)
    }

    /// The bytes of a key attribute: S as UTF-8, B as is, N order-preserving.
    public static func keyBytes(_ value: AttributeValue) -> [UInt8] {
        switch value {
        case .s(let text): Array(text.utf8)
        case .b(let bytes): bytes
        case .n(let number): orderPreserving(number)
        default: preconditionFailure("a key attribute is S, N or B (validated before encoding)")
        }
    }

    static func typeTag(_ value: AttributeValue) -> UInt8 {
        switch value {
        case .s: 1
        case .n: 2
        case .b: 3
        default: 0
        }
    }

    /// The key of the item with this primary key in table `table`.
    public static func itemKey(table: UInt32, partitionKey: AttributeValue, sortKey: AttributeValue?) -> [UInt8] {
        var key = partitionPrefix(table: table, partitionKey: partitionKey)
        if let sortKey { key += keyBytes(sortKey) }
        return key
    }

    /// The prefix every item of one partition key shares.
    public static func partitionPrefix(table: UInt32, partitionKey: AttributeValue) -> [UInt8] {
        let partition = keyBytes(partitionKey)
        precondition(partition.count <= ItemLimits.partitionKeyBytesMax + 64)
        var key = tablePrefix(table)
        key.reserveCapacity(4 + 8 + 2 + partition.count + 64)
        appendBigEndian(hash(partitionKey), bytes: 8, to: &key)
        appendBigEndian(UInt64(partition.count), bytes: 2, to: &key)
        key += partition
        return key
    }

    /// `bytes` made self-delimiting without changing their order: each 0x00 as 0x00 0xFF,
    /// then 0x00 0x01. A terminated value sorts before every longer value it begins, so
    /// bytes can follow it (a secondary index's entry key: `SecondaryIndex`).
    public static func terminated(_ bytes: [UInt8]) -> [UInt8] {
        var output = escaped(bytes)
        output += [0x00, 0x01]
        return output
    }

    /// `bytes` with each 0x00 as 0x00 0xFF: a prefix of `terminated`, kept by every value
    /// that begins with `bytes`.
    public static func escaped(_ bytes: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + 2)
        for byte in bytes {
            output.append(byte)
            if byte == 0 { output.append(0xFF) }
        }
        return output
    }

    /// The least key above every key that starts with `prefix`.
    public static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last, last == 0xFF { end.removeLast() }
        precondition(!end.isEmpty, "a key prefix starts with a table id below 0xFFFFFFFF")
        end[end.count - 1] += 1
        return end
    }

    /// The first key of a hash range in table `table`: where Scan segments begin.
    public static func hashStart(table: UInt32, hash: UInt64) -> [UInt8] {
        var key = tablePrefix(table)
        appendBigEndian(hash, bytes: 8, to: &key)
        return key
    }

    /// The partition key hash an item's or an index entry's key holds after its table id
    /// (`partitionPrefix`); 0 for a key too short to hold one.
    public static func hash(ofKey key: [UInt8]) -> UInt64 {
        guard key.count >= tablePrefixBytes + 8 else { return 0 }
        return key[tablePrefixBytes..<tablePrefixBytes + 8].reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The table id a key starts with (`tablePrefix`).
    public static func table(of key: [UInt8]) -> UInt32 {
        key.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    public static func tablePrefix(_ table: UInt32) -> [UInt8] {
        var key: [UInt8] = []
        appendBigEndian(UInt64(table), bytes: 4, to: &key)
        return key
    }

    static func appendBigEndian(_ value: UInt64, bytes: Int, to output: inout [UInt8]) {
        for shift in stride(from: (bytes - 1) * 8, through: 0, by: -8) {
            output.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    /// A number as bytes whose lexicographic order is the numbers' order:
    /// negative 0x01, zero 0x02, positive 0x03; then the exponent (biased, two bytes) and
    /// the digits (each plus one); negatives invert both and end with 0xFF, so that a
    /// longer negative (larger magnitude) sorts first.
    public static func orderPreserving(_ number: Number) -> [UInt8] {
        if number.isZero { return [0x02] }
        let biased = UInt16(number.exponent + 1000)
        if !number.negative {
            var bytes: [UInt8] = [0x03, UInt8(biased >> 8), UInt8(biased & 0xFF)]
            bytes += number.digits.map { $0 + 1 }
            return bytes
        }
        let inverted = 2000 - biased
        var bytes: [UInt8] = [0x01, UInt8(inverted >> 8), UInt8(inverted & 0xFF)]
        bytes += number.digits.map { 10 - $0 }
        bytes.append(0xFF)
        return bytes
    }
}
