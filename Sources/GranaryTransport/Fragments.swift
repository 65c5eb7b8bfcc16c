/// A message too large for one frame, or for a peer's send queue at once (a replica's
/// snapshot), sent as consecutive fragments of at most `bytesMax` and put together again
/// by a `Reassembly` at the other end. A fragment is the message's id, its total length,
/// the fragment's offset in it (three little-endian u64), then the bytes.
public enum Fragments {
    public static let bytesMax = 1 << 20
    public static let headerBytes = 24

    /// The fragment of `message` (id `id`) that starts at `offset`.
    public static func fragment(of message: [UInt8], id: UInt64, at offset: Int) -> [UInt8] {
        precondition(offset >= 0 && offset < message.count, "a fragment outside its message")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerBytes + min(bytesMax, message.count - offset))
        for value in [id, UInt64(message.count), UInt64(offset)] {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        bytes += message[offset..<min(message.count, offset + bytesMax)]
        return bytes
    }
}

/// Puts one stream of fragmented messages together, one message at a time: a message's
/// first fragment abandons any unfinished one (its sender gave it up), and a fragment
/// out of order, or of a message longer than `bytesMax`, drops what was gathered (the
/// sender's protocol resends what matters).
public struct Reassembly: Sendable {
    public let bytesMax: Int
    private var id: UInt64 = 0
    private var total = 0
    private var gathered: [UInt8] = []

    public init(bytesMax: Int) { self.bytesMax = bytesMax }

    /// The bytes this reassembly holds, or is about to hold, for its unfinished message.
    public var reserved: Int { gathered.isEmpty ? 0 : total }

    /// Takes a fragment (`Fragments.fragment`); returns the message once it is whole.
    /// `admit(total)` decides whether a new message of `total` bytes may be gathered.
    public mutating func take(_ fragment: ArraySlice<UInt8>, admit: (Int) -> Bool = { _ in true }) -> [UInt8]? {
        guard fragment.count > Fragments.headerBytes else { return drop() }
        let header = Array(fragment.prefix(Fragments.headerBytes))
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(header[at + $1]) << (8 * UInt64($1)) } }
        let (id, total, offset) = (u64(0), u64(8), u64(16))
        let body = fragment.dropFirst(Fragments.headerBytes)
        guard total <= UInt64(bytesMax), offset < total, UInt64(body.count) <= total - offset else { return drop() }
        if offset == 0 {
            _ = drop()
            guard admit(Int(total)) else { return nil }
            (self.id, self.total) = (id, Int(total))
            gathered.reserveCapacity(Int(total))
        } else if gathered.isEmpty || id != self.id || Int(total) != self.total || Int(offset) != gathered.count {
            return drop()
        }
        gathered += body
        guard gathered.count == self.total else { return nil }
        defer { gathered = [] }
        return gathered
    }

    private mutating func drop() -> [UInt8]? {
        gathered = []
        return nil
    }
}
