import ArgumentParser
import Foundation
import GranaryIO
import GranaryLoad

@main
struct GranaryLoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "granary-load",
        abstract: "Drive a DynamoDB endpoint with YCSB workloads and measure it honestly.",
        discussion: """
            load creates the table and inserts the records; run runs a workload for a duration;
            check reads back every write a --verify log recorded as acknowledged.
            registers records a history of reads, writes and conditional writes over several
            endpoints; check-history says whether it is linearizable.
            """,
        subcommands: [Load.self, Run.self, Check.self, Registers.self, CheckHistory.self])
}

/// The options every subcommand shares.
struct Connection: ParsableArguments {
    @Option(help: "The endpoint, http://HOST:PORT.")
    var endpoint: String = "http://127.0.0.1:8000"

    @Option(
        name: .customLong("access-key"),
        help: "Sign requests (SigV4) with this access key id. Default: $AWS_ACCESS_KEY_ID; unsigned if neither is set.")
    var accessKey: String?

    @Option(name: .customLong("secret-key"), help: "The secret access key. Default: $AWS_SECRET_ACCESS_KEY.")
    var secretKey: String?

    @Option(help: "The region requests are signed for. Default: $AWS_REGION, else us-east-1.")
    var region: String?

    func resolve() throws -> (Endpoint, Credentials?) {
        let environment = ProcessInfo.processInfo.environment
        let endpoint: Endpoint
        do { endpoint = try Endpoint(self.endpoint) } catch { throw ValidationError(error.description) }
        let access = accessKey ?? environment["AWS_ACCESS_KEY_ID"]
        let secret = secretKey ?? environment["AWS_SECRET_ACCESS_KEY"]
        guard let access, let secret else {
            if accessKey != nil || secretKey != nil { throw ValidationError("give both --access-key and --secret-key") }
            return (endpoint, nil)
        }
        return (
            endpoint,
            Credentials(
                accessKey: access, secretKey: secret, region: region ?? environment["AWS_REGION"] ?? "us-east-1")
        )
    }
}

/// The options of load and run.
struct Shape: ParsableArguments {
    @Option(help: "The YCSB workload: a, b, c, d, e, f, or custom (with --mix).")
    var workload: String = "a"

    @Option(
        help:
            "For --workload custom: operation weights, such as read=0.7,update=0.2,insert=0.1 (also scan, read-modify-write)."
    )
    var mix: String?

    @Option(help: "The key distribution for custom workloads: uniform, zipfian, latest or hotspot.")
    var distribution: String = "zipfian"

    @Option(help: "How many records the table holds (load inserts them; run chooses among them).")
    var records: Int = 100_000

    @Option(help: "Fields per record.")
    var fields: Int = 10

    @Option(name: .customLong("value-bytes"), help: "Bytes per field value (at least 24).")
    var valueBytes: Int = 100

    @Option(help: "The table. Default: usertable, or usertable_ranges for workloads with ranges (e).")
    var table: String?

    @Option(help: "Concurrent clients, one connection each.")
    var concurrency: Int = 64

    @Option(help: "Reactor threads the clients are spread over. Default: one per CPU.")
    var threads: Int?

    @Option(help: "The seed of every client's random stream.")
    var seed: UInt64 = 1

    @Option(help: "Seconds a request may wait for its answer before it counts as a Timeout error.")
    var timeout: Double = 10

    @Option(help: "Log every acknowledged write to this file, for a later check.")
    var verify: String?

    @Option(help: "Save the figures (throughput, percentiles per operation, errors, timeline) as JSON here.")
    var json: String?

    @Flag(help: "No progress line each second.")
    var quiet = false

