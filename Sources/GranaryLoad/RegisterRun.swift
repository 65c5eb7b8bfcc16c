import Foundation
import GranaryIO
import GranaryLinearizability
import GranaryModel

/// Jepsen's register workload: clients spread over several endpoints read (strongly
/// consistent), write and compare-and-set a few keys of a table, and every operation goes
/// into a history: its invocation, its completion, and what it saw, or "unknown" when no
/// answer says whether it happened (a timeout, a lost connection, an internal error).
/// `KeyValueHistory.check` then decides whether one sequential order explains it all.
///
/// The table has a number key `k` and a number value `v`; values are unique per run, so
/// a read names the one write it saw.
public struct RegisterRun: Sendable {
    public var endpoints: [Endpoint]
    public var credentials: Credentials?
    public var table: String
    public var keys: Int
    public var concurrency: Int
    public var duration: Duration
    public var timeout: Duration
    public var seed: UInt64
    public var historyPath: String

    public init(endpoints: [Endpoint], table: String, historyPath: String) {
        self.endpoints = endpoints
        self.table = table
        self.historyPath = historyPath
        keys = 5
        concurrency = 12
        duration = .seconds(30)
        timeout = .seconds(5)
        seed = 1
    }

    public struct Summary: Sendable, CustomStringConvertible {
        public var operations = 0
        public var succeeded = 0
        public var unknown = 0
        public var description: String {
            "\(operations) operations: \(succeeded) answered, \(unknown) of unknown outcome"
        }
    }

    /// Creates the table (if missing) through the first endpoint, runs the clients, and
    /// writes the history, one JSON object per line.
    public func execute() throws -> Summary {
        let run = self
        let entries = try onReactor { reactor in
            try await run.createTable(reactor)
            return await withTaskGroup(of: [KeyValueHistory.Entry].self) { group in
                for client in 0..<run.concurrency {
                    group.addTask(executorPreference: reactor) { await run.client(client, reactor: reactor) }
                }
                var all: [KeyValueHistory.Entry] = []
                for await entries in group { all += entries }
                return all
            }
        }
        var summary = Summary()
        var text = ""
        for entry in entries.sorted(by: { $0.call < $1.call }) {
            summary.operations += 1
            if entry.returned == nil { summary.unknown += 1 } else { summary.succeeded += 1 }
            text += Self.line(entry) + "\n"
        }
        try text.write(toFile: historyPath, atomically: true, encoding: .utf8)
        return summary
    }

    private func createTable(_ reactor: Reactor) async throws {
        let client = DynamoClient(reactor: reactor, endpoint: endpoints[0], credentials: credentials, timeout: timeout)
        defer { client.close() }
        let body = """
            {"TableName":"\(table)","BillingMode":"PAY_PER_REQUEST",\
            "KeySchema":[{"AttributeName":"k","KeyType":"HASH"}],\
            "AttributeDefinitions":[{"AttributeName":"k","AttributeType":"N"}]}
            """
        var created = false
        for _ in 0..<100 where !created {
            switch await client.call("CreateTable", body) {
            case .success, .failure("ResourceInUseException"): created = true
            case .failure:
                client.close()
                try await reactor.sleep(for: .milliseconds(200))
            }
        }
        guard created else {
            throw RegisterRunFailure(description: "cannot create table \(table) through \(endpoints[0])")
        }
        // Every endpoint knows the table before the clients start.
        for endpoint in endpoints {
            let client = DynamoClient(reactor: reactor, endpoint: endpoint, credentials: credentials, timeout: timeout)
            defer { client.close() }
            var known = false
            for _ in 0..<100 where !known {
                if case .success = await client.call("DescribeTable", #"{"TableName":"\#(table)"}"#) {
                    known = true
                } else {
                    client.close()
                    try await reactor.sleep(for: .milliseconds(200))
                }
            }
            guard known else { throw RegisterRunFailure(description: "\(endpoint) never knew table \(table)") }
        }
    }

    /// Errors that say the operation did not run: it is left out of the history.
    static let refusals: Set<String> = ["ThrottlingException", "ResourceNotFoundException", "ValidationException"]

