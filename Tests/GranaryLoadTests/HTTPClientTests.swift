import Foundation
import GranaryModel
import Testing
@testable import GranaryLoad
@testable import GranaryRouter

@Suite struct HTTPClientTests {
    func parse(_ text: String) -> HTTPResponseHead.Parse {
        Array(text.utf8).withUnsafeBytes { HTTPResponseHead.parse($0) }
    }

    @Test func readsTheHeadsItNeeds() {
        guard case .complete(let head) = parse("HTTP/1.1 200 OK\r\nContent-Type: x\r\ncontent-LENGTH:  12 \r\n\r\n{}")
        else {
            Issue.record("not parsed")
            return
        }
        #expect(head.status == 200 && head.contentLength == 12 && !head.closes && head.headBytes == 58)
        guard case .complete(let old) = parse("HTTP/1.0 400 Bad\r\nContent-Length: 2\r\n\r\n") else { return }
        #expect(old.closes)  // HTTP/1.0 without keep-alive
        guard case .complete(let kept) = parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n")
        else { return }
        #expect(!kept.closes)
        guard case .complete(let chunked) = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") else {
            return
        }
        #expect(chunked.chunked && chunked.contentLength == nil && !chunked.closes)
        guard case .complete(let untilClose) = parse("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n") else { return }
        #expect(untilClose.closes && untilClose.contentLength == nil)
        #expect(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n") == .needMore)
        #expect(parse("SSH-2.0-OpenSSH\r\n\r\n") != .needMore)
        if case .complete = parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n") {
            Issue.record("negative length accepted")
        }
        if case .complete = parse("HTTP/1.1 200 OK\r\nno colon\r\n\r\n") { Issue.record("bad header accepted") }
    }

    @Test func decodesChunkedBodies() {
        let bytes = Array("5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nTrailer: t\r\n\r\nNEXT".utf8)
        bytes.withUnsafeBytes { buffer in
            var position = 0
            var body: [UInt8] = []
            loop: while true {
                switch ChunkedBody.next(buffer, at: position) {
                case .chunk(let range, let next):
                    body += buffer[range]
                    position = next
                case .end(let next):
                    #expect(next == bytes.count - 4)
                    break loop
                case .needMore, .invalid:
                    Issue.record("chunked body not decoded")
                    break loop
                }
            }
            #expect(String(decoding: body, as: UTF8.self) == "hello, world")
            #expect(ChunkedBody.next(UnsafeRawBufferPointer(rebasing: buffer[0..<6]), at: 0) == .needMore)
        }
        Array("zz\r\n".utf8).withUnsafeBytes { #expect(ChunkedBody.next($0, at: 0) == .invalid) }
    }

    @Test func signedRequestsPassTheServersVerifier() throws {
        let signer = RequestSigner(Credentials(accessKey: "AKIDEXAMPLE", secretKey: "secret", region: "eu-west-1"))
        var bytes: [UInt8] = []
        DynamoClient.encode(
            "GetItem", body: #"{"TableName":"t"}"#, host: "127.0.0.1:8000", signer: signer, into: &bytes)
        let outcome = bytes.withUnsafeBytes { HTTPParser().parse($0) }
        guard case .request(let request, let consumed) = outcome else {
            Issue.record("the server cannot parse the client's request")
            return
        }
        #expect(consumed == bytes.count)
        #expect(request.header("X-Amz-Target") == "DynamoDB_20120810.GetItem")
        try SigV4Verifier(secrets: ["AKIDEXAMPLE": "secret"]).verify(request)
        #expect(throws: DynamoError.self) { try SigV4Verifier(secrets: ["AKIDEXAMPLE": "other"]).verify(request) }
    }

    @Test func errorTypesComeFromTheBody() {
        let body = Array(
            #"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"x"}"#.utf8)
        #expect(DynamoClient.errorType(status: 400, body: body) == "ConditionalCheckFailedException")
        #expect(DynamoClient.errorType(status: 502, body: Array("<html>".utf8)) == "HTTP502")
    }

    @Test func endpointsParse() throws {
        let local = try Endpoint("http://localhost:8000")
        #expect(local.address.port == 8000 && local.hostHeader == "localhost:8000")
        #expect(try Endpoint("http://127.0.0.1").address.port == 80)
        #expect(try Endpoint("http://[::1]:9000/").address.port == 9000)
        #expect(throws: Endpoint.Invalid.self) { try Endpoint("https://dynamodb.us-east-1.amazonaws.com") }
        #expect(throws: Endpoint.Invalid.self) { try Endpoint("http://127.0.0.1:notaport") }
    }
}
