/// Where a router sends a request that only another node can answer well: in a cluster,
/// a single-item write or strongly consistent read goes whole to the node whose replica
/// leads the item's partition, which answers it as its own (`HTTPRequest.forwarded`).
public protocol RequestForwarder: Sendable {
    func forward(_ request: HTTPRequest, partition: Int) async -> ForwardOutcome
}

public enum ForwardOutcome: Sendable {
    /// The leader's node answered.
    case answered(HTTPResponse)
    /// This node leads the partition, or knows no leader it can reach: the request is
    /// answered here, and its calls to the partition find the leader themselves.
    case notForwarded
    /// The request went and no answer came back: it may or may not have taken effect.
    case unanswered
}
