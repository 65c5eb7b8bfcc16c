/// An HTTP status code with its reason phrase.
public struct HTTPStatus: Sendable, Equatable {
    public let code: Int
    public let reason: String

    public init(code: Int, reason: String) {
        self.code = code
        self.reason = reason
    }

    public static let ok = HTTPStatus(code: 200, reason: "OK")
    public static let badRequest = HTTPStatus(code: 400, reason: "Bad Request")
    public static let notFound = HTTPStatus(code: 404, reason: "Not Found")
    public static let lengthRequired = HTTPStatus(code: 411, reason: "Length Required")
    public static let payloadTooLarge = HTTPStatus(code: 413, reason: "Payload Too Large")
    public static let expectationFailed = HTTPStatus(code: 417, reason: "Expectation Failed")
    public static let headersTooLarge = HTTPStatus(code: 431, reason: "Request Header Fields Too Large")
    public static let internalServerError = HTTPStatus(code: 500, reason: "Internal Server Error")
    public static let versionNotSupported = HTTPStatus(code: 505, reason: "HTTP Version Not Supported")
}

/// A response, serialized in one piece so that one send carries it.
public struct HTTPResponse: Sendable {
    public var status: HTTPStatus
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: HTTPStatus, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The bytes on the wire, with Date, Server, Content-Length and, when closing,
    /// Connection: close.
    /// Written straight into one buffer sized for head and body: no string is built and
    /// the body is copied once.
    public func serialized(version: HTTPVersion = .http11, keepAlive: Bool) -> [UInt8] {
        let crlf: [UInt8] = [0x0D, 0x0A]
        var headBytes = 128 + status.reason.utf8.count
        for (name, value) in headers { headBytes += name.utf8.count + value.utf8.count + 4 }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headBytes + body.count)
        bytes.append(contentsOf: version.text.utf8)
        bytes.append(0x20)
        bytes.append(contentsOf: String(status.code).utf8)
        bytes.append(0x20)
        bytes.append(contentsOf: status.reason.utf8)
        bytes.append(contentsOf: crlf)
        for (name, value) in headers {
            bytes.append(contentsOf: name.utf8)
            bytes.append(contentsOf: [0x3A, 0x20])
            bytes.append(contentsOf: value.utf8)
            bytes.append(contentsOf: crlf)
        }
        bytes.append(contentsOf: "Date: ".utf8)
        HTTPDate.append(secondsSince1970: HTTPDate.now(), to: &bytes)
        bytes.append(contentsOf: "\r\nServer: Granary\r\nContent-Length: ".utf8)
        bytes.append(contentsOf: String(body.count).utf8)
        bytes.append(contentsOf: crlf)
        if !keepAlive { bytes.append(contentsOf: "Connection: close\r\n".utf8) }
        bytes.append(contentsOf: crlf)
        bytes.append(contentsOf: body)
        return bytes
    }

    /// The interim response that tells a client waiting on `Expect: 100-continue` to send
    /// its body.
    public static let continueBytes: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
}