    func workloadValue() throws -> Workload {
        if workload.lowercased() == "custom" {
            guard let mix else { throw ValidationError("--workload custom needs --mix") }
            guard let distribution = KeyDistribution(rawValue: distribution) else {
                throw ValidationError(
                    "--distribution must be one of \(KeyDistribution.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let ranged = mix.contains("scan")
            guard let custom = Workload.custom(mix, distribution: distribution, ranged: ranged) else {
                throw ValidationError(
                    "--mix must be OPERATION=WEIGHT pairs, such as read=0.7,update=0.3 (operations: \(Workload.Operation.allCases.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            return custom
        }
        guard let core = Workload.core(workload) else {
            throw ValidationError("--workload must be a, b, c, d, e, f or custom, not '\(workload)'")
        }
        return core
    }

    func options(connection: Connection) throws -> RunOptions {
        guard records >= 1 else { throw ValidationError("--records must be at least 1") }
        guard (1...100).contains(fields) else { throw ValidationError("--fields must be 1...100") }
        guard (24...300_000).contains(valueBytes), fields * valueBytes <= 390_000 else {
            throw ValidationError(
                "--value-bytes must be 24...300000, and a record (fields x value bytes) at most 390000 bytes (DynamoDB's item limit is 400 KB)"
            )
        }
        guard (1...10_000).contains(concurrency) else { throw ValidationError("--concurrency must be 1...10000") }
        guard timeout > 0 && timeout <= 3600 else { throw ValidationError("--timeout must be in (0, 3600] seconds") }
        let workload = try workloadValue()
        let (endpoint, credentials) = try connection.resolve()
        let layout = RecordLayout(
            table: table ?? (workload.ranged ? "usertable_ranges" : "usertable"), ranged: workload.ranged,
            fieldCount: fields, valueBytes: valueBytes)
        var options = RunOptions(endpoint: endpoint, workload: workload, layout: layout, records: records)
        options.credentials = credentials
        options.concurrency = concurrency
        if let threads {
            guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1...64") }
            options.threads = threads
        }
        options.threads = min(options.threads, concurrency)
        options.seed = seed
        options.requestTimeout = .milliseconds(Int64(timeout * 1000))
        options.progress = !quiet
        if let verify {
            do { options.verify = try VerifyLog(path: verify, layout: layout) } catch {
                throw ValidationError(error.description)
            }
        }
        return options
    }

    func finish(_ result: RunResult) throws {
        print(result.summary())
        if let json {
            try result.json().write(to: URL(fileURLWithPath: json))
        }
    }
}

/// Parses "30s", "2m", "500ms" or a plain number of seconds.
func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if suffix == "s" && text.hasSuffix("ms") { continue }
        if suffix == "m" && text.hasSuffix("ms") { continue }
        guard let value = Double(text.dropLast(suffix.count)), value >= 0 else { return nil }
        return .milliseconds(Int64(value * scale * 1000))
    }
    guard let value = Double(text), value >= 0 else { return nil }
    return .milliseconds(Int64(value * 1000))
}

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create the table (if missing) and insert records 0..<N.")
    @OptionGroup var connection: Connection
    @OptionGroup var shape: Shape

    func run() throws {
        let options = try shape.options(connection: connection)
        let created = try TableSetup.ensureTable(
            endpoint: options.endpoint, credentials: options.credentials, layout: options.layout)
        FileHandle.standardError.write(
            Data(
                "table \(options.layout.table) \(created ? "created" : "exists"); inserting \(options.records) records\n"
                    .utf8))
        let result = try LoadRun(options: options, loading: true).execute()
        try shape.finish(result)
        if result.errors > 0 { throw ExitCode(3) }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a workload against a loaded table.")
    @OptionGroup var connection: Connection
    @OptionGroup var shape: Shape

    @Option(help: "How long to measure, such as 30s or 2m.")
    var duration: String = "30s"

    @Option(help: "Run this long before measuring, such as 5s.")
    var warmup: String = "0s"

    @Option(
        help:
            "Open loop: this many operations per second in all, latency measured from each request's intended start. Default: closed loop."
    )
    var rate: Double?

    @Flag(name: .customLong("consistent-reads"), help: "Strongly consistent reads (ConsistentRead: true).")
    var consistentReads = false

    func run() throws {
        var options = try shape.options(connection: connection)
        guard let duration = parseDuration(duration), duration > .zero, duration <= .seconds(86_400) else {
            throw ValidationError("--duration must be a time such as 30s or 2m, at most a day")
        }
        guard let warmup = parseDuration(warmup), warmup <= .seconds(3600) else {
            throw ValidationError("--warmup must be a time such as 5s")
        }
        if let rate {
            guard rate > 0 && rate <= 10_000_000 else { throw ValidationError("--rate must be in (0, 10000000]") }
        }
        options.duration = duration
        options.warmup = warmup
        options.rate = rate
        options.consistentReads = consistentReads
        try shape.finish(try LoadRun(options: options, loading: false).execute())
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read back every acknowledged write a --verify log holds; exit 1 if any is lost or garbled.")
    @OptionGroup var connection: Connection

    @Option(help: "The verify log that load or run wrote.")
    var verify: String

    @Option(help: "Concurrent readers.")
    var concurrency: Int = 16

    func run() throws {
        let (endpoint, credentials) = try connection.resolve()
        guard (1...1000).contains(concurrency) else { throw ValidationError("--concurrency must be 1...1000") }
        let report = try VerifyCheck(
            endpoint: endpoint, credentials: credentials, path: verify, concurrency: concurrency
        ).execute()
        print(report)
        if !report.passed { throw ExitCode(1) }
    }
}

struct Registers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Read (strongly consistent), write and compare-and-set keys through every endpoint, recording a history.")

    @Option(help: "An endpoint, http://HOST:PORT; give it once per node. Clients are spread over them.")
    var endpoint: [String] = ["http://127.0.0.1:8000"]

    @Option(help: "The table (created with a number key k if missing).")
    var table: String = "registers"

    @Option(help: "The history file to write, one JSON object per operation.")
    var history: String

    @Option(help: "How many keys.")
    var keys: Int = 5

    @Option(help: "Concurrent clients, one connection each.")
    var concurrency: Int = 12

    @Option(help: "How long to run, such as 30s.")
    var duration: String = "30s"

    @Option(help: "Seconds a request may wait for its answer before its outcome counts as unknown.")
    var timeout: Double = 5

    @Option(help: "The seed of the clients' random streams.")
    var seed: UInt64 = 1

    func run() throws {
        let endpoints = try endpoint.map { (text) throws -> Endpoint in
            do { return try Endpoint(text) } catch { throw ValidationError("--endpoint: \(error)") }
        }
        guard let length = parseDuration(duration), length > .zero, length <= .seconds(86_400) else {
            throw ValidationError("--duration must be a duration such as 30s, up to a day")
        }
        guard (1...1000).contains(keys), (1...1000).contains(concurrency), timeout > 0, timeout <= 600 else {
            throw ValidationError("--keys and --concurrency must be 1...1000, --timeout 0...600 seconds")
        }
        var run = RegisterRun(endpoints: endpoints, table: table, historyPath: history)
        run.keys = keys
        run.concurrency = concurrency
        run.duration = length
        run.timeout = .milliseconds(Int(timeout * 1000))
        run.seed = seed
        print(try run.execute())
    }
}

struct CheckHistory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-history",
        abstract: "Check a history that registers wrote for linearizability; exit 1 if it is not.")

    @Argument(help: "The history file.")
    var history: String

    func run() throws {
        let verdict = try RegisterRun.readHistory(history).check()
        print(verdict)
        for (key, operations) in verdict.violations.prefix(3) {
            print("key \(key):")
            for operation in operations.sorted(by: { $0.call < $1.call }).prefix(200) { print("  \(operation)") }
        }
        if !verdict.isLinearizable { throw ExitCode(1) }
        if !verdict.inconclusiveKeys.isEmpty { throw ExitCode(2) }
    }
}
