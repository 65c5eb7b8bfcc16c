/// Parses HTTP/1.1 requests from bytes as they arrive, one request at a time, within
/// `HTTPLimits`. Pure: no I/O, so it is tested and fuzzed on its own.
///
/// Supported framing is what AWS SDKs send: a Content-Length body, or none. A
/// Transfer-Encoding other than identity is refused (411), as are malformed lines (400),
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
        let available = input.count - bodyStart
        if available < head.contentLength {
            return .needBody(requestBytes: bodyStart + head.contentLength, expectsContinue: head.expectsContinue)
        }
        let body = Array(input[bodyStart..<(bodyStart + head.contentLength)])
        let request = HTTPRequest(method: head.method, target: head.target, version: head.version,
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
        for rawLine in lines {
            let line = trimCR(rawLine)
            if headers.count >= HTTPLimits.headerCountMax { return .failure(.headersTooLarge) }
            guard let colon = line.firstIndex(of: 58), colon > line.startIndex else {
                return .failure(.malformed("malformed header line"))
            }
            let nameBytes = line[..<colon]
            // Field names are tokens: no spaces (a space before the colon is an attack on
            // request framing, and RFC 9112 says to refuse it).
            guard nameBytes.allSatisfy({ $0 > 32 && $0 < 127 }) else { return .failure(.malformed("malformed header name")) }
            let name = String(decoding: nameBytes, as: UTF8.self)
            let value = String(decoding: trimSpaces(line[(colon + 1)...]), as: UTF8.self)
            if name.caseInsensitiveEquals("Content-Length") {
                guard let length = Int(value), length >= 0, contentLength == nil || contentLength == length else {
                    return .failure(.malformed("invalid Content-Length"))
                }
                if length > HTTPLimits.bodyBytesMax { return .failure(.bodyTooLarge) }
                contentLength = length
            } else if name.caseInsensitiveEquals("Transfer-Encoding") && value.lowercased() != "identity" {
                return .failure(.lengthRequired)
            } else if name.caseInsensitiveEquals("Expect") {
                guard value.lowercased() == "100-continue" else { return .failure(.expectationFailed) }
                expectsContinue = true
            }
            headers.append((name, value))
        }
        return .success(Head(
            method: String(decoding: parts[0], as: UTF8.self), target: String(decoding: parts[1], as: UTF8.self),
            version: version, headers: headers, contentLength: contentLength ?? 0,
            expectsContinue: expectsContinue && version == .http11))
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
        case .headersTooLarge: return "request headers exceed \(HTTPLimits.headerBytesMax) bytes or \(HTTPLimits.headerCountMax) lines"
        case .bodyTooLarge: return "request body exceeds \(HTTPLimits.bodyBytesMax) bytes"
        case .lengthRequired: return "a request body needs a Content-Length (chunked transfer encoding is not supported)"
        case .expectationFailed: return "only the 100-continue expectation is supported"
        case .versionNotSupported: return "only HTTP/1.1 and HTTP/1.0 are supported"
        }
    }
}
