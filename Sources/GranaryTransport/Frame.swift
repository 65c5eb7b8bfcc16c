import CShims

/// The framing of the node-to-node protocol: a 10-byte header (the payload's length, the
/// protocol version, the frame's kind, the payload's CRC32C, little-endian), then the
/// payload. A frame that is too long, of another version or whose checksum fails ends the
/// connection: the bytes after it cannot be trusted to be framed.
public enum Frame {
    public static let version: UInt8 = 1
    public static let headerBytes = 10
    /// The largest payload: a snapshot travels in one message for now (see DESIGN.md).
    public static let payloadBytesMax = 64 << 20

    /// Frame kinds below this are the users'; the rest belong to the handshake.
    public static let userKindsEnd: UInt8 = 0xF0
    static let hello: UInt8 = 0xF0
    static let welcome: UInt8 = 0xF1
    static let proof: UInt8 = 0xF2
    /// Sent on an idle connection, so that the other side can tell a quiet peer from a
    /// lost one.
    static let keepalive: UInt8 = 0xF3

    /// Appends one frame to `buffer`.
    public static func append(kind: UInt8, payload: [UInt8], to buffer: inout [UInt8]) {
        precondition(payload.count <= payloadBytesMax, "a frame's payload is bounded by its sender")
        let crc = payload.withUnsafeBytes { granary_crc32c(0, $0.baseAddress, $0.count) }
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { buffer += $0 }
        buffer.append(version)
        buffer.append(kind)
        withUnsafeBytes(of: crc.littleEndian) { buffer += $0 }
        buffer += payload
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case tooLong(Int)
        case version(UInt8)
        case checksum
        public var description: String {
            switch self {
            case .tooLong(let bytes): "a frame of \(bytes) bytes exceeds the limit"
            case .version(let version): "a frame of protocol version \(version) (this node speaks \(Frame.version))"
            case .checksum: "a frame whose checksum does not match"
            }
        }
    }

    /// The first whole frame in `bytes[start...]` and the position after it, nil if more
    /// bytes are needed.
    public static func parse(
        _ bytes: [UInt8], from start: Int, payloadBytesMax: Int = payloadBytesMax
    ) throws(ParseError) -> (kind: UInt8, payload: [UInt8], end: Int)? {
        guard bytes.count - start >= headerBytes else { return nil }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        let length = Int(u32(start))
        guard length <= payloadBytesMax else { throw .tooLong(length) }
        guard bytes[start + 4] == version else { throw .version(bytes[start + 4]) }
        guard bytes.count - start - headerBytes >= length else { return nil }
        let payload = Array(bytes[(start + headerBytes)..<(start + headerBytes + length)])
        let crc = payload.withUnsafeBytes { granary_crc32c(0, $0.baseAddress, $0.count) }
        guard crc == u32(start + 6) else { throw .checksum }
        return (bytes[start + 5], payload, start + headerBytes + length)
    }
}
