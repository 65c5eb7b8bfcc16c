import GranaryModel
import GranaryCommands
import Testing

/// Items are spread over partitions by consecutive ranges of their key's hash.
@Suite struct PartitionMapTests {
    @Test func everyPartitionTakesItsShareOfKeys() {
        for count in 1...4 {
            var taken = [Int](repeating: 0, count: count)
            for n in 0..<10_000 {
                taken[PartitionMap(count: count).index(of: .s("k\(n)"))] += 1
            }
            let share = 10_000 / count
            #expect(taken.allSatisfy { abs($0 - share) < share / 10 }, "\(count) partitions took \(taken)")
        }
    }

    @Test func rangesAreConsecutiveAndCoverTheHashSpace() {
        for count in [1, 2, 3, 7, 1024] {
            #expect(PartitionMap(count: count).index(hash: 0) == 0)
            #expect(PartitionMap(count: count).index(hash: .max) == count - 1)
            var previous = 0
            for step in 0...1000 {
                let index = PartitionMap(count: count).index(hash: UInt64.max / 1000 * UInt64(step))
                #expect(index >= previous && index < count)
                previous = index
            }
        }
    }
}
