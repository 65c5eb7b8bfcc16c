/// Parses HTTP/1.1 requests from bytes as they arrive, one request at a time, within
/// `HTTPLimits`. Pure: no I/O, so it is tested and fuzzed on its own.
///
/// Framing: a Content-Length body, a chunked one (decoded here, bounded by its decoded
/// size), or none. Another Transfer-Encoding is refused (411), as are malformed lines and
/// chunks (400), a request with both framings (400: the classic request-smuggling shape),
/// oversized headers (431) and oversized bodies (413).
public struct HTTPParser: Sendable {
    public enum Outcome: Sendable {
        /// A whole request, and how many bytes of the input it took.
        case request(HTTPRequest, consumed: Int)
        /// The headers are complete but the body is not: the whole request will take
        /// `requestBytes`. `expectsContinue` when the client sent `Expect: 100-continue` and
        /// waits for a 100 before sending the body.
        case needBody(requestBytes: Int, expectsContinue: Bool)
        /// More bytes are needed.
        case needMore
        /// The request cannot be served; answer with this status and close.
        case failure(HTTPParseError)
    }

    public init() {}

    /// Parses the request at the start of `input`.
    public func parse(_ input: UnsafeRawBufferPointer) -> Outcome {
        guard let headerEnd = findHeaderEnd(input) else {
            return input.count > HTTPLimits.headerBytesMax ? .failure(.headersTooLarge) : .needMore
        }
        if headerEnd > HTTPLimits.headerBytesMax { return .failure(.headersTooLarge) }
        let head: Head
        switch parseHead(UnsafeRawBufferPointer(rebasing: input[..<headerEnd])) {
        case .success(let parsed): head = parsed
        case .failure(let error): return .failure(error)
        }
        let bodyStart = headerEnd + 4
        if head.chunked {
            switch Self.decodeChunks(UnsafeRawBufferPointer(rebasing: input[bodyStart...])) {
            case .complete(let body, let consumed):
                let request = HTTPRequest(
                    method: head.method, target: head.target, version: head.version,
                    headers: head.headers, body: body)
                return .request(request, consumed: bodyStart + consumed)
            case .incomplete:
                return .needBody(requestBytes: input.count + 1, expectsContinue: head.expectsContinue)
            case .failure(let error):
                return .failure(error)
            }
        }
        let available = input.count - bodyStart
        if available < head.contentLength {
            return .needBody(requestBytes: bodyStart + head.contentLength, expectsContinue: head.expectsContinue)
        }
        let body = Array(input[bodyStart..<(bodyStart + head.contentLength)])
        let request = HTTPRequest(
            method: head.method, target: head.target, version: head.version,
            headers: head.headers, body: body)
        return .request(request, consumed: bodyStart + head.contentLength)
    }

    private struct Head {
        var method: String
        var target: String
        var version: HTTPVersion
        var headers: [(name: String, value: String)]
        var contentLength: Int
        var expectsContinue: Bool
        var chunked: Bool
    }

    private enum Chunks {
        case complete([UInt8], consumed: Int)
        case incomplete
        case failure(HTTPParseError)
    }

