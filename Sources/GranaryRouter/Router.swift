import GranaryIO

/// The API front end's entry: which requests the node answers, and how.
///
/// Today it answers the health check; the DynamoDB operations arrive with the API work and
/// until then a DynamoDB client gets DynamoDB's own error for an operation the endpoint
/// does not serve, not a hang or a 500.
public struct Router: Sendable {
    public init() {}

    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        switch (request.method, request.target) {
        case ("GET", "/"):
            // DynamoDB's endpoints answer a health check the same way.
            return HTTPResponse(status: .ok, headers: [("Content-Type", "text/plain")],
                                body: Array("healthy: granary\n".utf8))
        case ("POST", "/"):
            let operation = request.header("X-Amz-Target") ?? "(no X-Amz-Target header)"
            return Self.dynamoError(
                type: "com.amazon.coral.service#UnknownOperationException",
                message: "Operation \(operation) is not supported by this endpoint yet")
        default:
            return HTTPResponse(status: .notFound, headers: [("Content-Type", "text/plain")],
                                body: Array("not found: \(request.method) \(request.target)\n".utf8))
        }
    }

    static func dynamoError(type: String, message: String) -> HTTPResponse {
        let escaped = message.replacingJSONSpecials()
        return HTTPResponse(
            status: .badRequest, headers: [("Content-Type", "application/x-amz-json-1.0")],
            body: Array(#"{"__type":"\#(type)","message":"\#(escaped)"}"#.utf8))
    }
}

extension String {
    /// The string with JSON's special characters escaped, for a string literal's body.
    func replacingJSONSpecials() -> String {
        var result = ""
        for scalar in unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20: result += String(format: scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private init(format value: UInt32) {
        let hex = String(value, radix: 16)
        self = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}
