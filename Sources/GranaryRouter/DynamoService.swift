import Foundation
import GranaryIO
import GranaryModel
import GranaryCommands

/// The DynamoDB JSON 1.0 protocol on one core: it authenticates a request, decodes its
/// body, runs the operation named by `X-Amz-Target`, and answers with DynamoDB's headers
/// (x-amzn-RequestId, x-amz-crc32) and error shapes.
///
/// Requests arrive on the core that accepted the connection; the item's partition may be
/// owned by another core, and calling that partition's actor carries the work there.
public final class DynamoService: Sendable {
    let tables: CoreTables
    let catalog: Catalog
    /// How requests reach the partitions, and which partition owns a key.
    let transport: any PartitionTransport
    let verifier: SigV4Verifier?
    /// Request ids come from a generator seeded once: the system generator makes a
    /// getrandom(2) call per number, and 52 of them per request were a fifth of GetItem's
    /// CPU. The ids need to be unique and look like DynamoDB's, not to be secret.
    private let requestIDs: Locked<SplitMix64>
    /// In a cluster, the node's view of it, for `GET /cluster`.
    let clusterStatus: (@Sendable () async -> JSON)?
    /// In a cluster, where a request for another node's leader goes.
    let forwarder: (any RequestForwarder)?
    /// Fault tests only (see `TransactionLedger.Faults`).
    let transactionFaults: TransactionLedger.Faults

    static let targetPrefix = "DynamoDB_20120810."
    static let jsonContentType = "application/x-amz-json-1.0"

