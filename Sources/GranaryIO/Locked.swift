import Glibc

/// A value behind a mutex, for state that threads share: `withLock` is the only way in.
///
/// This is the standard library's `Synchronization.Mutex` in a form ThreadSanitizer can
/// check. On Linux `Mutex` locks with atomics and futex calls inside the prebuilt
/// Synchronization library, which the sanitizer does not see, so every access under it
/// reads as a race (`tools/sanitize thread` reported each of the node's Mutex uses). A
/// pthread mutex is intercepted by the sanitizer and costs the same when uncontended.
public final class Locked<Value>: @unchecked Sendable {
    // @unchecked: `value` is touched only between lock and unlock of `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        let result = pthread_mutex_init(mutex, nil)
        precondition(result == 0, "pthread_mutex_init failed: \(result)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock; keep it short and never suspend in it.
    public func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
