import Foundation
import GranaryIO
import GranaryModel
import GranarySigV4

/// AWS credentials for signing requests, and the region they are scoped to.
public struct Credentials: Sendable {
    public let accessKey: String
    public let secretKey: String
    public let region: String

    public init(accessKey: String, secretKey: String, region: String) {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
    }
}

/// Signs requests with SigV4, keeping the day's signing key and the second's date text.
final class RequestSigner {
    private let credentials: Credentials
    private var second = 0
    private var amzDate = ""
    private var date = ""
    private var key = SigV4.signingKey(secret: "", date: "", region: "", service: "")
    private let formatter = SigV4.formatter()

    init(_ credentials: Credentials) { self.credentials = credentials }

    /// The X-Amz-Date and Authorization headers for a POST / of `body` to `target`.
    func headers(host: String, target: String, body: [UInt8], now: Date = Date()) -> [(String, String)] {
        let thisSecond = Int(now.timeIntervalSince1970)
        if thisSecond != second {
            second = thisSecond
            amzDate = formatter.string(from: now)
            let today = String(amzDate.prefix(8))
            if today != date {
                date = today
                key = SigV4.signingKey(
                    secret: credentials.secretKey, date: date, region: credentials.region, service: "dynamodb")
            }
        }
        let scope = "\(date)/\(credentials.region)/dynamodb/aws4_request"
        let signedHeaders = "content-type;host;x-amz-date;x-amz-target"
        let signature = SigV4.signature(
            method: "POST", path: "/", query: "",
            headers: [
                ("content-type", DynamoClient.contentType), ("host", host), ("x-amz-date", amzDate),
                ("x-amz-target", target),
            ],
            signedHeaders: signedHeaders, payloadHash: SigV4.payloadHash(body), amzDate: amzDate, scope: scope, key: key
        )
        return [
            ("X-Amz-Date", amzDate),
            (
                "Authorization",
                "\(SigV4.algorithm) Credential=\(credentials.accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
            ),
        ]
    }
}

/// The answer to one DynamoDB call.
public enum CallOutcome: Sendable {
    case success([UInt8])
    /// DynamoDB's error type (the `__type` after '#'), "HTTP<status>" for an answer that is
    /// not a DynamoDB error, or a connection failure's name.
    case failure(String)
}

/// One client's connection to a DynamoDB endpoint, speaking the JSON 1.0 protocol.
public final class DynamoClient {
    static let contentType = "application/x-amz-json-1.0"
    private let connection: HTTPClientConnection
    private let endpoint: Endpoint
    private let signer: RequestSigner?
    private var request: [UInt8] = []

    public init(reactor: Reactor, endpoint: Endpoint, credentials: Credentials?, timeout: Duration) {
        connection = HTTPClientConnection(reactor: reactor, endpoint: endpoint, timeout: timeout)
        self.endpoint = endpoint
        signer = credentials.map(RequestSigner.init)
    }

    public func close() { connection.close() }

    /// Calls `operation` (such as "GetItem") with a JSON body.
    public func call(_ operation: String, _ body: String) async -> CallOutcome {
        Self.encode(operation, body: body, host: endpoint.hostHeader, signer: signer, into: &request)
        let response: HTTPClientResponse
        do {
            response = try await connection.exchange(request)
        } catch {
            return .failure(error.typeName)
        }
        if response.status == 200 { return .success(response.body) }
        return .failure(Self.errorType(status: response.status, body: response.body))
    }

    /// The bytes of a request: POST / with the JSON 1.0 headers, signed if there is a signer.
    static func encode(
        _ operation: String, body: String, host: String, signer: RequestSigner?, into request: inout [UInt8]
    ) {
        let bodyBytes = Array(body.utf8)
        let target = "DynamoDB_20120810.\(operation)"
        request.removeAll(keepingCapacity: true)
        request += "POST / HTTP/1.1\r\nHost: ".utf8
        request += host.utf8
        request += "\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: ".utf8
        request += target.utf8
        request += "\r\nContent-Length: ".utf8
        request += String(bodyBytes.count).utf8
        request += "\r\n".utf8
        if let signer {
            for (name, value) in signer.headers(host: host, target: target, body: bodyBytes) {
                request += "\(name): \(value)\r\n".utf8
            }
        }
        request += "\r\n".utf8
        request += bodyBytes
    }

    /// The error type named in a DynamoDB error body, or "HTTP<status>".
    static func errorType(status: Int, body: [UInt8]) -> String {
        if case .object(let fields)? = try? JSON.parse(body), case .string(let type)? = fields["__type"] {
            return String(type.split(separator: "#").last ?? Substring(type))
        }
        return "HTTP\(status)"
    }
}
