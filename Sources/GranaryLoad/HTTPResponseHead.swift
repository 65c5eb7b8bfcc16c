/// The status line and the headers of an HTTP/1.x response, as far as a client reading
/// DynamoDB answers needs them.
struct HTTPResponseHead: Equatable {
    var status: Int
    var headBytes: Int  // through the blank line
    var contentLength: Int?
    var chunked = false
    var closes = false  // the server will close the connection after this response

    enum Parse: Equatable {
        case needMore
        case invalid(String)
        case complete(HTTPResponseHead)
    }

    /// Parses bytes, not strings: this runs once per response, and a load generator must
    /// not be slower than the server it measures.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Parse {
        guard let end = headEnd(bytes) else { return .needMore }
        guard let firstLineEnd = ChunkedBody.lineEnd(bytes, from: 0) else { return .needMore }
        // "HTTP/1.x NNN reason"
        guard firstLineEnd >= 12, bytes[0] == UInt8(ascii: "H"), bytes[4] == UInt8(ascii: "/"),
            bytes[5] == UInt8(ascii: "1"),
            bytes[8] == UInt8(ascii: " "), let status = decimal(bytes, 9..<12), (100...599).contains(status)
        else {
            return .invalid("status line '\(String(decoding: bytes[0..<min(firstLineEnd, 80)], as: UTF8.self))'")
        }
        var head = HTTPResponseHead(status: status, headBytes: end + 4)
        var keepAlive = bytes[7] == UInt8(ascii: "1")
        var lineStart = firstLineEnd + 2
        while lineStart < end {
            let lineEnd = ChunkedBody.lineEnd(bytes, from: lineStart) ?? end
            defer { lineStart = lineEnd + 2 }
            guard let colon = (lineStart..<lineEnd).first(where: { bytes[$0] == UInt8(ascii: ":") }) else {
                return .invalid(
                    "header line '\(String(decoding: bytes[lineStart..<min(lineEnd, lineStart + 80)], as: UTF8.self))'")
            }
            var valueStart = colon + 1
            while valueStart < lineEnd && (bytes[valueStart] == 32 || bytes[valueStart] == 9) { valueStart += 1 }
            var valueEnd = lineEnd
            while valueEnd > valueStart && (bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9) { valueEnd -= 1 }
            let name = lineStart..<colon
            if nameIs(bytes, name, "content-length") {
                guard let length = decimal(bytes, valueStart..<valueEnd) else {
                    return .invalid("Content-Length '\(String(decoding: bytes[valueStart..<valueEnd], as: UTF8.self))'")
                }
                head.contentLength = length
            } else if nameIs(bytes, name, "transfer-encoding") {
                head.chunked = valueEnd - valueStart >= 7 && nameIs(bytes, valueEnd - 7..<valueEnd, "chunked")
            } else if nameIs(bytes, name, "connection") {
                let value = String(decoding: bytes[valueStart..<valueEnd], as: UTF8.self).lowercased()
                if value.contains("close") { keepAlive = false }
                if value.contains("keep-alive") { keepAlive = true }
            }
        }
        if head.chunked { head.contentLength = nil }
        // Interim and bodiless answers have no body whatever their headers say.
        if status == 100 || status == 204 || status == 304 { head.contentLength = 0 }
        head.closes = !keepAlive || (head.contentLength == nil && !head.chunked)
        return .complete(head)
    }

    /// Whether `bytes[range]` equals the lowercase ASCII `name`, ignoring case.
    static func nameIs(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ name: StaticString) -> Bool {
        guard range.count == name.utf8CodeUnitCount else { return false }
        let expected = name.utf8Start
        for (offset, index) in range.enumerated() where bytes[index] | 0x20 != expected[offset] {
            return false
        }
        return true
    }

    /// A non-negative decimal of at most 18 digits, or nil.
    static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 18 else { return nil }
        var value = 0
        for index in range {
            let digit = Int(bytes[index]) - 48
            guard (0...9).contains(digit) else { return nil }
            value = value * 10 + digit
        }
        return value
    }

    /// The offset of "\r\n\r\n", if the head is complete.
    static func headEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index
        }
        return nil
    }
}

/// Chunked transfer coding: a hex size line, that many bytes, CRLF; a zero size ends the
/// body (trailers, if any, up to a blank line).
enum ChunkedBody: Equatable {
    case needMore
    case invalid
    case chunk(Range<Int>, next: Int)
    case end(next: Int)

    static func next(_ bytes: UnsafeRawBufferPointer, at start: Int) -> ChunkedBody {
        guard let lineEnd = lineEnd(bytes, from: start) else { return .needMore }
        let sizeText = String(decoding: bytes[start..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
        guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
            return .invalid
        }
        let dataStart = lineEnd + 2
        if size == 0 {
            // Trailers: lines until an empty one.
            var position = dataStart
            while true {
                guard let end = self.lineEnd(bytes, from: position) else { return .needMore }
                if end == position { return .end(next: end + 2) }
                position = end + 2
            }
        }
        guard bytes.count >= dataStart + size + 2 else { return .needMore }
        guard bytes[dataStart + size] == 13, bytes[dataStart + size + 1] == 10 else { return .invalid }
        return .chunk(dataStart..<dataStart + size, next: dataStart + size + 2)
    }

    static func lineEnd(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var index = start
        while index + 1 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 { return index }
            index += 1
        }
        return nil
    }
}
