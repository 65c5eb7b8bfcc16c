import GranaryIO
import Histogram

/// Latencies in microseconds, up to a minute; slower answers are recorded as a minute.
typealias LatencyHistogram = Histogram<UInt64>

func makeHistogram() -> LatencyHistogram {
    LatencyHistogram(
        lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
}

/// What the clients of one reactor measured: per-operation latency histograms and error
/// counts for the measured phase, and the current second's totals for the progress line.
/// Only that reactor's clients record into it; the reporter reads it once a second.
final class RunStatistics: Sendable {
    struct State {
        var latencies: [String: LatencyHistogram] = [:]
        var errors: [String: [String: Int]] = [:]  // operation -> error type -> count
        var interval = makeHistogram()
        var intervalErrors = 0
    }

    private let state = Locked(State())

    /// Records one finished operation: its latency if it succeeded, its error type if not.
    func record(_ operation: String, microseconds: UInt64, error: String?, measured: Bool) {
        state.withLock { state in
            if let error {
                state.intervalErrors += 1
                if measured { state.errors[operation, default: [:]][error, default: 0] += 1 }
                return
            }
            _ = state.interval.record(min(microseconds, 60_000_000))
            if measured {
                _ = state.latencies[operation, default: makeHistogram()].record(min(microseconds, 60_000_000))
            }
        }
    }

    /// The current second's successes (as a histogram) and errors, reset for the next.
    func takeInterval() -> (LatencyHistogram, Int) {
        state.withLock { state in
            defer {
                state.interval.reset()
                state.intervalErrors = 0
            }
            return (state.interval, state.intervalErrors)
        }
    }

    func snapshot() -> State { state.withLock { $0 } }
}
