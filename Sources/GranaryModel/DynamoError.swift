/// An error a client caused, as DynamoDB names it: the `__type` suffix and the message a
/// DynamoDB client shows. Everything the model refuses is one of these; the router turns
/// it into HTTP 400 with `{"__type": ..., "message": ...}`.
public struct DynamoError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// The exception's name, e.g. `ValidationException`.
    public let type: String
    public let message: String
    /// The namespace DynamoDB puts before the name in `__type`.
    public let namespace: String
    /// For ConditionalCheckFailedException with ReturnValuesOnConditionCheckFailure=ALL_OLD.
    public var item: Item?
    /// More members of the error's JSON body (TransactionCanceledException's CancellationReasons).
    public var details: [String: JSON] = [:]

    public init(
        _ type: String, _ message: String, namespace: String = "com.amazonaws.dynamodb.v20120810", item: Item? = nil
    ) {
        self.type = type
        self.message = message
        self.namespace = namespace
        self.item = item
    }

    public var description: String { "\(type): \(message)" }

    public static func validation(_ message: String) -> DynamoError {
        DynamoError("ValidationException", message)
    }

    /// A request body that is not the JSON the operation's shape describes.
    public static func serialization(_ message: String) -> DynamoError {
        DynamoError("SerializationException", message, namespace: "com.amazon.coral.service")
    }

    public static func resourceNotFound(_ message: String = "Requested resource not found") -> DynamoError {
        DynamoError("ResourceNotFoundException", message)
    }

    public static func itemCollectionSizeLimitExceeded() -> DynamoError {
        DynamoError("ItemCollectionSizeLimitExceededException", "Item collection size limit exceeded")
    }

    public static func conditionalCheckFailed(item: Item? = nil) -> DynamoError {
        DynamoError("ConditionalCheckFailedException", "The conditional request failed", item: item)
    }

    /// An expression that does not parse, in DynamoDB's wording.
    public static func invalidExpression(_ kind: String, _ detail: String) -> DynamoError {
        .validation("Invalid \(kind): \(detail)")
    }
}
