import Glibc
import GranaryIO
@testable import GranaryStorage
import GranaryStorageFaults
import Testing

private func key(_ value: Int) -> [UInt8] { Array(String(format: "key-%08d", value).utf8) }

private func value(_ value: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: value &* 131 &+ $0) }
}

/// The whole tree in key order, read back through scans of `page` entries.
private func contents<S>(_ tree: BTree<S>, page: Int = 97) async throws -> [[UInt8]: [UInt8]] {
    var result: [[UInt8]: [UInt8]] = [:]
    var start: [UInt8]? = nil
    while true {
        let entries = try await tree.scan(from: start, limit: page)
        for entry in entries where entry.key != start { result[entry.key] = entry.value }
        if entries.count < page { return result }
        start = entries.last!.key
    }
}

@Suite struct BTreeTests {
    @Test func putGetDeleteAndScansInBothDirections() async throws {
        let failures = try await onReactor { _ in
            let tree = try await BTree.open(storage: FaultyStorage(seed: 1))
            var reference: [[UInt8]: [UInt8]] = [:]
            var random = SplitMix64(seed: 99)
            for _ in 0..<4000 {
                let k = Int(random.next() % 1500)
                if random.next() % 4 == 0 {
                    let removed = try await tree.delete(key(k))
                    precondition(removed == (reference.removeValue(forKey: key(k)) != nil))
                } else {
                    let v = value(k, size: Int(random.next() % 600))
                    try await tree.put(key(k), v)
                    reference[key(k)] = v
                }
            }
            var failures: [String] = []
            for k in 0..<1500 where try await tree.get(key(k)) != reference[key(k)] { failures.append("get \(k)") }
            let sorted = reference.keys.sorted { $0.lexicographicallyPrecedes($1) }
            for start in [0, 17, 700, 1499, 1600] {
                let forward = try await tree.scan(from: key(start), limit: 50).map(\.key)
                let expected = Array(sorted.filter { !$0.lexicographicallyPrecedes(key(start)) }.prefix(50))
                if forward != expected { failures.append("forward scan from \(start)") }
                let backward = try await tree.scan(from: key(start), reverse: true, limit: 50).map(\.key)
                let expectedBackward = Array(
                    sorted.filter { !key(start).lexicographicallyPrecedes($0) }.reversed().prefix(50))
                if backward != expectedBackward { failures.append("backward scan from \(start)") }
                // Bounded: forward stops before the bound, reverse at it.
                let bound = key(start + 40)
                let bounded = try await tree.scan(from: key(start), bound: bound, limit: 50).map(\.key)
                if bounded != expected.filter({ $0.lexicographicallyPrecedes(bound) }) {
                    failures.append("bounded scan from \(start)")
                }
                let low = key(start - 40)
                let boundedBackward = try await tree.scan(from: key(start), reverse: true, bound: low, limit: 50).map(
                    \.key)
                if boundedBackward != expectedBackward.filter({ !$0.lexicographicallyPrecedes(low) }) {
                    failures.append("bounded backward scan from \(start)")
                }
            }
            if try await contents(tree) != reference { failures.append("full scan") }
            if try await tree.scan(from: nil, reverse: true, limit: 5).map(\.key) != Array(sorted.reversed().prefix(5))
            {
                failures.append("reverse scan from the end")
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures)")
    }

    /// Random operations with checkpoints and power cuts, some in the middle of a
    /// checkpoint: after each cut the tree is exactly as of the last checkpoint that
    /// completed (or the one cut short, if its superblock made it).
    @Test(arguments: 0..<25)
    func powerCutsLeaveTheLastCheckpoint(seed: UInt64) async throws {
        let failures = try await onReactor { _ in
            let storage = FaultyStorage(seed: seed)
            var random = SplitMix64(seed: seed &* 31 &+ 7)
            var options = BTree<FaultyStorage>.Options()
            options.cachePages = 8 + Int(random.next() % 64)
            var committed: [[UInt8]: [UInt8]] = [:]
            var failures: [String] = []
            for round in 0..<5 {
                let tree = try await BTree.open(storage: storage, options: options)
                let found = try await contents(tree)
                if found != committed {
                    failures.append("round \(round): \(found.count) keys, expected \(committed.count)")
                }
                var working = committed
                for step in 0..<(200 + Int(random.next() % 800)) {
                    let k = Int(random.next() % 3000)
                    if random.next() % 5 == 0 {
                        _ = try await tree.delete(key(k))
                        working[key(k)] = nil
                    } else {
                        let large = random.next() % 50 == 0
                        let v = value(
                            k &+ step, size: large ? 5000 + Int(random.next() % 30000) : Int(random.next() % 300))
                        try await tree.put(key(k), v)
                        working[key(k)] = v
                    }
                    if random.next() % 150 == 0 {
                        try await tree.checkpoint(lsn: UInt64(step))
                        committed = working
                    }
                }
                // A checkpoint cut short by the power going out, or none at all.
                if random.next() % 2 == 0 {
                    storage.cutPower(afterOperations: Int(random.next() % 20))
                    do throws(StorageError) {
                        try await tree.checkpoint(lsn: 1)
                        committed = working  // it finished before the cut
                    } catch {}
                    if try await contentsAfterCut(storage, options: options) == working { committed = working }
                }
                storage.powerCut()
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures)")
    }

    /// A checkpoint encodes its pages batch by batch while writes go on: a write between
    /// the snapshot and the encoding must change a copy, so the checkpoint holds exactly the
    /// tree as of its snapshot, and the live tree has every later write.
    @Test func writesDuringACheckpointNeverReachItsPages() async throws {
        let (durable, live, snapshot, final) = try await onReactor { _ in
            let storage = FaultyStorage(seed: 11)
            var options = BTree<FaultyStorage>.Options()
            options.cachePages = 64
            let tree = try await BTree.open(storage: storage, options: options)
            var working: [[UInt8]: [UInt8]] = [:]
            var random = SplitMix64(seed: 12)
            for k in 0..<3000 {
                let v = value(k, size: Int(random.next() % 400))
                try await tree.put(key(k), v)
                working[key(k)] = v
            }
            let plan = tree.prepareCheckpoint(lsn: 1)
            let snapshot = working
            for step in 0..<2000 {  // updates, inserts that split pages, deletes
                let k = Int(random.next() % 4000)
                if random.next() % 4 == 0 {
                    _ = try await tree.delete(key(k))
                    working[key(k)] = nil
                } else {
                    let v = value(k &+ step, size: Int(random.next() % 400))
                    try await tree.put(key(k), v)
                    working[key(k)] = v
                }
            }
            try await tree.writeCheckpoint(plan)
            let live = try await contents(tree)
            let durable = try await contentsAfterCut(storage, options: options)
            return (durable, live, snapshot, working)
        }
        #expect(durable == snapshot)
        #expect(live == final)
    }

    /// The dirty memory the tree counts (what checkpoints and the cache budget go by) is
    /// the sum of its dirty nodes' footprints after any mix of inserts, splits, updates,
    /// deletes and checkpoints.
    @Test func dirtyMemoryIsAccountedThroughEveryChange() async throws {
        let mismatches = try await onReactor { _ in
            let tree = try await BTree.open(storage: FaultyStorage(seed: 13))
            var random = SplitMix64(seed: 14)
            var mismatches: [String] = []
            for step in 0..<6000 {
                let k = Int(random.next() % 2000)
                if random.next() % 3 == 0 {
                    _ = try await tree.delete(key(k))
                } else {
                    let large = random.next() % 40 == 0
                    try await tree.put(key(k), value(k &+ step, size: large ? 5000 : Int(random.next() % 700)))
                }
                if step % 1500 == 1499 { try await tree.checkpoint(lsn: UInt64(step)) }
                let expected = tree.dirty.values.reduce(0) { $0 + $1.footprint }
                if tree.dirtyNodeBytes != expected {
                    mismatches.append("step \(step): \(tree.dirtyNodeBytes) != \(expected)")
                }
            }
            return mismatches
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3))")
    }

    @Test func largeValuesLiveInOverflowPagesAndSurviveReopen() async throws {
        let (before, after) = try await onReactor { _ in
            let storage = FaultyStorage(seed: 3)
            let tree = try await BTree.open(storage: storage)
            let big = value(7, size: 400_000)
            try await tree.put(key(1), big)
            try await tree.put(key(2), value(2, size: 10))
            let before = try await tree.get(key(1)) == big
            try await tree.checkpoint(lsn: 5)
            storage.powerCut()
            let reopened = try await BTree.open(storage: storage)
            let after = try await reopened.get(key(1)) == big && reopened.checkpointLSN == 5
            return (before, after)
        }
        #expect(before && after)
    }

    @Test func theCacheStaysWithinItsBudget() async throws {
        let (cached, correct) = try await onReactor { _ in
            let storage = FaultyStorage(seed: 4)
            var options = BTree<FaultyStorage>.Options()
            options.cachePages = 16
            let tree = try await BTree.open(storage: storage, options: options)
            for k in 0..<5000 { try await tree.put(key(k), value(k, size: 100)) }
            try await tree.checkpoint(lsn: 1)
            var correct = true
            for k in stride(from: 0, to: 5000, by: 7) {
                let found = try await tree.get(key(k))
                if found != value(k, size: 100) { correct = false }
            }
            return (tree.cachedPageCount, correct)
        }
        #expect(correct)
        #expect(cached <= 16)
    }

    @Test func freedPagesAreReusedAcrossCheckpoints() async throws {
        let (firstSize, lastSize) = try await onReactor { _ in
            let storage = FaultyStorage(seed: 5)
            let tree = try await BTree.open(storage: storage)
            var sizes: [Int] = []
            for round in 0..<10 {
                for k in 0..<2000 { try await tree.put(key(k), value(k &+ round, size: 200)) }
                try await tree.checkpoint(lsn: UInt64(round))
                sizes.append(storage.images["btree.db"]!.durable.count)
            }
            return (sizes[2], sizes[9])
        }
        // Rewriting the same keys must not grow the file without bound.
        #expect(lastSize <= firstSize * 2)
    }

    @Test func aDamagedPageIsNeverServed() async throws {
        let error = try await onReactor { _ -> StorageError? in
            let storage = FaultyStorage(seed: 6)
            let tree = try await BTree.open(storage: storage)
            for k in 0..<500 { try await tree.put(key(k), value(k, size: 100)) }
            try await tree.checkpoint(lsn: 1)
            storage.flipBit(in: "btree.db", atByte: 3 * BTreePage.size + 100)
            let reopened = try await BTree.open(storage: storage)
            do throws(StorageError) {
                for k in 0..<500 { _ = try await reopened.get(key(k)) }
                return nil
            } catch {
                return error
            }
        }
        guard case .corruption(let file, let offset, _) = error else {
            Issue.record("expected corruption, got \(String(describing: error))"); return
        }
        #expect(file == "btree.db" && offset == UInt64(3 * BTreePage.size))
    }

    @Test func bothSuperblocksDamagedRefusesToOpen() async throws {
        let error = try await onReactor { _ -> StorageError? in
            let storage = FaultyStorage(seed: 7)
            let tree = try await BTree.open(storage: storage)
            try await tree.put(key(1), value(1, size: 10))
            try await tree.checkpoint(lsn: 1)
            storage.flipBit(in: "btree.db", atByte: 40)
            storage.flipBit(in: "btree.db", atByte: BTreePage.size + 40)
            do throws(StorageError) {
                _ = try await BTree.open(storage: storage)
                return nil
            } catch {
                return error
            }
        }
        guard case .corruption(_, 0, let detail) = error else {
            Issue.record("expected corruption, got \(String(describing: error))"); return
        }
        #expect(detail.contains("superblock"))
    }

    @Test func anOversizedKeyIsRefused() async throws {
        let refused = try await onReactor { _ in
            let tree = try await BTree.open(storage: FaultyStorage(seed: 8))
            do throws(StorageError) {
                try await tree.put([UInt8](repeating: 1, count: BTreePage.keyBytesMax + 1), [1])
                return false
            } catch {
                return error.description.contains("exceeds")
            }
        }
        #expect(refused)
    }

    @Test func maximumSizeKeysStillSplit() async throws {
        let correct = try await onReactor { _ in
            let tree = try await BTree.open(storage: FaultyStorage(seed: 9))
            let keys = (0..<60).map { index in
                Array(String(format: "%04d", index).utf8) + [UInt8](repeating: 7, count: BTreePage.keyBytesMax - 4)
            }
            for key in keys { try await tree.put(key, value(1, size: 500)) }
            try await tree.checkpoint(lsn: 1)
            var correct = true
            for key in keys {
                let found = try await tree.get(key)
                if found != value(1, size: 500) { correct = false }
            }
            let count = try await tree.scan(from: nil, limit: 100).count
            return correct && count == 60
        }
        #expect(correct)
    }
}

/// What a fresh open finds after the power is cut now.
private func contentsAfterCut(
    _ storage: FaultyStorage, options: BTree<FaultyStorage>.Options
) async throws -> [[UInt8]: [UInt8]] {
    storage.powerCut()
    return try await contents(try await BTree.open(storage: storage, options: options))
}
