import Glibc
import GranaryIO

/// Where requests go: an `http://HOST:PORT` URL, its name resolved once at start.
public struct Endpoint: Sendable, CustomStringConvertible {
    public let address: SocketAddress
    /// The Host header: the URL's host and port as written.
    public let hostHeader: String
    public var description: String { "http://\(hostHeader)" }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public init(_ url: String) throws(Invalid) {
        guard url.hasPrefix("http://") else {
            throw Invalid(description: "endpoint '\(url)': only http:// URLs are supported (no TLS yet)")
        }
        var rest = url.dropFirst("http://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        var host = String(rest)
        var port: UInt16 = 80
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let parsed = UInt16(rest[rest.index(after: colon)...]) else {
                throw Invalid(description: "endpoint '\(url)': the port is not a number")
            }
            port = parsed
            host = String(rest[..<colon])
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let numeric = Self.resolve(host), let address = SocketAddress(host: numeric, port: port) else {
            throw Invalid(description: "endpoint '\(url)': cannot resolve '\(host)'")
        }
        self.address = address
        hostHeader = String(rest)
    }

    /// The first address getaddrinfo gives for `host`, as numeric text.
    static func resolve(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard
            getnameinfo(
                first.pointee.ai_addr, first.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST)
                == 0
        else {
            return nil
        }
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An HTTP response as the load generator needs it.
public struct HTTPClientResponse: Sendable {
    public let status: Int
    public let body: [UInt8]
}

/// Why a request has no response.
public enum HTTPClientError: Error, Equatable, CustomStringConvertible {
    case connect(Errno)
    case transport(Errno)
    case closed  // the server closed the connection before a whole response
    case malformed(String)
    case tooLarge

    /// The name the run counts this error under.
    public var typeName: String {
        switch self {
        case .connect: "ConnectionRefused"
        case .transport(let errno): errno == .canceled ? "Timeout" : "ConnectionReset"
        case .closed: "ConnectionClosed"
        case .malformed: "MalformedResponse"
        case .tooLarge: "ResponseTooLarge"
        }
    }

    public var description: String {
        switch self {
        case .connect(let errno): "cannot connect: \(errno)"
        case .transport(let errno): "connection failed: \(errno)"
        case .closed: "the server closed the connection mid-response"
        case .malformed(let why): "malformed response: \(why)"
        case .tooLarge: "response larger than \(HTTPClientConnection.responseBytesMax) bytes"
        }
    }
}

/// One keep-alive HTTP/1.1 connection of one client, on that client's reactor: one request
/// at a time. It connects when first used and again after the server closes it (an
/// HTTP/1.0 server closes after every response).
public final class HTTPClientConnection {
    public static let responseBytesMax = 64 << 20
    static let headBytesMax = 64 << 10

    private let reactor: Reactor
    private let endpoint: Endpoint
    private var socket: Int32 = -1
    private var buffer: UnsafeMutableRawBufferPointer
    private var filled = 0
    private var sendBuffer: UnsafeMutableRawBufferPointer

    /// How long a response may take to arrive, from the request's send.
    private let timeout: Duration

    public init(reactor: Reactor, endpoint: Endpoint, timeout: Duration) {
        self.reactor = reactor
        self.timeout = timeout
        self.endpoint = endpoint
        buffer = .allocate(byteCount: 64 << 10, alignment: 16)
        sendBuffer = .allocate(byteCount: 16 << 10, alignment: 16)
    }

    deinit {
        if socket >= 0 { Glibc.close(socket) }
        buffer.deallocate()
        sendBuffer.deallocate()
    }

    public func close() {
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
        filled = 0
    }

    /// Sends one request (its whole bytes) and reads its response.
    public func exchange(_ request: [UInt8]) async throws(HTTPClientError) -> HTTPClientResponse {
        if socket < 0 {
            do { socket = try await reactor.connect(to: endpoint.address) } catch { throw .connect(error) }
        }
        if request.count > sendBuffer.count {
            sendBuffer.deallocate()
            sendBuffer = .allocate(byteCount: request.count, alignment: 16)
        }
        sendBuffer.copyBytes(from: request)
        do {
            try await reactor.sendAll(socket, UnsafeRawBufferPointer(rebasing: sendBuffer[0..<request.count]))
        } catch {
            close()
            throw .transport(error)
        }
        do {
            return try await readResponse()
        } catch {
            close()
            throw error
        }
    }

    private func receiveMore() async throws(HTTPClientError) {
        if filled == buffer.count {
            guard buffer.count < Self.responseBytesMax else { throw .tooLarge }
            let larger = UnsafeMutableRawBufferPointer.allocate(
                byteCount: min(buffer.count * 2, Self.responseBytesMax), alignment: 16)
            larger.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[0..<filled]))
            buffer.deallocate()
            buffer = larger
        }
        let count: Int
        do {
            count = try await reactor.receive(
                socket, into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]), timeout: timeout)
        } catch {
            throw .transport(error)
        }
        if count == 0 { throw .closed }
        filled += count
    }

    private func readResponse() async throws(HTTPClientError) -> HTTPClientResponse {
        while true {
            var head = HTTPResponseHead.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<filled]))
            while case .needMore = head {
                guard filled < Self.headBytesMax else {
                    throw .malformed("headers longer than \(Self.headBytesMax) bytes")
                }
                try await receiveMore()
                head = HTTPResponseHead.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<filled]))
            }
            guard case .complete(let parsed) = head else {
                if case .invalid(let why) = head { throw .malformed(why) }
                preconditionFailure("unreachable")
            }
            let bodyStart = parsed.headBytes
            let body: [UInt8]
            let consumed: Int
            if let length = parsed.contentLength {
                guard length <= Self.responseBytesMax - bodyStart else { throw .tooLarge }
                while filled < bodyStart + length { try await receiveMore() }
                body = Array(buffer[bodyStart..<bodyStart + length])
                consumed = bodyStart + length
            } else if parsed.chunked {
                (body, consumed) = try await readChunked(from: bodyStart)
            } else {
                // No length: the body runs to the end of the connection.
                while true {
                    do { try await receiveMore() } catch .closed { break }
                }
                body = Array(buffer[bodyStart..<filled])
                consumed = filled
            }
            // Keep any bytes past this response (there should be none: one request at a time).
            let leftover = filled - consumed
            if leftover > 0 {
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + consumed, byteCount: leftover)
            }
            filled = leftover
            if parsed.status == 100 { continue }  // an interim answer; the real one follows
            if parsed.closes { close() }
            return HTTPClientResponse(status: parsed.status, body: body)
        }
    }

    private func readChunked(from start: Int) async throws(HTTPClientError) -> ([UInt8], Int) {
        var decoded: [UInt8] = []
        var position = start
        while true {
            switch ChunkedBody.next(UnsafeRawBufferPointer(rebasing: buffer[0..<filled]), at: position) {
            case .needMore:
                try await receiveMore()
            case .invalid:
                throw .malformed("bad chunked encoding")
            case .chunk(let range, let next):
                decoded += buffer[range]
                guard decoded.count <= Self.responseBytesMax else { throw .tooLarge }
                position = next
            case .end(let next):
                return (decoded, next)
            }
        }
    }
}