    public init(
        tables: CoreTables, catalog: Catalog, transport: any PartitionTransport, verifier: SigV4Verifier?,
        clusterStatus: (@Sendable () async -> JSON)? = nil, forwarder: (any RequestForwarder)? = nil,
        transactionFaults: TransactionLedger.Faults = TransactionLedger.Faults()
    ) {
        self.transactionFaults = transactionFaults
        self.clusterStatus = clusterStatus
        self.forwarder = forwarder
        self.tables = tables
        self.catalog = catalog
        self.transport = transport
        self.verifier = verifier
        var system = SystemRandomNumberGenerator()
        requestIDs = Locked(SplitMix64(seed: system.next()))
    }

    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        switch (request.method, request.target) {
        case ("GET", "/"):
            return HTTPResponse(
                status: .ok, headers: [("Content-Type", "text/plain")], body: Array("healthy: granary\n".utf8))
        case ("GET", "/cluster"):
            guard let clusterStatus else { break }
            return HTTPResponse(
                status: .ok, headers: [("Content-Type", "application/json")],
                body: await clusterStatus().serialized())
        case ("GET", "/indexes"):
            // How far the global indexes are behind their tables: the items whose changes have
            // not reached them yet (0: every index holds every write acknowledged before).
            var pending = 0, unanswered = 0
            for partition in 0..<transport.map.count {
                do throws(DynamoError) {
                    pending += try await GlobalIndexShipper.pending(partition, over: transport, limit: 1024)
                } catch {
                    unanswered += 1
                }
            }
            // And each global index's status, with the items its build left out.
            var indexes: [JSON] = []
            for (name, info) in tables.tables.sorted(by: { $0.key < $1.key }) {
                for index in info.globalIndexes {
                    indexes.append([
                        "table": .string(name), "index": .string(index.name),
                        "status": .string(index.creating ? "CREATING" : "ACTIVE"),
                        "keyViolations": .number(String(index.keyViolations)),
                    ])
                }
            }
            let status: JSON = [
                "pendingItems": .number(String(pending)), "unansweredPartitions": .number(String(unanswered)),
                "indexes": .array(indexes),
            ]
            return HTTPResponse(
                status: .ok, headers: [("Content-Type", "application/json")], body: status.serialized())
        case ("OPTIONS", _):
            return Self.preflightResponse(request)
        case ("POST", _):
            // In a cluster, a request for one partition's leader goes to its node whole.
            if let forwarder, !request.forwarded {
                var keyed = request
                if let (partition, needsLeader) = keyedPartition(of: &keyed), needsLeader {
                    switch await forwarder.forward(keyed, partition: partition) {
                    case .answered(let response): return response
                    case .notForwarded: break
                    case .unanswered:
                        return Self.errorResponse(
                            DynamoError(
                                "InternalServerError",
                                "Internal server error: the partition's leader did not answer;"
                                    + " the request may or may not have taken effect"),
                            requestID: newRequestID(),
                            encoding: BodyCoding.acceptedEncoding(request.header("Accept-Encoding")))
                    }
                }
            }
            let requestID = newRequestID()
            let encoding = BodyCoding.acceptedEncoding(request.header("Accept-Encoding"))
            do throws(DynamoError) {
                let body = try await respond(to: request)
                return Self.response(status: .ok, body: body, requestID: requestID, encoding: encoding)
            } catch {
                return Self.errorResponse(error, requestID: requestID, encoding: encoding)
            }
        default:
            break
        }
        return HTTPResponse(
            status: .notFound, headers: [("Content-Type", "text/plain")],
            body: Array("not found: \(request.method) \(request.target)\n".utf8))
    }

    private func respond(to request: HTTPRequest) async throws(DynamoError) -> [UInt8] {
        if !request.verified { try verifier?.verify(request) }
        guard let target = request.header("X-Amz-Target"), target.hasPrefix(Self.targetPrefix) else {
            throw DynamoError("UnknownOperationException", "", namespace: "com.amazon.coral.service")
        }
        let operation = String(target.dropFirst(Self.targetPrefix.count))
        let json: JSON
        if let parsed = request.parsedBody as? JSON { json = parsed } else { json = try parseBody(request) }
        if clusterStatus != nil { await learnTables(named: json) }
        let fields = try RequestFields(json)
        try fields.refuseMixedParameters()
        let result: JSON
        switch operation {
        case "CreateTable": result = try await createTable(fields)
        case "DeleteTable": result = try await deleteTable(fields)
        case "DescribeTable": result = try await describeTable(fields)
        case "ListTables": result = try await listTables(fields)
        case "UpdateTable": result = try await updateTable(fields)
        case "TagResource": result = try await tagResource(fields)
        case "UntagResource": result = try await untagResource(fields)
        case "ListTagsOfResource": result = try listTagsOfResource(fields)
        case "DescribeEndpoints": result = describeEndpoints(request)
        case "DescribeLimits": result = describeLimits()
        case "DescribeTimeToLive": result = try describeTimeToLive(fields)
        case "DescribeContinuousBackups": result = try describeContinuousBackups(fields)
        case "UpdateTimeToLive": result = try await updateTimeToLive(fields)
        case "PutItem": result = try await putItem(fields)
        case "GetItem": result = try await getItem(fields)
        case "UpdateItem": result = try await updateItem(fields)
        case "DeleteItem": result = try await deleteItem(fields)
        case "Query": result = try await query(fields)
        case "Scan": result = try await scan(fields)
        case "BatchGetItem": result = try await batchGetItem(fields)
        case "BatchWriteItem": result = try await batchWriteItem(fields)
        case "TransactWriteItems": result = try await transactWriteItems(fields)
        case "TransactGetItems": result = try await transactGetItems(fields)
        default:
            let shown = operation.utf8.count > 100 ? String(operation.prefix(100)) + "..." : operation
            throw DynamoError(
                "UnknownOperationException", "Operation \(shown) is not supported by this node yet",
                namespace: "com.amazon.coral.service")
        }
        return result.serialized()
    }

    // MARK: Shared helpers

    /// In a cluster, other nodes create tables too: a request that names a table this
    /// core does not know reads the catalog again (a read begun after the request
    /// arrived, shared by the requests waiting for it) before it is answered, so that a
    /// table created through one node is never "not found" at another.
    private func learnTables(named json: JSON) async {
        guard case .object(let members) = json else { return }
        var names: [String] = []
        if case .string(let name)? = members["TableName"] { names.append(name) }
        if case .object(let items)? = members["RequestItems"] { names += items.keys.prefix(100) }
        if case .array(let actions)? = members["TransactItems"] {
            for case .object(let action) in actions.prefix(100) {
                for case .object(let operation) in action.values {
                    if case .string(let name)? = operation["TableName"] { names.append(name) }
                }
            }
        }
        guard names.contains(where: { tables.tables[$0] == nil }) else { return }
        try? await catalog.refresh(since: .now)
    }

    /// The table named in the request, from this core's copy of the catalog.
    func table(_ fields: RequestFields) throws(DynamoError) -> TableInfo {
        try table(named: fields.tableName())
    }

    /// The request's body as JSON: decompressed as its Content-Encoding says, then parsed.
    private func parseBody(_ request: HTTPRequest) throws(DynamoError) -> JSON {
        let body: [UInt8]
        do {
            body = try BodyCoding.decode(
                request.body, encoding: request.header("Content-Encoding"), limit: HTTPLimits.bodyBytesMax)
        } catch .unsupported(let encoding) {
            throw .serialization("Unsupported Content-Encoding: \(encoding)")
        } catch .tooLarge {
            throw DynamoError(
                "RequestEntityTooLarge", "Request body exceeds \(HTTPLimits.bodyBytesMax) bytes once decompressed",
                namespace: "com.amazon.coral.service")
        } catch {
            throw .serialization("The request body is not valid gzip or deflate data")
        }
        do {
            return try JSON.parse(body.isEmpty ? Array("{}".utf8) : body)
        } catch {
            throw .serialization("Malformed JSON request body: \(error)")
        }
    }

    /// The core that owns the item a single-item request names (GetItem, PutItem,
    /// UpdateItem, DeleteItem), or the partition a Query reads: the connection moves there
    /// so that the request is answered without a call across cores. Nil for everything
    /// else, and for anything this cannot fully validate (a bad or missing signature, a
    /// compressed body, malformed JSON, an unknown table, a key that does not match the
    /// schema or its limits): the core that has it answers as before, errors included.
    ///
    /// It runs on bytes nobody has checked yet, so it is total: every value it hashes has
    /// passed the same key validation the operation itself applies. With credentials, the
    /// signature is checked first and the request marked verified, so that an unsigned
    /// request costs no parsing and a moved one is not checked twice.
    public func owningCore(of request: inout HTTPRequest) -> Int? {
        keyedPartition(of: &request).map { transport.localCore(of: $0.partition) } ?? nil
    }

    /// The partition a single-item request or a Query names (see `owningCore`), and
    /// whether only its leader may answer it (a write, or a strongly consistent read).
    func keyedPartition(of request: inout HTTPRequest) -> (partition: Int, needsLeader: Bool)? {
        guard request.method == "POST", request.header("Content-Encoding") == nil,
            let target = request.header("X-Amz-Target"), target.hasPrefix(Self.targetPrefix)
        else { return nil }
        let operation = target.dropFirst(Self.targetPrefix.count)
        let keyMember: String?
        switch operation {
        case "GetItem", "DeleteItem", "UpdateItem": keyMember = "Key"
        case "PutItem": keyMember = "Item"
        case "Query": keyMember = nil  // the key condition names the partition
        default: return nil
        }
        if let verifier, !request.verified {
            guard (try? verifier.verify(request)) != nil else { return nil }
            request.verified = true
        }
        // A request moved here was parsed on the core that received it.
        guard let json = request.parsedBody as? JSON ?? (try? JSON.parse(request.body)) else { return nil }
        request.parsedBody = json
        guard let keyMember else {
            guard let fields = try? RequestFields(json), let (_, keyCondition, _, _, _) = try? queryKey(fields) else {
                return nil
            }
            return (partition(for: keyCondition.partitionKey), Self.isConsistent(json))
        }
        guard case .object(let members) = json,
            case .string(let name)? = members["TableName"], let info = tables.tables[name],
            case .object(let key)? = members[keyMember], let keyJSON = key[info.partitionKey.name],
            let partitionKey = try? AttributeValue(json: keyJSON),
            (try? info.checkKeyValue(partitionKey, of: info.partitionKey)) != nil
        else { return nil }
        return (partition(for: partitionKey), operation != "GetItem" || Self.isConsistent(json))
    }

    private static func isConsistent(_ json: JSON) -> Bool {
        guard case .object(let members) = json, case .bool(let consistent)? = members["ConsistentRead"] else {
            return false
        }
        return consistent
    }

    /// The partition that owns a partition key (`PartitionMap`).
    func partition(for partitionKey: AttributeValue) -> Int {
        transport.map.index(of: partitionKey)
    }

    /// The partition that owns partition-key hash `hash`.
    func partitionIndex(hash: UInt64) -> Int {
        transport.map.index(hash: hash)
    }

    // MARK: Responses

    /// Bodies below this go out as they are even to a client that accepts compression: the
    /// wrapper and the CPU cost more than the bytes saved.
    static let compressionThresholdBytes = 1024

    /// A DynamoDB answer: its headers, CORS's for browsers, and the body compressed when
    /// the client accepts `encoding` and the body is large enough to gain. x-amz-crc32
    /// covers the bytes sent, compressed or not, as DynamoDB's does.
    static func response(status: HTTPStatus, body: [UInt8], requestID: String, encoding: String? = nil) -> HTTPResponse
    {
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(6)  // the four below, Content-Encoding and x-amz-crc32
        headers += [
            ("Content-Type", jsonContentType),
            ("x-amzn-RequestId", requestID),
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Expose-Headers", exposedHeaders),
        ]
        var sent = body
        if let encoding, body.count >= compressionThresholdBytes, let compressed = BodyCoding.encode(body, as: encoding)
        {
            sent = compressed
            headers.append(("Content-Encoding", encoding))
        }
        headers.append(("x-amz-crc32", String(BodyCoding.crc32(sent))))
        return HTTPResponse(status: status, headers: headers, body: sent)
    }

    static let exposedHeaders = "x-amzn-RequestId,x-amzn-ErrorType,x-amz-crc32,Date"

    /// The answer to a browser's CORS preflight: any origin, DynamoDB's methods, the headers
    /// the browser asks for. A preflight carries no signature and needs none; the request
    /// it announces is checked when it comes.
    static func preflightResponse(_ request: HTTPRequest) -> HTTPResponse {
        var headers: [(name: String, value: String)] = [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Methods", "GET,POST,PUT,DELETE,OPTIONS"),
            ("Access-Control-Expose-Headers", exposedHeaders),
            ("Access-Control-Max-Age", "172800"),
        ]
        if let asked = request.header("Access-Control-Request-Headers"), asked.utf8.count <= 4096,
            asked.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F })
        {
            headers.append(("Access-Control-Allow-Headers", asked))
        } else {
            headers.append(("Access-Control-Allow-Headers", "*"))
        }
        return HTTPResponse(status: .ok, headers: headers, body: [])
    }

    static func errorResponse(_ error: DynamoError, requestID: String, encoding: String? = nil) -> HTTPResponse {
        var object: [String: JSON] = ["__type": .string("\(error.namespace)#\(error.type)")]
        if !error.message.isEmpty { object["message"] = .string(error.message) }
        if let item = error.item { object["Item"] = item.json }
        object.merge(error.details) { current, _ in current }
        let status: HTTPStatus = error.type == "InternalServerError" ? .internalServerError : .badRequest
        return response(
            status: status, body: JSON.object(object).serialized(), requestID: requestID, encoding: encoding)
    }

    /// 52 characters of [A-Z0-9], as DynamoDB's request ids look: 12 from each of 5 draws.
    func newRequestID() -> String {
        let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        let draws = requestIDs.withLock { generator in (0..<5).map { _ in generator.next() } }
        return String(unsafeUninitializedCapacity: 52) { characters in
            alphabet.withUTF8Buffer { letters in
                for (word, draw) in draws.enumerated() {
                    var rest = draw
                    for index in (word * 12)..<min(52, word * 12 + 12) {
                        characters[index] = letters[Int(rest % 36)]
                        rest /= 36
                    }
                }
            }
            return 52
        }
    }
}
