/// Every bound of the HTTP front end in one place, with the reason for each number.
public enum HTTPLimits {
    /// The request line and headers together. AWS SDK requests carry about 1 KiB of
    /// headers (SigV4 included); 16 KiB leaves room for proxies and long user agents.
    public static let headerBytesMax = 16 * 1024
    /// Header lines per request.
    public static let headerCountMax = 100
    /// A request body. DynamoDB's largest requests (BatchWriteItem, TransactWriteItems)
    /// are bounded at 16 MB of items; the JSON around them adds a little.
    public static let bodyBytesMax = 17 * 1024 * 1024
    /// A connection with a request half-sent or idle between requests for this long is
    /// closed, so a slow or silent client cannot hold memory and a slot forever.
    public static let idleTimeout: Duration = .seconds(60)
    /// A chunk's size line, extensions included: 8 hex digits are 4 GiB, far past any
    /// body; the rest is room for extensions, which nobody sends to DynamoDB.
    public static let chunkLineBytesMax = 256
    /// Chunks in one body. SDKs that stream send chunks of kilobytes; a 17 MB body in
    /// 256-byte chunks is 70,000. Past this the body is refused (413), so a client cannot
    /// make every parse walk millions of one-byte chunks.
    public static let chunkCountMax = 100_000
}

extension HTTPLimits {
    /// Open connections per core. Past it, a new connection is closed at once: the
    /// kernel's backlog and the client's retry are the back-pressure.
    public static let connectionsPerCoreMax = 4096
    /// Bytes a new connection's receive buffer starts with; it doubles as a request needs,
    /// up to the header and body bounds.
    public static let receiveBufferInitialBytes = 16 * 1024
}
