import Glibc
import GranaryIO
import Synchronization
import Testing

/// What the receiving core saw: the next number expected from each sender, and how many
/// messages broke that order. Touched only on the receiving core.
private final class ArrivalTally: @unchecked Sendable {
    var expected = [0, 0]
    var errors = 0

    func record(from source: Int, _ number: Int) {
        if expected[source] != number { errors += 1 }
        expected[source] = number + 1
    }
}

/// A flag shared between a test thread and a reactor.
private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// Cross-core messages: bounded, none lost, duplicated or reordered per sender.
@Suite struct MessageTests {
    /// Two senders (the other core and a plain thread) send 500,000 numbered messages each
    /// to one core, backing off whenever its inbox is full.
    @Test func millionMessagesArriveOnceAndInOrderPerSender() async throws {
        let perSender = 500_000
        try await withReactors(2) { group in
            let receiver = group.reactors[0]
            let sender = group.reactors[1]
            let tally = ArrivalTally()
            let fromCore = Task(executorPreference: sender) {
                for number in 0..<perSender {
                    while !receiver.tryPost({ tally.record(from: 0, number) }) {
                        _ = await sender.noOperation()  // back off for one loop turn
                    }
                }
            }
            let fromThread = Task.detached {
                for number in 0..<perSender {
                    while !receiver.tryPost({ tally.record(from: 1, number) }) { sched_yield() }
                }
            }
            await fromCore.value
            await fromThread.value
            // Read the tally on the receiving core, through the same inbox: every message
            // posted before has run by then.
            let counts = try await onReactor(receiver) { (tally.expected, tally.errors) }
            #expect(counts.0 == [perSender, perSender])
            #expect(counts.1 == 0)
        }
    }

    @Test func aFullInboxRefuses() async throws {
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let started = Flag()
            let release = Flag()
            // Hold the core busy so its inbox cannot drain, then fill it.
            let blocker: @Sendable () -> Void = {
                started.set()
                while !release.isSet { sched_yield() }
            }
            let posted = reactor.tryPost(blocker)
            #expect(posted)
            while !started.isSet { sched_yield() }
            var accepted = 0
            while reactor.tryPost({}) { accepted += 1 }
            #expect(accepted == IOLimits.inboxCapacity)
            release.set()
        }
    }
}
