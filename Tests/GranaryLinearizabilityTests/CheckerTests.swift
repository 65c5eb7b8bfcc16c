import GranaryLinearizability
import Testing

/// Histories built by hand: known-good ones the checker must accept, known-bad ones it must
/// reject (stale reads, lost writes, two winners of one conditional write, values from nowhere).
@Suite struct CheckerTests {
    typealias Entry = KeyValueHistory.Entry

    func write(
        _ value: UInt64, _ call: UInt64, _ returned: UInt64?, key: UInt64 = 1, acknowledged: Bool = true
    ) -> Entry {
        Entry(key: key, input: .write(value), output: acknowledged ? .written : nil, call: call, returned: returned)
    }

    func read(_ value: UInt64?, _ call: UInt64, _ returned: UInt64, key: UInt64 = 1) -> Entry {
        Entry(key: key, input: .read, output: .read(value), call: call, returned: returned)
    }

    func cas(_ expected: UInt64?, _ new: UInt64, _ succeeded: Bool?, _ call: UInt64, _ returned: UInt64?) -> Entry {
        Entry(
            key: 1, input: .compareAndSet(expected: expected, new: new),
            output: succeeded.map { .compareAndSet(succeeded: $0) },
            call: call, returned: returned)
    }

    func isLinearizable(_ entries: [Entry]) -> Bool {
        let verdict = KeyValueHistory(entries).check()
        #expect(verdict.inconclusiveKeys.isEmpty)
        return verdict.isLinearizable
    }

    @Test func sequentialHistories() {
        #expect(isLinearizable([]))
        #expect(isLinearizable([read(nil, 0, 1), write(1, 2, 3), read(1, 4, 5), write(2, 6, 7), read(2, 8, 9)]))
        #expect(
            isLinearizable([cas(nil, 1, true, 0, 1), cas(nil, 2, false, 2, 3), cas(1, 3, true, 4, 5), read(3, 6, 7)]))
    }

    @Test func concurrentOperationsMayTakeEffectInEitherOrder() {
        // write(1) overlaps both reads: the first may miss it, the second may see it.
        #expect(isLinearizable([write(1, 0, 10), read(nil, 1, 2), read(1, 3, 4)]))
        // Two concurrent writes, later reads agree on one winner.
        #expect(isLinearizable([write(1, 0, 5), write(2, 1, 6), read(1, 7, 8), read(1, 9, 10)]))
        #expect(isLinearizable([write(1, 0, 5), write(2, 1, 6), read(2, 7, 8)]))
    }

    @Test func staleReadsAreRejected() {
        // A read returns a value overwritten before it began.
        #expect(!isLinearizable([write(1, 0, 1), write(2, 2, 3), read(1, 4, 5)]))
        // Once a read has seen a concurrent write, a later read may not miss it.
        #expect(!isLinearizable([write(1, 0, 10), read(1, 2, 3), read(nil, 4, 5)]))
        // A read that starts after two reads saw different orders of two writes.
        #expect(!isLinearizable([write(1, 0, 10), write(2, 0, 10), read(1, 11, 12), read(2, 13, 14), read(1, 15, 16)]))
    }

    @Test func lostAndInventedWritesAreRejected() {
        #expect(!isLinearizable([write(1, 0, 1), read(nil, 2, 3)]))
        #expect(!isLinearizable([write(1, 0, 1), read(7, 2, 3)]))
    }

    @Test func twoWinnersOfOneConditionalWriteAreRejected() {
        // Both compare-and-sets from "no item" succeed, and nothing removed the item between.
        #expect(!isLinearizable([cas(nil, 1, true, 0, 10), cas(nil, 2, true, 1, 11)]))
        // A failed conditional write whose condition held when it ran alone.
        #expect(!isLinearizable([cas(nil, 1, false, 0, 1)]))
    }

    @Test func unknownOutcomesMayOrMayNotHaveTakenEffect() {
        // An unacknowledged write seen later, or never: both explainable.
        #expect(isLinearizable([write(1, 0, nil, acknowledged: false), read(1, 5, 6)]))
        #expect(isLinearizable([write(1, 0, nil, acknowledged: false), read(nil, 5, 6)]))
        // But not seen and then unseen.
        #expect(!isLinearizable([write(1, 0, nil, acknowledged: false), read(1, 5, 6), read(nil, 7, 8)]))
        // And not before it was called.
        #expect(!isLinearizable([read(1, 0, 1), write(1, 2, nil, acknowledged: false)]))
        // An unknown conditional write takes effect only where its condition holds.
        #expect(isLinearizable([cas(nil, 1, nil, 0, nil), read(1, 5, 6)]))
        #expect(!isLinearizable([write(5, 0, 1), cas(nil, 1, nil, 2, nil), read(1, 5, 6)]))
    }

    @Test func keysAreCheckedApart() {
        let verdict = KeyValueHistory([
            write(1, 0, 1, key: 1), read(1, 2, 3, key: 1),
            write(1, 0, 1, key: 2), read(nil, 2, 3, key: 2),  // lost on key 2 only
        ]).check()
        #expect(!verdict.isLinearizable)
        #expect(verdict.violations.map(\.key) == [2])
    }

    /// Histories made by running operations one at a time against a register and then
    /// stretching their intervals at random (each stays around its effect point) are
    /// linearizable by construction; changing one read's answer to a value that was never
    /// current during its interval makes them not.
    @Test func randomHistoriesFromASequentialRun() {
        var random = SplitMix(state: 7)
        for round in 0..<200 {
            var entries: [Entry] = []
            var value: UInt64? = nil
            var reads: [Int] = []
            for index in 0..<12 {
                let point = UInt64(index) * 10 + 20
                let call = point - random.next() % 15, returned = point + 1 + random.next() % 15
                switch random.next() % 3 {
                case 0:
                    entries.append(read(value, call, returned))
                    reads.append(entries.count - 1)
                case 1:
                    value = UInt64(index) + 100
                    entries.append(write(value!, call, returned))
                default:
                    let expected: UInt64? = random.next() % 2 == 0 ? value : 999
                    let succeeded = expected == value
                    if succeeded { value = UInt64(index) + 100 }
                    entries.append(cas(expected, UInt64(index) + 100, succeeded, call, returned))
                }
            }
            #expect(isLinearizable(entries), "round \(round)")
            // A read answering 555, a value never written, is refuted.
            if let victim = reads.first {
                var broken = entries
                broken[victim].output = .read(555)
                #expect(!isLinearizable(broken), "round \(round)")
            }
        }
    }

    @Test func theBudgetEndsASearchAsInconclusive() {
        // Many concurrent writes and a read that no order explains: the search must try
        // every subset before refuting, which a budget of 10 steps does not allow.
        var entries = (0..<12).map { write(UInt64($0), 0, 100) }
        entries.append(read(77, 101, 102))
        #expect(KeyValueHistory(entries).check(stepBudget: 10).inconclusiveKeys == [1])
        #expect(!KeyValueHistory(entries).check().isLinearizable)
    }
}

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
