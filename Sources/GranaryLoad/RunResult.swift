import Foundation
import Histogram

/// One second of a run, for the progress line and the throughput-over-time plot.
public struct TimelinePoint: Codable, Sendable {
    public var second: Int
    public var warmup: Bool
    public var operationsPerSecond: Double
    public var p50Microseconds: UInt64
    public var p99Microseconds: UInt64
    public var errors: Int
}

/// One operation's figures over the measured phase.
public struct OperationFigures: Codable, Sendable {
    public var count: UInt64
    public var operationsPerSecond: Double
    public var meanMicroseconds: Double
    public var p50Microseconds: UInt64
    public var p90Microseconds: UInt64
    public var p99Microseconds: UInt64
    public var p999Microseconds: UInt64
    public var maxMicroseconds: UInt64
    public var errors: [String: Int]
}

/// What a run measured, as `--json` saves it.
public struct RunResult: Codable, Sendable {
    public var tool = "granary-load"
    public var phase: String
    public var endpoint: String
    public var workload: String
    public var mix: [String: Double]
    public var distribution: String
    public var table: String
    public var records: Int
    public var fieldCount: Int
    public var valueBytes: Int
    public var concurrency: Int
    public var threads: Int
    public var rate: Double?
    public var warmupSeconds: Double
    public var measuredSeconds: Double
    /// Successful operations per second, all kinds together (a read-modify-write counts
    /// once, not as its read and write too).
    public var throughput: Double
    public var errors: Int
    public var operations: [String: OperationFigures]
    /// The workload's own operations together (latency over every one of them).
    public var overall: OperationFigures
    public var timeline: [TimelinePoint]

    init(
        options: RunOptions, loading: Bool, seconds: Double, statistics: [RunStatistics.State],
        timeline: [TimelinePoint]
    ) {
        phase = loading ? "load" : "run"
        endpoint = options.endpoint.description
        workload = loading ? "load" : options.workload.name
        mix =
            loading
            ? ["insert": 1] : Dictionary(uniqueKeysWithValues: options.workload.mix.map { ($0.0.rawValue, $0.1) })
        distribution = options.workload.distribution.rawValue
        table = options.layout.table
        records = options.records
        fieldCount = options.layout.fieldCount
        valueBytes = options.layout.valueBytes
        concurrency = options.concurrency
        threads = options.threads
        rate = options.rate
        warmupSeconds = loading ? 0 : Double(options.warmup.nanoseconds) / 1e9
        measuredSeconds = seconds
        self.timeline = timeline
        var latencies: [String: LatencyHistogram] = [:]
        var errorCounts: [String: [String: Int]] = [:]
        for state in statistics {
            for (operation, histogram) in state.latencies {
                latencies[operation, default: makeHistogram()].add(histogram)
            }
            for (operation, types) in state.errors {
                for (type, count) in types { errorCounts[operation, default: [:]][type, default: 0] += count }
            }
        }
        func figures(_ histogram: LatencyHistogram, errors: [String: Int]) -> OperationFigures {
            let some = histogram.totalCount > 0
            return OperationFigures(
                count: histogram.totalCount, operationsPerSecond: Double(histogram.totalCount) / max(seconds, 1e-9),
                meanMicroseconds: some ? histogram.mean : 0,
                p50Microseconds: some ? histogram.valueAtPercentile(50) : 0,
                p90Microseconds: some ? histogram.valueAtPercentile(90) : 0,
                p99Microseconds: some ? histogram.valueAtPercentile(99) : 0,
                p999Microseconds: some ? histogram.valueAtPercentile(99.9) : 0,
                maxMicroseconds: some ? histogram.max : 0, errors: errors)
        }
        var operations: [String: OperationFigures] = [:]
        for name in Set(latencies.keys).union(errorCounts.keys) {
            operations[name] = figures(latencies[name] ?? makeHistogram(), errors: errorCounts[name] ?? [:])
        }
        self.operations = operations
        // Throughput counts the workload's own operations; a read-modify-write's read and
        // write, also shown alone, are not counted again.
        let topLevel = Set(loading ? ["insert"] : options.workload.mix.map { $0.0.rawValue })
        var all = makeHistogram()
        var allErrors: [String: Int] = [:]
        for name in topLevel {
            if let histogram = latencies[name] { all.add(histogram) }
            for (type, count) in errorCounts[name] ?? [:] { allErrors[type, default: 0] += count }
        }
        overall = figures(all, errors: allErrors)
        throughput = overall.operationsPerSecond
        errors = allErrors.values.reduce(0, +)
    }

    /// The figures as a small table, for people.
    public func summary() -> String {
        var lines = [
            "\(phase == "load" ? "load" : "workload \(workload)") against \(endpoint): \(String(format: "%.0f", throughput)) ops/s over \(String(format: "%.1f", measuredSeconds)) s, \(concurrency) clients\(rate.map { String(format: ", open loop at %.0f ops/s", $0) } ?? ", closed loop"), \(errors) errors"
        ]
        lines.append(
            "operation              count      ops/s    p50 ms    p90 ms    p99 ms  p99.9 ms    max ms  errors")
        for (name, figures) in operations.sorted(by: { $0.key < $1.key }) {
            let errorText = figures.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
                separator: ",")
            lines.append(
                name.padding(toLength: max(18, name.count), withPad: " ", startingAt: 0)
                    + String(
                        format: " %9llu %10.0f %9.2f %9.2f %9.2f %9.2f %9.2f  %@", figures.count,
                        figures.operationsPerSecond,
                        Double(figures.p50Microseconds) / 1000, Double(figures.p90Microseconds) / 1000,
                        Double(figures.p99Microseconds) / 1000,
                        Double(figures.p999Microseconds) / 1000, Double(figures.maxMicroseconds) / 1000,
                        (errorText.isEmpty ? "0" : errorText) as NSString))
        }
        return lines.joined(separator: "\n")
    }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
