import Dispatch
import Foundation
import GranaryIO
import GranaryModel

/// Runs `body` as a task on a reactor of its own and waits for it from this thread.
func onReactor<T: Sendable>(_ body: @escaping @Sendable (Reactor) async throws -> T) throws -> T {
    let group = try ReactorGroup(cpus: [nil], pollsWhenIdle: false)
    defer { group.stop() }
    let outcome = Locked<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let reactor = group.reactors[0]
    Task(executorPreference: reactor) {
        do {
            let value = try await body(reactor)
            outcome.withLock { $0 = .success(value) }
        } catch {
            outcome.withLock { $0 = .failure(error) }
        }
        done.signal()
    }
    done.wait()
    return try outcome.withLock { $0 }!.get()
}

/// Creates the run's table if it does not exist, and waits until it is ACTIVE.
public enum TableSetup {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Returns true if it created the table, false if it was there already.
    public static func ensureTable(endpoint: Endpoint, credentials: Credentials?, layout: RecordLayout) throws -> Bool {
        try onReactor { reactor in
            let client = DynamoClient(
                reactor: reactor, endpoint: endpoint, credentials: credentials, timeout: .seconds(30))
            defer { client.close() }
            var keys = #"{"AttributeName":"pk","KeyType":"HASH"}"#
            var attributes = #"{"AttributeName":"pk","AttributeType":"S"}"#
            if layout.ranged {
                keys += #",{"AttributeName":"sk","KeyType":"RANGE"}"#
                attributes += #",{"AttributeName":"sk","AttributeType":"N"}"#
            }
            let create =
                #"{"TableName":"\#(layout.table)","KeySchema":[\#(keys)],"AttributeDefinitions":[\#(attributes)],"BillingMode":"PAY_PER_REQUEST"}"#
            var created = false
            switch await client.call("CreateTable", create) {
            case .success: created = true
            case .failure("ResourceInUseException"): break
            case .failure(let type): throw Failure(description: "CreateTable \(layout.table) failed: \(type)")
            }
            var last = ""
            for _ in 0..<600 {
                switch await client.call("DescribeTable", #"{"TableName":"\#(layout.table)"}"#) {
                case .success(let body):
                    let status = (try? JSON.parse(body))?["Table"]?["TableStatus"]
                    if case .string("ACTIVE")? = status { return created }
                    last = "TableStatus \(status.map { "\($0)" } ?? "missing from the answer")"
                case .failure(let type):
                    last = type
                }
                try await reactor.sleep(for: .milliseconds(100))
            }
            throw Failure(
                description: "table \(layout.table) did not become ACTIVE within 60 s (last DescribeTable: \(last))")
        }
    }
}
