import Testing
@testable import GranaryLoad

@Suite struct KeyDistributionTests {
    /// Counts how often each record is drawn in `draws` draws from `distribution` over `items`.
    func histogram(_ distribution: KeyDistribution, items: Int, draws: Int = 200_000) -> [Int] {
        var counts = [Int](repeating: 0, count: items)
        var chooser = KeyChooser(distribution)
        var random = FastRandom(seed: 42)
        for _ in 0..<draws { counts[chooser.next(items: items, using: &random)] += 1 }
        return counts
    }

    @Test func sameSeedSameStream() {
        var first = FastRandom(seed: 7), second = FastRandom(seed: 7), other = FastRandom(seed: 8)
        let a = (0..<100).map { _ in first.next() }
        let b = (0..<100).map { _ in second.next() }
        let c = (0..<100).map { _ in other.next() }
        #expect(a == b)
        #expect(a != c)
    }

    @Test func uniformCoversEveryRecordEvenly() {
        let counts = histogram(.uniform, items: 100)
        #expect(counts.min()! > 1600 && counts.max()! < 2400)  // 2,000 expected each
    }

    @Test func zipfianMatchesItsLaw() {
        // Unscrambled: P(0) = 1 / zeta(n, theta), P(1) = P(0) / 2^theta.
        var zipfian = Zipfian(items: 1000)
        var random = FastRandom(seed: 3)
        var counts = [Int](repeating: 0, count: 1000)
        let draws = 400_000
        for _ in 0..<draws { counts[zipfian.next(using: &random)] += 1 }
        let zeta = Zipfian.zeta(from: 0, to: 1000, theta: 0.99, initial: 0)
        let expectedFirst = 1 / zeta
        #expect(abs(Double(counts[0]) / Double(draws) - expectedFirst) < 0.01)
        #expect(abs(Double(counts[1]) / Double(draws) - expectedFirst / pow(2, 0.99)) < 0.01)
        #expect(counts[0] > counts[10] && counts[10] > counts[500])
    }

    @Test func scrambledZipfianIsSkewedButScattered() {
        let counts = histogram(.zipfian, items: 1000)
        let sorted = counts.sorted(by: >)
        // The hottest 1% of records take over 8 times their uniform share (YCSB's scrambled
        // zipfian draws from 10^10 items folded into range, so it is milder than the plain
        // one: about 12% here), and they are not the first records.
        #expect(Double(sorted.prefix(10).reduce(0, +)) / 200_000 > 0.08)
        let hottest = counts.indices.max { counts[$0] < counts[$1] }!
        #expect(hottest != 0)
    }

    @Test func latestFavoursTheNewestAndFollowsGrowth() {
        var chooser = KeyChooser(.latest)
        var random = FastRandom(seed: 5)
        var newest = 0
        for _ in 0..<10_000 where chooser.next(items: 1000, using: &random) == 999 { newest += 1 }
        #expect(newest > 1000)
        // The record count grows: the newest record is then the favourite.
        var grown = 0
        for _ in 0..<10_000 {
            let record = chooser.next(items: 1500, using: &random)
            #expect(record < 1500)
            if record == 1499 { grown += 1 }
        }
        #expect(grown > 1000)
    }

    @Test func hotspotSendsMostDrawsToTheHotSet() {
        let counts = histogram(.hotspot, items: 1000)
        let hot = Double(counts.prefix(200).reduce(0, +)) / 200_000
        #expect(abs(hot - 0.8) < 0.01)
    }

    @Test func workloadsPickOperationsByTheirMix() {
        let a = Workload.core("A")!
        var random = FastRandom(seed: 9)
        var reads = 0
        for _ in 0..<100_000 where a.operation(for: random.unit()) == .read { reads += 1 }
        #expect(abs(Double(reads) / 100_000 - 0.5) < 0.01)
        #expect(Workload.core("e")!.ranged)
        #expect(Workload.core("g") == nil)
        let custom = Workload.custom("read=3,update=1", distribution: .uniform, ranged: false)!
        #expect(custom.mix.map(\.1) == [0.75, 0.25])
        #expect(Workload.custom("read=1,read=1", distribution: .uniform, ranged: false) == nil)
        #expect(Workload.custom("read=0", distribution: .uniform, ranged: false) == nil)
        #expect(Workload.custom("scan=1", distribution: .uniform, ranged: false) == nil)
        #expect(Workload.custom("frobnicate=1", distribution: .uniform, ranged: false) == nil)
    }
}

import Foundation
