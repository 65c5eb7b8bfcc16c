import CShims
import Glibc

/// An IPv4 or IPv6 address and port, parsed from "HOST:PORT" or "[HOST]:PORT".
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: UInt16
    let storage: [UInt8]  // a sockaddr_in or sockaddr_in6
    public let family: Int32

    /// Parses "127.0.0.1:8000", "[::1]:8000" or "localhost:8000" (numeric addresses and
    /// "localhost" only: a storage node is configured with addresses, not names).
    public init?(_ text: String) {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        if host == "localhost" { host = "127.0.0.1" }
        guard let port = UInt16(portText) else { return nil }
        self.init(host: String(host), port: port)
    }

    public init?(host: String, port: UInt16) {
        self.host = host
        self.port = port
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            storage = withUnsafeBytes(of: v4) { Array($0) }
            family = AF_INET
            return
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            storage = withUnsafeBytes(of: v6) { Array($0) }
            family = AF_INET6
            return
        }
        return nil
    }

    public var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Copies the sockaddr into `target`; returns its length.
    func copy(to target: UnsafeMutableRawPointer, capacity: Int) -> socklen_t {
        precondition(storage.count <= capacity, "socket address larger than its scratch space")
        storage.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return socklen_t(storage.count)
    }

    /// Opens a listening TCP socket with SO_REUSEPORT, so that each core can have its own
    /// listener on the same address and the kernel spreads connections among them.
    public func listen(backlog: Int32 = 1024) throws(Errno) -> Int32 {
        let socket = try systemCall("socket") {
            Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(Errno) {
            var one: Int32 = 1
            let size = socklen_t(MemoryLayout<Int32>.size)
            _ = try systemCall("setsockopt") { setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &one, size) }
            _ = try systemCall("setsockopt") { setsockopt(socket, SOL_SOCKET, SO_REUSEPORT, &one, size) }
            _ = try systemCall("setsockopt") { setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, size) }
            _ = try systemCall("bind") {
                storage.withUnsafeBytes { bytes in
                    Glibc.bind(
                        socket, bytes.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(bytes.count))
                }
            }
            _ = try systemCall("listen") { Glibc.listen(socket, backlog) }
            return socket
        } catch {
            Glibc.close(socket)
            throw error
        }
    }

    /// The port a listening socket is bound to (useful after binding port 0).
    public static func boundPort(of socket: Int32) -> UInt16? {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        guard result == 0 else { return nil }
        return withUnsafeBytes(of: address) { bytes in
            // sin_port and sin6_port sit at the same offset (2), in network order.
            UInt16(bigEndian: bytes.load(fromByteOffset: 2, as: UInt16.self))
        }
    }
}
