import DequeModule

/// Locks for the tasks of one actor, one per key, each handed over first in, first out.
///
/// An actor's methods interleave at every `await`, so a sequence of steps that must not
/// (a write's read-decide-log of one key, a tree operation that waits for a page) holds
/// one of these across its suspensions. A release passes the lock straight to the oldest
/// waiter, so no later arrival overtakes it. A key with no holder takes no memory.
///
/// Not thread-safe: the owning actor's isolation is its lock. Every call is made from that
/// actor (`acquire` runs in its caller's isolation), so the state is never shared.
public final class FIFOLocks<Key: Hashable> {
    /// Held keys and the tasks queued behind each.
    private var held: [Key: Deque<UnsafeContinuation<Void, Never>>] = [:]

    public init() {}

    /// Whether some task holds `key`.
    public func isHeld(_ key: Key) -> Bool { held[key] != nil }

    /// The number of keys held, for tests and bounds.
    public var heldCount: Int { held.count }

    /// Waits until `key` is free (or, when others already wait, until they had it), then
    /// holds it. Call `release(key)` exactly once afterwards.
    public func acquire(_ key: Key) async {
        if held[key] == nil {
            held[key] = []
            return
        }
        // Decided again inside: a release may come between the check above and the
        // continuation's body, and must not leave this waiter parked on a free lock.
        await withUnsafeContinuation { waiter in
            if held[key] == nil {
                held[key] = []
                waiter.resume()
            } else {
                held[key]!.append(waiter)
            }
        }
    }

    /// Releases `key`, which the caller holds: the oldest waiter, if any, now holds it.
    public func release(_ key: Key) {
        guard var waiters = held[key] else { preconditionFailure("releasing a lock that is not held") }
        if let next = waiters.popFirst() {
            held[key] = waiters
            next.resume()
        } else {
            held[key] = nil
        }
    }
}