    /// One client: operations one after another against its endpoint until the run ends.
    private func client(_ index: Int, reactor: Reactor) async -> [KeyValueHistory.Entry] {
        let endpoint = endpoints[index % endpoints.count]
        let client = DynamoClient(reactor: reactor, endpoint: endpoint, credentials: credentials, timeout: timeout)
        defer { client.close() }
        var random = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9)
        var lastSeen: [UInt64: UInt64] = [:]
        var history: [KeyValueHistory.Entry] = []
        var sequence: UInt64 = 0
        let end = monotonicNanoseconds() + UInt64(duration.components.seconds) * 1_000_000_000
        while monotonicNanoseconds() < end {
            let key = random.next() % UInt64(keys)
            sequence += 1
            let value = UInt64(index + 1) << 40 | sequence  // unique in the run
            let input: KeyValueModel.Input
            switch random.next() % 10 {
            case 0..<4: input = .read
            case 4..<7: input = .write(value)
            default: input = .compareAndSet(expected: lastSeen[key], new: value)
            }
            let call = monotonicNanoseconds()
            let outcome = await client.call(operation(input), body(input, key: key))
            let returned = monotonicNanoseconds()
            var output: KeyValueModel.Output?
            switch (input, outcome) {
            case (.read, .success(let body)):
                output = .read(Self.value(in: body))
                if let seen = Self.value(in: body) { lastSeen[key] = seen }
            case (.write, .success): output = .written
            case (.compareAndSet, .success):
                output = .compareAndSet(succeeded: true)
                lastSeen[key] = value
            case (.compareAndSet, .failure("ConditionalCheckFailedException")):
                output = .compareAndSet(succeeded: false)
            case (_, .failure(let type)) where Self.refusals.contains(type):
                continue  // refused before it ran: not an operation
            case (_, .failure):
                client.close()  // the next operation reconnects
            }
            history.append(
                KeyValueHistory.Entry(
                    key: key, input: input, output: output, call: call, returned: output == nil ? nil : returned))
            if output == nil { try? await reactor.sleep(for: .milliseconds(20)) }
        }
        return history
    }

    private func operation(_ input: KeyValueModel.Input) -> String {
        if case .read = input { return "GetItem" }
        return "PutItem"
    }

    private func body(_ input: KeyValueModel.Input, key: UInt64) -> String {
        switch input {
        case .read:
            return #"{"TableName":"\#(table)","Key":{"k":{"N":"\#(key)"}},"ConsistentRead":true}"#
        case .write(let value):
            return #"{"TableName":"\#(table)","Item":{"k":{"N":"\#(key)"},"v":{"N":"\#(value)"}}}"#
        case .compareAndSet(let expected?, let new):
            return #"""
                {"TableName":"\#(table)","Item":{"k":{"N":"\#(key)"},"v":{"N":"\#(new)"}},\#
                "ConditionExpression":"v = :e","ExpressionAttributeValues":{":e":{"N":"\#(expected)"}}}
                """#
        case .compareAndSet(nil, let new):
            return #"""
                {"TableName":"\#(table)","Item":{"k":{"N":"\#(key)"},"v":{"N":"\#(new)"}},\#
                "ConditionExpression":"attribute_not_exists(k)"}
                """#
        }
    }

    /// The value a GetItem answer holds (nil: no item).
    static func value(in body: [UInt8]) -> UInt64? {
        guard case .object(let fields)? = try? JSON.parse(body), case .object(let item)? = fields["Item"],
            case .object(let v)? = item["v"], case .string(let number)? = v["N"]
        else { return nil }
        return UInt64(number)
    }

    // MARK: The history file

    static func line(_ entry: KeyValueHistory.Entry) -> String {
        var fields = [
            #""key":\#(entry.key)"#, #""call":\#(entry.call)"#,
            #""return":\#(entry.returned.map(String.init) ?? "null")"#,
        ]
        switch entry.input {
        case .read: fields.append(#""op":"read""#)
        case .write(let value): fields += [#""op":"write""#, #""value":\#(value)"#]
        case .compareAndSet(let expected, let new):
            fields += [#""op":"cas""#, #""expected":\#(expected.map(String.init) ?? "null")"#, #""value":\#(new)"#]
        }
        switch entry.output {
        case nil: fields.append(#""outcome":null"#)
        case .read(let seen)?: fields.append(#""outcome":\#(seen.map(String.init) ?? "\"none\"")"#)
        case .written?: fields.append(#""outcome":"ok""#)
        case .compareAndSet(let succeeded)?: fields.append(#""outcome":"\#(succeeded ? "ok" : "failed")""#)
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// Reads a history file back.
    public static func readHistory(_ path: String) throws -> KeyValueHistory {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var history = KeyValueHistory()
        for (number, line) in text.split(separator: "\n").enumerated() {
            guard let json = try? JSON.parse(Array(line.utf8)), let entry = entry(json) else {
                throw RegisterRunFailure(description: "\(path):\(number + 1) is not a history entry")
            }
            history.append(entry)
        }
        return history
    }

    static func entry(_ json: JSON) -> KeyValueHistory.Entry? {
        guard case .object(let fields) = json, let key = number(fields["key"]), let call = number(fields["call"]),
            case .string(let op)? = fields["op"], let outcome = fields["outcome"]
        else { return nil }
        let returned = number(fields["return"])
        let input: KeyValueModel.Input
        var output: KeyValueModel.Output?
        switch op {
        case "read":
            input = .read
            switch outcome {
            case .string("none"): output = .read(nil)
            case .number: output = .read(number(outcome))
            default: output = nil
            }
        case "write":
            guard let value = number(fields["value"]) else { return nil }
            input = .write(value)
            output = outcome == .string("ok") ? .written : nil
        case "cas":
            guard let value = number(fields["value"]) else { return nil }
            input = .compareAndSet(expected: number(fields["expected"]), new: value)
            if case .string(let result) = outcome { output = .compareAndSet(succeeded: result == "ok") }
        default: return nil
        }
        return KeyValueHistory.Entry(key: key, input: input, output: output, call: call, returned: returned)
    }

    static func number(_ json: JSON?) -> UInt64? {
        if case .number(let text)? = json { return UInt64(text) }
        return nil
    }
}

public struct RegisterRunFailure: Error, CustomStringConvertible {
    public let description: String
}
