import Crypto
import Foundation

/// AWS Signature Version 4: the parts both sides compute. The server (GranaryRouter's
/// verifier) and the load generator (GranaryLoad's signer) derive the same signature from
/// the same canonical request, so they share this code rather than keep two copies that
/// could drift apart. See "Create a signed AWS API request" in the IAM user guide.
public enum SigV4 {
    public static let algorithm = "AWS4-HMAC-SHA256"

    /// The key for one day, region and service, derived from the secret by an HMAC chain.
    /// It changes once a day, so a signer computes it once per date.
    public static func signingKey(secret: String, date: String, region: String, service: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array("AWS4\(secret)".utf8))
        for part in [date, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        return key
    }

    /// The hex signature of a request. `headers` are the signed headers' lowercased names
    /// and values (several values of one name joined by ","), in `signedHeaders` order.
    public static func signature(
        method: String, path: String, query: String, headers: [(name: String, value: String)],
        signedHeaders: String, payloadHash: String, amzDate: String, scope: String, key: SymmetricKey
    ) -> String {
        var canonicalHeaders = ""
        for (name, value) in headers { canonicalHeaders += "\(name):\(collapseSpaces(value))\n" }
        let canonicalRequest = [method, path, query, canonicalHeaders, signedHeaders, payloadHash].joined(
            separator: "\n")
        let stringToSign = [algorithm, amzDate, scope, hex(SHA256.hash(data: Array(canonicalRequest.utf8)))].joined(
            separator: "\n")
        return hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
    }

    /// The payload's SHA-256 in hex, as the canonical request carries it.
    public static func payloadHash<Bytes: ContiguousBytes>(_ body: Bytes) -> String {
        body.withUnsafeBytes { hex(SHA256.hash(data: $0)) }
    }

    /// Header values are trimmed and inner runs of spaces collapsed to one.
    public static func collapseSpaces(_ value: String) -> String {
        value.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true).joined(
            separator: " ")
    }

    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var output: [UInt8] = []
        output.reserveCapacity(64)
        for byte in digest { output += [digits[Int(byte >> 4)], digits[Int(byte & 15)]] }
        return String(decoding: output, as: UTF8.self)
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC, the X-Amz-Date format.
    public static func formatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter
    }
}
