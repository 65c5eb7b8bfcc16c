import CShims
import Glibc

/// Timers, as io_uring timeouts: they fire in deadline order on this core's loop.
extension Reactor {
    /// Suspends the calling task for `duration`. Throws ECANCELED if the reactor stops
    /// first.
    public func sleep(for duration: Duration) async throws(Errno) {
        let completion = await perform { sqe, scratch in
            let timespec = scratch.bindMemory(to: __kernel_timespec.self, capacity: 1)
            timespec.pointee = __kernel_timespec(duration: duration)
            io_uring_prep_timeout(sqe, timespec, 0, 0)
        }
        // A timeout that expires completes with ETIME: that is success here.
        if completion.result != -ETIME { _ = try completion.get() }
    }

    /// Calls `handler` on this thread after `duration`, with nil, or with ECANCELED if the
    /// timer is cancelled first (`cancel(_:)` with the returned id).
    @discardableResult
    public func schedule(
        after duration: Duration, _ handler: @escaping (Errno?) -> Void
    ) -> OperationID? {
        submit({ completion in
            handler(completion.result == -ETIME || completion.result >= 0 ? nil : Errno(result: completion.result))
        }) { sqe, scratch in
            let timespec = scratch.bindMemory(to: __kernel_timespec.self, capacity: 1)
            timespec.pointee = __kernel_timespec(duration: duration)
            io_uring_prep_timeout(sqe, timespec, 0, 0)
        }
    }
}
