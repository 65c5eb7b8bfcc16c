import Foundation
import GranaryIO
import GranaryNode
import GranaryRouter
import Logging
import Synchronization

// The DynamoDB request path in process, without sockets: a fuzz input is an operation
// name, a newline and a request body. It goes where a request from the network goes: the
// receiving core's hand-over peek (`owningCore`), then the handler of the core the peek
// names, over a real node (reactors, write-ahead logs, B-trees) in a scratch directory.
//
// Oracles: nothing traps; every answer is a 2xx, or a 4xx whose body names a DynamoDB
// `__type`; never a 5xx. A hang is libFuzzer's `-timeout`.
//
// Built with `tools/fuzz` (SwiftPM's `--sanitize=fuzzer,address` and
// `-DGRANARY_LIBFUZZER`), it is a libFuzzer binary. Built plainly, it replays the files
// and directories it is given (the committed seed corpus, crashes found before), as
// `tools/test` does.

/// A node opened once per process, with the tables the seed corpus names.
final class RequestHarness: Sendable {
    let node: Node
    let directory: String

    init() {
        let root = ProcessInfo.processInfo.environment["GRANARY_FUZZ_DATA"] ?? ".build/fuzz/requests-data"
        directory = "\(root)/\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let available = ReactorGroup.availableCPUs()
        // Two reactors even on one CPU: the hand-over peek runs only with two or more.
        var configuration = NodeConfiguration(
            dataDirectory: directory, cpus: [available[0], available.count > 1 ? available[1] : available[0]])
        configuration.memoryBytes = 64 << 20
        configuration.logSegmentBytes = 4 << 20
        var logger = Logger(label: "granary-fuzz")
        logger.logLevel = .critical
        node = try! Node(configuration: configuration, logger: logger, serving: false)
        for (name, sortKey) in [("fuzz-pk", nil), ("fuzz-pk-sk", "N"), ("fuzz-pk-sks", "S"), ("fuzz-pk-skb", "B")]
            as [(String, String?)]
        {
            var schema = #"[{"AttributeName":"pk","KeyType":"HASH"}"#
            var definitions = #"[{"AttributeName":"pk","AttributeType":"S"}"#
            if let sortKey {
                schema += #",{"AttributeName":"sk","KeyType":"RANGE"}"#
                definitions += #",{"AttributeName":"sk","AttributeType":"\#(sortKey)"}"#
            }
            let body =
                #"{"TableName":"\#(name)","BillingMode":"PAY_PER_REQUEST","KeySchema":\#(schema)],"AttributeDefinitions":\#(definitions)]}"#
            let (status, answer) = send(operation: "CreateTable", body: Array(body.utf8))
            precondition(
                status == 200, "cannot create the fuzz table \(name): \(String(decoding: answer, as: UTF8.self))")
        }
    }

    /// Runs one input through the request path and checks the answer.
    func run(_ input: [UInt8]) {
        let newline = input.firstIndex(of: 10) ?? input.endIndex
        let operation = String(decoding: input[..<newline], as: UTF8.self)
        let body = newline < input.endIndex ? Array(input[(newline + 1)...]) : []
        let (status, answer) = send(operation: operation, body: body)
        let text = String(decoding: answer, as: UTF8.self)
        if ProcessInfo.processInfo.environment["GRANARY_FUZZ_VERBOSE"] != nil {
            print(operation, status, text.prefix(200))
        }
        if status >= 500 { fatalError("\(operation.prefix(100)) answered \(status): \(text.prefix(500))") }
        if status >= 400 && !text.contains("\"__type\"") {
            fatalError("\(operation.prefix(100)) answered \(status) without a __type: \(text.prefix(500))")
        }
    }

    /// Sends a request as the network would: the peek on core 0, then the named core.
    func send(operation: String, body: [UInt8]) -> (status: Int, body: [UInt8]) {
        let request = HTTPRequest(
            method: "POST", target: "/", version: .http11,
            headers: [
                ("Host", "localhost"), ("Content-Type", "application/x-amz-json-1.0"),
                ("X-Amz-Target", "DynamoDB_20120810.\(operation)"), ("Content-Length", String(body.count)),
            ], body: body)
        let received = request
        let (core, moved) = onReactor(0) { [node] in
            var request = received
            return (node.services[0].owningCore(of: &request) ?? 0, request)
        }
        let response = onReactor(core) { [node] in await node.services[core].handle(moved) }
        return (response.status.code, response.body)
    }

    private func onReactor<T: Sendable>(_ index: Int, _ body: @escaping @Sendable () async -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task(executorPreference: node.reactors[index]) {
            let value = await body()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0 }!
    }
}

#if GRANARY_LIBFUZZER
/// Opened on the first input (a global is initialized once, on first use); libFuzzer's
/// own main runs the loop.
let harness = RequestHarness()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    harness.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
@main
enum RequestReplay {
    static func main() {
        let harness = RequestHarness()
        defer { try? FileManager.default.removeItem(atPath: harness.directory) }
        var replayed = 0
        for argument in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("granary-fuzz-requests: no such file: \(argument)\n".utf8))
                exit(2)
            }
            let paths =
                isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []).sorted().map {
                    "\(argument)/\($0)"
                }
                : [argument]
            for path in paths {
                harness.run(Array(FileManager.default.contents(atPath: path) ?? Data()))
                replayed += 1
            }
        }
        print("granary-fuzz-requests: replayed \(replayed) inputs, every answer a 2xx or a 4xx with a __type")
    }
}
#endif
