@testable import GranaryIO
import Testing

@Suite struct QueueTests {
    @Test func fullQueueRefusesAndKeepsOrder() {
        let queue = BoundedMPSCQueue<Int>(capacity: 4)
        for value in 0..<4 { #expect(queue.tryPush(value)) }
        #expect(!queue.tryPush(99))
        #expect(queue.pop() == 0)
        #expect(queue.tryPush(4))
        #expect((1...4).map { _ in queue.pop() } == [1, 2, 3, 4])
        #expect(queue.pop() == nil)
        #expect(queue.isEmpty)
    }

    @Test func operationTableIsBoundedAndRejectsStaleIdentifiers() {
        var table = OperationTable(capacity: 2)
        let first = table.acquire(.callback { _ in })!
        let second = table.acquire(.callback { _ in })!
        let third = table.acquire(.callback { _ in })
        #expect(third == nil)
        _ = table.handler(for: first, keep: false)
        let stillThere = table.contains(first)
        #expect(!stillThere)
        let reused = table.acquire(.callback { _ in })!
        #expect(reused != first)  // same slot, new generation
        let bothInFlight = table.contains(reused) && table.contains(second)
        let inFlightCount = table.inFlightCount
        #expect(bothInFlight)
        #expect(inFlightCount == 2)
    }
}
