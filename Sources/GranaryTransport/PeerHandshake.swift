import Crypto

/// Who this node is to its peers, and the secret that proves a peer belongs to the
/// cluster.
public struct PeerIdentity: Sendable {
    public var cluster: String
    public var node: UInt32
    /// The cluster secret; empty when there is none (allowed on loopback only).
    public var secret: [UInt8]

    public init(cluster: String, node: UInt32, secret: [UInt8]) {
        self.cluster = cluster
        self.node = node
        self.secret = secret
    }
}

/// The handshake that opens a connection, a challenge-response in both directions:
///
///     dialer   -> hello:   cluster id, dialer's id, acceptor's id, dialer's nonce
///     acceptor -> welcome: acceptor's nonce, HMAC(secret, "accept", both ids, both nonces)
///     dialer   -> proof:   HMAC(secret, "dial", both ids, both nonces)
///
/// Each side proves it knows the secret over the other's fresh nonce, so a recorded
/// handshake cannot be replayed, and neither side sends anything else before the other
/// has proved itself (the acceptor reads only the proof; the dialer sends no data before
/// the welcome checks out).
enum PeerHandshake {
    static let nonceBytes = 16
    static let macBytes = 32
    /// Hello frames are small: a longer one is refused unread.
    static let frameBytesMax = 1024

    struct Hello: Equatable {
        var cluster: String
        var from: UInt32
        var to: UInt32
        var nonce: [UInt8]

        var payload: [UInt8] {
            var bytes: [UInt8] = []
            withUnsafeBytes(of: UInt16(cluster.utf8.count).littleEndian) { bytes += $0 }
            bytes += cluster.utf8
            withUnsafeBytes(of: from.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: to.littleEndian) { bytes += $0 }
            return bytes + nonce
        }

        init(cluster: String, from: UInt32, to: UInt32, nonce: [UInt8]) {
            (self.cluster, self.from, self.to, self.nonce) = (cluster, from, to, nonce)
        }

        init?(payload bytes: [UInt8]) {
            guard bytes.count >= 2 else { return nil }
            let length = Int(bytes[0]) | Int(bytes[1]) << 8
            guard bytes.count == 2 + length + 8 + nonceBytes,
                let cluster = String(validating: bytes[2..<(2 + length)], as: UTF8.self)
            else { return nil }
            func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
            self.init(
                cluster: cluster, from: u32(2 + length), to: u32(6 + length), nonce: Array(bytes[(10 + length)...]))
        }
    }

    static func nonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// The proof of one side ("accept" or "dial") over the hello and the acceptor's nonce.
    static func mac(_ label: String, secret: [UInt8], hello: Hello, acceptorNonce: [UInt8]) -> [UInt8] {
        var message = Array(label.utf8) + [0]
        message += hello.payload
        message += acceptorNonce
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
    }

    /// Compares two MACs in time that does not depend on where they differ.
    static func matches(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
