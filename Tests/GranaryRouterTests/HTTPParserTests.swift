@testable import GranaryRouter
import Glibc
import Testing

private func parse(_ text: String) -> HTTPParser.Outcome {
    Array(text.utf8).withUnsafeBytes { HTTPParser().parse($0) }
}

@Suite struct HTTPParserTests {
    @Test func parsesARequestWithBody() throws {
        let text =
            "POST / HTTP/1.1\r\nHost: a\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\ncontent-length: 2\r\n\r\n{}"
        guard case .request(let request, let consumed) = parse(text + "GET / HTTP/1.1\r\n") else {
            Issue.record("expected a request"); return
        }
        #expect(consumed == text.utf8.count)
        #expect(request.method == "POST" && request.target == "/")
        #expect(request.header("x-amz-target") == "DynamoDB_20120810.GetItem")
        #expect(request.body == Array("{}".utf8))
        #expect(request.keepAlive)
    }

    @Test func waitsForMoreHeadersAndBody() {
        guard case .needMore = parse("GET / HTTP/1.1\r\nHost: a\r\n") else { Issue.record("expected needMore"); return }
        guard
            case .needBody(let total, let expects) = parse(
                "POST / HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\nabc")
        else {
            Issue.record("expected needBody"); return
        }
        #expect(total == "POST / HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n".utf8.count + 10)
        #expect(expects)
    }

    @Test func connectionSemantics() {
        guard case .request(let closing, _) = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
            case .request(let old, _) = parse("GET / HTTP/1.0\r\n\r\n"),
            case .request(let oldKept, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else { Issue.record("expected requests"); return }
        #expect(!closing.keepAlive && !old.keepAlive && oldKept.keepAlive)
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 17000) + "\r\n\r\n", HTTPParseError.headersTooLarge),
        ("POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", .bodyTooLarge),
        ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", .malformed("invalid Content-Length")),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .lengthRequired),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            .malformed("both Content-Length and chunked framing")
        ),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", .malformed("invalid chunk size")),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", .malformed("chunk not ended by CRLF")),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + String(repeating: "1\r\na\r\n", count: 100_001),
            .bodyTooLarge
        ),
        ("GET / HTTP/1.1\r\nExpect: something\r\n\r\n", .expectationFailed),
        ("GET / HTTP/3\r\n\r\n", .versionNotSupported),
        ("GET /\r\n\r\n", .malformed("malformed request line")),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", .malformed("malformed header name")),
        ("get / HTTP/1.1\r\n\r\n", .malformed("malformed method")),
    ])
    func refusesBadRequests(text: String, expected: HTTPParseError) {
        guard case .failure(let error) = parse(text) else { Issue.record("expected a failure"); return }
        #expect(error == expected)
    }

    @Test func headersWithoutTheBlankLineStillHitTheBound() {
        let endless = "GET / HTTP/1.1\r\n" + String(repeating: "X-A: b\r\n", count: 3000)
        guard case .failure(.headersTooLarge) = parse(endless) else { Issue.record("expected headersTooLarge"); return }
    }

    @Test func chunkedBodiesAreDecodedAsTheyArrive() {
        let whole =
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n"
        let firstRequestBytes = whole.utf8.count - "GET / HTTP/1.1\r\n\r\n".utf8.count
        for cut in 0..<firstRequestBytes {
            let prefix = String(decoding: Array(whole.utf8)[..<cut], as: UTF8.self)
            if case .request = parse(prefix) { Issue.record("a request before its last chunk at \(cut)") }
        }
        guard case .request(let request, let consumed) = parse(whole) else {
            Issue.record("expected a request"); return
        }
        #expect(request.body == Array("abc0123456789".utf8))
        #expect(consumed == firstRequestBytes)
    }

    @Test func responseSerialization() {
        let bytes = HTTPResponse(status: .ok, headers: [("A", "b")], body: Array("hi".utf8)).serialized(
            keepAlive: false)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\nA: b\r\nDate: "))
        #expect(text.hasSuffix(" GMT\r\nServer: Granary\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"))
        var date: [UInt8] = []
        HTTPDate.append(secondsSince1970: 784_111_777, to: &date)
        #expect(String(decoding: date, as: UTF8.self) == "Sun, 06 Nov 1994 08:49:37 GMT")
        // Against glibc's gmtime_r, over days from 1900 to 2200 and the seconds of a day.
        for seconds in stride(from: -2_208_988_800, through: 7_258_118_400, by: 86_400 * 7 + 3_599) {
            var clock = time_t(seconds)
            var parts = tm()
            gmtime_r(&clock, &parts)
            var expected = [CChar](repeating: 0, count: 64)
            let count = strftime(&expected, 64, "%a, %d %b %Y %H:%M:%S GMT", &parts)
            var written: [UInt8] = []
            HTTPDate.append(secondsSince1970: seconds, to: &written)
            #expect(
                String(decoding: written, as: UTF8.self)
                    == String(decoding: expected.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }

    @Test func connectionBufferGrowsWithinItsBound() {
        let buffer = ConnectionBuffer(capacity: 16)
        buffer.didReceive(buffer.freeSpace(forUnreadTotal: 1, limit: 64)!.count)  // 16 bytes in
        buffer.consume(10)
        let space = buffer.freeSpace(forUnreadTotal: 40, limit: 64)!
        #expect(space.count >= 34)
        #expect(buffer.unread.count == 6)
        #expect(buffer.freeSpace(forUnreadTotal: 65, limit: 64) == nil)
    }
}
