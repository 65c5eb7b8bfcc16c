import Crypto
import Foundation
import GranaryModel
import GranarySigV4

/// AWS Signature Version 4, checked on every request when credentials are configured.
///
/// The client signs a canonical form of the request (method, path, query, the headers it
/// names, the body's SHA-256) with a key derived from its secret, the date, the region and
/// the service; the server derives the same key from its copy of the secret and compares.
/// See "Create a signed AWS API request" in the IAM user guide.
public struct SigV4Verifier: Sendable {
    /// Access key id → secret access key.
    public let secrets: [String: String]
    /// How far a request's X-Amz-Date may be from the server's clock (AWS: 15 minutes).
    public static let clockSkewSeconds = 15 * 60

    public init(secrets: [String: String]) { self.secrets = secrets }

    /// Reads a credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line
    /// (whitespace, ':' or '=' between them); blank lines and `#` comments are skipped.
    public static func load(path: String) throws -> SigV4Verifier {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var secrets: [String: String] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" || $0 == "=" })
            guard parts.count == 2 else {
                throw CredentialsFileError(
                    description: "\(path):\(number + 1): expected ACCESS_KEY_ID SECRET_ACCESS_KEY")
            }
            secrets[String(parts[0])] = String(parts[1])
        }
        guard !secrets.isEmpty else { throw CredentialsFileError(description: "\(path): no credentials in the file") }
        return SigV4Verifier(secrets: secrets)
    }

    public struct CredentialsFileError: Error, CustomStringConvertible {
        public let description: String
    }

    static func coral(_ type: String, _ message: String) -> DynamoError {
        DynamoError(type, message, namespace: "com.amazon.coral.service")
    }

    /// Throws AWS's error when the request is not signed by a known key.
    func verify(_ request: HTTPRequest, now: Date = Date()) throws(DynamoError) {
        guard let authorization = request.header("Authorization") else {
            throw Self.coral("MissingAuthenticationTokenException", "Request is missing Authentication Token")
        }
        let prefix = "AWS4-HMAC-SHA256 "
        guard authorization.hasPrefix(prefix) else {
            throw Self.coral(
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization=\(authorization)"
            )
        }
        var fields: [String: String] = [:]
        for part in authorization.dropFirst(prefix.count).split(separator: ",") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
        }
        guard let credential = fields["Credential"], let signedHeaders = fields["SignedHeaders"],
            let signature = fields["Signature"]
        else {
            throw Self.coral(
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization=\(authorization)"
            )
        }
        let scope = credential.split(separator: "/").map(String.init)
        guard scope.count == 5, scope[4] == "aws4_request" else {
            throw Self.coral("IncompleteSignatureException", "Credential should be scoped to a valid region. ")
        }
        guard let secret = secrets[scope[0]] else {
            throw Self.coral("UnrecognizedClientException", "The security token included in the request is invalid.")
        }
        guard let amzDate = request.header("X-Amz-Date"), let signedAt = Self.parse(amzDate) else {
            throw Self.coral(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        }
        let skew = now.timeIntervalSince(signedAt)
        if abs(skew) > Double(Self.clockSkewSeconds) {
            let format = SigV4.formatter()
            let nowText = format.string(from: now)
            if skew > 0 {
                throw Self.coral(
                    "InvalidSignatureException",
                    "Signature expired: \(amzDate) is now earlier than \(format.string(from: now.addingTimeInterval(-Double(Self.clockSkewSeconds)))) (\(nowText) - 15 min.)"
                )
            }
            throw Self.coral(
                "InvalidSignatureException",
                "Signature not yet current: \(amzDate) is still later than \(format.string(from: now.addingTimeInterval(Double(Self.clockSkewSeconds)))) (\(nowText) + 15 min.)"
            )
        }
        let expected = Self.signature(
            request: request, signedHeaders: signedHeaders, amzDate: amzDate,
            scope: scope[1...3].joined(separator: "/") + "/aws4_request",
            date: scope[1], region: scope[2], service: scope[3], secret: secret)
        guard Self.constantTimeEquals(expected, signature) else {
            throw Self.coral(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
            )
        }
    }

    static func signature(
        request: HTTPRequest, signedHeaders: String, amzDate: String, scope: String,
        date: String, region: String, service: String, secret: String
    ) -> String {
        let headers = signedHeaders.split(separator: ";").map { name in
            let name = name.lowercased()
            let values = request.headers.filter { $0.name.lowercased() == name }.map { SigV4.collapseSpaces($0.value) }
            return (name: name, value: values.joined(separator: ","))
        }
        let (path, query) = splitTarget(request.target)
        return SigV4.signature(
            method: request.method, path: path, query: query, headers: headers,
            signedHeaders: signedHeaders, payloadHash: SigV4.payloadHash(request.body),
            amzDate: amzDate, scope: scope,
            key: SigV4.signingKey(secret: secret, date: date, region: region, service: service))
    }

    /// The canonical URI and query: DynamoDB's requests go to "/", without a query; a
    /// query is sorted by name as SigV4 requires.
    static func splitTarget(_ target: String) -> (String, String) {
        guard let mark = target.firstIndex(of: "?") else { return (target.isEmpty ? "/" : target, "") }
        let query = target[target.index(after: mark)...].split(separator: "&").map(String.init).sorted().joined(
            separator: "&")
        return (String(target[..<mark]), query)
    }

    static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let a = Array(lhs.utf8), b = Array(rhs.utf8)
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    static func parse(_ amzDate: String) -> Date? { SigV4.formatter().date(from: amzDate) }
}