    /// A chunked body (RFC 9112, 7.1): hexadecimal sizes, each chunk's bytes and CRLF, a
    /// last chunk of size 0, trailer lines (ignored) and a blank line. The decoded body is
    /// bounded by `HTTPLimits.bodyBytesMax` (413 past it) and the chunks by
    /// `HTTPLimits.chunkCountMax`, so that tiny chunks cannot make the walk long. The walk
    /// runs again on every receive until the body is whole, so it only notes where the
    /// chunks are and copies them once, at the end.
    private static func decodeChunks(_ input: UnsafeRawBufferPointer) -> Chunks {
        var pieces: [Range<Int>] = []
        var bodyBytes = 0
        var index = 0
        var chunks = 0
        func line() -> Slice<UnsafeRawBufferPointer>?? {  // nil: not arrived; .some(nil): too long
            let limit = min(input.count, index + HTTPLimits.chunkLineBytesMax)
            var end = index
            while end + 1 < limit {
                if input[end] == 13 && input[end + 1] == 10 {
                    defer { index = end + 2 }
                    return .some(input[index..<end])
                }
                end += 1
            }
            return limit - index >= HTTPLimits.chunkLineBytesMax ? .some(nil) : nil
        }
        while true {
            guard let sizeLine = line() else { return .incomplete }
            guard let sizeLine else { return .failure(.malformed("chunk size line too long")) }
            chunks += 1
            if chunks > HTTPLimits.chunkCountMax { return .failure(.bodyTooLarge) }
            let digits = sizeLine.prefix { $0 != 59 }  // ";" starts chunk extensions
            guard !digits.isEmpty, digits.count <= 8 else { return .failure(.malformed("invalid chunk size")) }
            var size = 0
            for digit in digits {
                guard let value = hexValue(digit) else { return .failure(.malformed("invalid chunk size")) }
                size = size * 16 + value
            }
            if size == 0 { break }
            bodyBytes += size
            if bodyBytes > HTTPLimits.bodyBytesMax { return .failure(.bodyTooLarge) }
            guard input.count - index >= size + 2 else { return .incomplete }
            pieces.append(index..<(index + size))
            index += size
            guard input[index] == 13 && input[index + 1] == 10 else {
                return .failure(.malformed("chunk not ended by CRLF"))
            }
            index += 2
        }
        var trailers = 0
        while true {  // trailer lines until the blank one
            guard let trailer = line() else { return .incomplete }
            guard let trailer else { return .failure(.malformed("trailer line too long")) }
            if trailer.isEmpty {
                var body: [UInt8] = []
                body.reserveCapacity(bodyBytes)
                for piece in pieces { body.append(contentsOf: input[piece]) }
                return .complete(body, consumed: index)
            }
            trailers += 1
            if trailers > HTTPLimits.headerCountMax { return .failure(.headersTooLarge) }
        }
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: Int(byte - 48)
        case 65...70: Int(byte - 55)
        case 97...102: Int(byte - 87)
        default: nil
        }
    }

    /// The offset of the blank line's "\r\n\r\n", or nil if it has not arrived.
    private func findHeaderEnd(_ input: UnsafeRawBufferPointer) -> Int? {
        let limit = min(input.count, HTTPLimits.headerBytesMax + 4)
        guard limit >= 4 else { return nil }
        var index = 0
        while index + 3 < limit {
            if input[index + 3] != 10 { index += input[index + 3] == 13 ? 1 : 4; continue }
            if input[index] == 13 && input[index + 1] == 10 && input[index + 2] == 13 { return index }
            index += 1
        }
        return nil
    }

    private func parseHead(_ head: UnsafeRawBufferPointer) -> Result<Head, HTTPParseError> {
        var lines = head.split(separator: 10, omittingEmptySubsequences: false)[...]
        guard let requestLine = lines.popFirst() else { return .failure(.malformed("empty request")) }
        let parts = trimCR(requestLine).split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            return .failure(.malformed("malformed request line"))
        }
        guard parts[0].allSatisfy({ $0 >= 65 && $0 <= 90 }) else { return .failure(.malformed("malformed method")) }
        let version: HTTPVersion
        let versionText = String(decoding: parts[2], as: UTF8.self)
        switch versionText {
        case "HTTP/1.1": version = .http11
        case "HTTP/1.0": version = .http10
        case _ where versionText.hasPrefix("HTTP/"): return .failure(.versionNotSupported)
        default: return .failure(.malformed("malformed request line"))
        }
        var headers: [(name: String, value: String)] = []
        var contentLength: Int?
        var expectsContinue = false
        var chunked = false
        for rawLine in lines {
            let line = trimCR(rawLine)
            if headers.count >= HTTPLimits.headerCountMax { return .failure(.headersTooLarge) }
            guard let colon = line.firstIndex(of: 58), colon > line.startIndex else {
                return .failure(.malformed("malformed header line"))
            }
            let nameBytes = line[..<colon]
            // Field names are tokens: no spaces (a space before the colon is an attack on
            // request framing, and RFC 9112 says to refuse it).
            guard nameBytes.allSatisfy({ $0 > 32 && $0 < 127 }) else {
                return .failure(.malformed("malformed header name"))
            }
            let name = String(decoding: nameBytes, as: UTF8.self)
            let value = String(decoding: trimSpaces(line[(colon + 1)...]), as: UTF8.self)
            if name.caseInsensitiveEquals("Content-Length") {
                guard let length = Int(value), length >= 0, contentLength == nil || contentLength == length else {
                    return .failure(.malformed("invalid Content-Length"))
                }
                if length > HTTPLimits.bodyBytesMax { return .failure(.bodyTooLarge) }
                contentLength = length
            } else if name.caseInsensitiveEquals("Transfer-Encoding") {
                switch value.lowercased() {
                case "identity": break
                case "chunked" where !chunked: chunked = true
                default: return .failure(.lengthRequired)
                }
            } else if name.caseInsensitiveEquals("Expect") {
                guard value.lowercased() == "100-continue" else { return .failure(.expectationFailed) }
                expectsContinue = true
            }
            headers.append((name, value))
        }
        if chunked && contentLength != nil { return .failure(.malformed("both Content-Length and chunked framing")) }
        return .success(
            Head(
                method: String(decoding: parts[0], as: UTF8.self), target: String(decoding: parts[1], as: UTF8.self),
                version: version, headers: headers, contentLength: contentLength ?? 0,
                expectsContinue: expectsContinue && version == .http11, chunked: chunked))
    }

    private func trimCR(_ line: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        line.last == 13 ? line.dropLast() : line
    }

    private func trimSpaces(_ bytes: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        var slice = bytes
        while let first = slice.first, first == 32 || first == 9 { slice = slice.dropFirst() }
        while let last = slice.last, last == 32 || last == 9 { slice = slice.dropLast() }
        return slice
    }
}

/// Why a request could not be parsed, with the status to answer.
public enum HTTPParseError: Error, Equatable, Sendable {
    case malformed(String)
    case headersTooLarge
    case bodyTooLarge
    case lengthRequired
    case expectationFailed
    case versionNotSupported

    public var status: HTTPStatus {
        switch self {
        case .malformed: return .badRequest
        case .headersTooLarge: return .headersTooLarge
        case .bodyTooLarge: return .payloadTooLarge
        case .lengthRequired: return .lengthRequired
        case .expectationFailed: return .expectationFailed
        case .versionNotSupported: return .versionNotSupported
        }
    }

    public var message: String {
        switch self {
        case .malformed(let detail): return detail
        case .headersTooLarge:
            return "request headers exceed \(HTTPLimits.headerBytesMax) bytes or \(HTTPLimits.headerCountMax) lines"
        case .bodyTooLarge: return "request body exceeds \(HTTPLimits.bodyBytesMax) bytes"
        case .lengthRequired:
            return "a request body needs a Content-Length or chunked framing (no other transfer coding is supported)"
        case .expectationFailed: return "only the 100-continue expectation is supported"
        case .versionNotSupported: return "only HTTP/1.1 and HTTP/1.0 are supported"
        }
    }
}
