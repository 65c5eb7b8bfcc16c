import Atomics
import Dispatch
import Foundation
import GranaryIO
import Histogram

/// Everything a run needs to know.
public struct RunOptions: Sendable {
    public var endpoint: Endpoint
    public var credentials: Credentials?
    public var workload: Workload
    public var layout: RecordLayout
    /// Records loaded before the run (a load phase inserts exactly these).
    public var records: Int
    public var concurrency: Int
    public var threads: Int
    /// Open loop: this many operations per second in all, each measured from its intended
    /// start. Nil: closed loop, each client sends its next request when the last returns.
    public var rate: Double?
    public var warmup: Duration
    public var duration: Duration
    public var consistentReads: Bool
    public var requestTimeout: Duration
    public var seed: UInt64
    public var verify: VerifyLog?
    /// Print one progress line a second to standard error.
    public var progress: Bool

    public init(endpoint: Endpoint, workload: Workload, layout: RecordLayout, records: Int) {
        self.endpoint = endpoint
        self.workload = workload
        self.layout = layout
        self.records = records
        concurrency = 64
        threads = max(1, min(ReactorGroup.availableCPUs().count, 64))
        warmup = .seconds(0)
        duration = .seconds(30)
        consistentReads = false
        requestTimeout = .seconds(10)
        seed = 1
        progress = true
    }
}

/// State shared by every client of a run, across reactors: counters and flags only.
final class SharedRunState: Sendable {
    /// Every write's value carries a sequence number, larger than any earlier write's, even
    /// one of an earlier run: it starts at the wall clock in microseconds (and past the
    /// verify log's largest), and a run makes far fewer writes per second than a million.
    let sequence: ManagedAtomic<Int>
    /// The next record number an insert takes.
    let nextInsert: ManagedAtomic<Int>
    /// Records that exist: the loaded ones plus acknowledged inserts.
    let existing: ManagedAtomic<Int>
    let measuring = ManagedAtomic<Bool>(false)
    let stopped = ManagedAtomic<Bool>(false)

    init(records: Int, loading: Bool, firstSequence: Int) {
        sequence = ManagedAtomic(firstSequence)
        nextInsert = ManagedAtomic(loading ? 0 : records)
        existing = ManagedAtomic(loading ? 0 : records)
    }
}

/// Nanoseconds on the monotonic clock.
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Runs a workload (or a load phase) against an endpoint and reports what it measured.
public final class LoadRun: Sendable {
    let options: RunOptions
    /// A load phase inserts records 0..<records and stops; a run runs for its duration.
    let loading: Bool
    let shared: SharedRunState

    public init(options: RunOptions, loading: Bool) {
        self.options = options
        self.loading = loading
        let now = Int(Date().timeIntervalSince1970 * 1e6)
        shared = SharedRunState(
            records: options.records, loading: loading,
            firstSequence: max(now, (options.verify?.largestSequence ?? 0) + 1))
    }

    /// Runs to the end and returns the result. Blocks the calling (non-reactor) thread.
    public func execute() throws -> RunResult {
        let group = try ReactorGroup(cpus: Array(repeating: nil, count: options.threads), pollsWhenIdle: false)
        defer { group.stop() }
        let statistics = group.reactors.map { _ in RunStatistics() }
        let remaining = ManagedAtomic(options.concurrency)
        let finished = DispatchSemaphore(value: 0)
        let start = monotonicNanoseconds()
        for index in 0..<options.concurrency {
            let reactor = group.reactors[index % group.reactors.count]
            let stats = statistics[index % group.reactors.count]
            Task(executorPreference: reactor) {
                let client = Client(run: self, index: index, reactor: reactor, statistics: stats)
                await client.run(start: start)
                if remaining.wrappingDecrementThenLoad(ordering: .acquiringAndReleasing) == 0 { finished.signal() }
            }
        }
        // This thread keeps time: it opens and closes the measured phase and reports
        // each second until every client has finished.
        var timeline: [TimelinePoint] = []
        let warmupEnd = start + (loading ? 0 : options.warmup.nanoseconds)
        let end = loading ? UInt64.max : warmupEnd + options.duration.nanoseconds
        var measureStart = start
        if warmupEnd == start { shared.measuring.store(true, ordering: .sequentiallyConsistent) }
        var allFinished = false
        for second in 1... {
            let tick = start + UInt64(second) * 1_000_000_000
            let wait = tick - min(tick, monotonicNanoseconds())
            allFinished = finished.wait(timeout: .now() + .nanoseconds(Int(wait))) == .success
            let now = monotonicNanoseconds()
            if !shared.measuring.load(ordering: .relaxed) && now >= warmupEnd && now < end {
                measureStart = now
                shared.measuring.store(true, ordering: .sequentiallyConsistent)
            }
            if now >= end {
                shared.measuring.store(false, ordering: .sequentiallyConsistent)
                shared.stopped.store(true, ordering: .sequentiallyConsistent)
            }
            var interval = makeHistogram()
            var errors = 0
            for stats in statistics {
                let (histogram, count) = stats.takeInterval()
                interval.add(histogram)
                errors += count
            }
            let point = TimelinePoint(
                second: second, warmup: now < warmupEnd,
                operationsPerSecond: Double(interval.totalCount) * 1e9 / Double(max(1, now - (tick - 1_000_000_000))),
                p50Microseconds: interval.totalCount > 0 ? interval.valueAtPercentile(50) : 0,
                p99Microseconds: interval.totalCount > 0 ? interval.valueAtPercentile(99) : 0, errors: errors)
            timeline.append(point)
            if options.progress { report(point) }
            if allFinished { break }
            if shared.stopped.load(ordering: .relaxed) {
                finished.wait()
                break
            }
        }
        shared.measuring.store(false, ordering: .sequentiallyConsistent)
        let measureEnd = monotonicNanoseconds()
        options.verify?.flush()
        return RunResult(
            options: options, loading: loading, seconds: Double(measureEnd - measureStart) / 1e9,
            statistics: statistics.map { $0.snapshot() }, timeline: timeline)
    }
}

extension LoadRun {
    func report(_ point: TimelinePoint) {
        let phase = loading ? "load" : point.warmup ? "warm-up" : "run"
        let line = String(
            format: "%5ds %-7@ %10.0f ops/s  p50 %8.2f ms  p99 %8.2f ms  errors %d", point.second, phase as NSString,
            point.operationsPerSecond, Double(point.p50Microseconds) / 1000, Double(point.p99Microseconds) / 1000,
            point.errors)
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }
}
