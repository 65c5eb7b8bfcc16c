import CShims
import Foundation

/// One reactor per core: a thread each, pinned to its CPU, each with its own ring. This is
/// the process's whole concurrency: nothing is shared between the threads but messages.
public final class ReactorGroup: Sendable {
    public let reactors: [Reactor]
    private let finished: [ThreadFinished]

    /// The CPUs this process may run on (its affinity mask), in order.
    public static func availableCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = granary_available_cpus(&cpus, Int32(cpus.count))
        guard count > 0 else { return Array(0..<ProcessInfo.processInfo.activeProcessorCount) }
        return cpus[0..<Int(count)].map(Int.init)
    }

    /// Starts one pinned reactor thread per CPU in `cpus` (nil entries are unpinned, for
    /// tests that want more reactors than cores), each running its loop, after `setUp`
    /// has run on it (to open listeners, pools and so on). `pollsWhenIdle`: see `Reactor`.
    public init(
        cpus: [Int?], pollsWhenIdle: Bool = true, setUp: @escaping @Sendable (Reactor) throws -> Void = { _ in }
    ) throws {
        precondition(!cpus.isEmpty, "a reactor group needs at least one core")
        let started = Locked<[Int: Result<Reactor, any Error>]>([:])
        let ready = DispatchSemaphore(value: 0)
        var finished: [ThreadFinished] = []
        for (index, cpu) in cpus.enumerated() {
            let done = ThreadFinished()
            finished.append(done)
            let thread = Thread {
                defer { done.signal() }
                if let cpu {
                    let result = granary_pin_current_thread(Int32(cpu))
                    precondition(result == 0, "cannot pin reactor \(index) to CPU \(cpu): \(Errno(result))")
                }
                let reactor: Reactor
                do {
                    reactor = try Reactor(index: index, cpu: cpu, pollsWhenIdle: pollsWhenIdle)
                    try setUp(reactor)
                } catch {
                    started.withLock { $0[index] = .failure(error) }
                    ready.signal()
                    return
                }
                started.withLock { $0[index] = .success(reactor) }
                ready.signal()
                reactor.run()
            }
            thread.name = "granary-core-\(index)"
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in cpus { ready.wait() }
        let results = started.withLock { $0 }
        var reactors: [Reactor] = []
        var failure: (any Error)?
        for index in cpus.indices {
            switch results[index]! {
            case .success(let reactor): reactors.append(reactor)
            case .failure(let error): failure = failure ?? error
            }
        }
        if let failure {
            reactors.forEach { $0.stop() }
            finished.forEach { $0.wait() }
            throw failure
        }
        self.reactors = reactors
        self.finished = finished
    }

    /// Stops every reactor and waits for its thread to finish.
    public func stop() {
        reactors.forEach { $0.stop() }
        finished.forEach { $0.wait() }
    }
}

/// A one-shot signal that a reactor thread has returned (it may be waited on many times).
final class ThreadFinished: Sendable {
    private let state = Locked(false)
    private let semaphore = DispatchSemaphore(value: 0)

    func signal() {
        state.withLock { $0 = true }
        semaphore.signal()
    }

    func wait() {
        if state.withLock({ $0 }) { return }
        semaphore.wait()
        semaphore.signal()  // let later waiters through
    }
}
