/// One parsed HTTP/1.1 request. Header names are kept as sent and looked up without
/// regard to case, as HTTP requires.
public struct HTTPRequest: Sendable {
    public var method: String
    public var target: String
    public var version: HTTPVersion
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The body as a router parsed it (see `HTTPRouter`), so that the handler, which knows
    /// its type, does not parse it again. HTTP itself never reads it.
    public var parsedBody: (any Sendable)? = nil
    /// Set by a router that has checked the request's signature (see `HTTPRouter`), so that
    /// a request moved to another core is not checked twice. Never read from the wire.
    public var verified = false
    /// Set on a request another node of the cluster sent whole (`RequestForwarder`): it is
    /// answered here, never sent on again. Never read from the wire.
    public var forwarded = false

    public init(
        method: String, target: String, version: HTTPVersion, headers: [(name: String, value: String)], body: [UInt8]
    ) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    /// Whether the client wants the connection kept open after this request (HTTP/1.1's
    /// default, HTTP/1.0's opt-in).
    public var keepAlive: Bool {
        let connection = header("Connection")?.lowercased()
        switch version {
        case .http11: return connection != "close"
        case .http10: return connection == "keep-alive"
        }
    }
}

public enum HTTPVersion: Sendable, Equatable {
    case http10, http11

    var text: String { self == .http11 ? "HTTP/1.1" : "HTTP/1.0" }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        utf8.count == other.utf8.count && zip(utf8, other.utf8).allSatisfy { asciiLower($0) == asciiLower($1) }
    }
}

@inline(__always)
func asciiLower(_ byte: UInt8) -> UInt8 {
    byte >= 65 && byte <= 90 ? byte + 32 : byte
}
