// What the benchmark tools share: a clock, a way to fail, and a way to run async work on a
// reactor from a command-line tool's main thread.
import Dispatch
import Glibc
import GranaryIO

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call: no system call).
@inline(__always)
/// CLOCK_MONOTONIC_COARSE: a few nanoseconds to read, a scheduler tick's resolution. For
/// deadlines checked in tight loops.
public func coarseNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &time)
    return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
}

public func nowNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
}

/// Prints "`tool`: `message`" to standard error and exits with status 2.
public func fail(_ tool: String, _ message: String) -> Never {
    var text = "\(tool): \(message)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
}

/// Runs `body` as a task on `reactor`'s thread and blocks the calling thread until it
/// returns. For a tool's main thread, never for a reactor's.
public func runAndWait(on reactor: Reactor, _ body: @escaping @Sendable () async -> Void) {
    precondition(!reactor.isOwnerThread, "runAndWait blocks: call it from outside the reactor")
    let done = DispatchSemaphore(value: 0)
    while !reactor.tryPost({
        Task(executorPreference: reactor) {
            await body()
            done.signal()
        }
    }) {}
    done.wait()
}
