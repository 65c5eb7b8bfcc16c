import Glibc
import GranaryIO
@testable import GranaryStorage
import GranaryStorageFaults
import Testing

@Suite struct WriteAheadLogTests {
    @Test func concurrentAppendsAreDurableAndReplayInOrder() async throws {
        let (lsns, replayed, syncs) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 1)
            let (log, initial) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            precondition(initial.isEmpty)
            let syncsBefore = storage.syncCount
            let lsns = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for id in 0..<200 {
                    group.addTask {
                        try await log.append(
                            payload(id: UInt64(id), size: 100 + id), ballot: LogBallot(round: 7, node: 3),
                            slot: UInt64(id), chosen: UInt64(id / 2))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let syncs = storage.syncCount - syncsBefore
            storage.powerCut()  // every acknowledged record was synced, so all survive
            let (_, replayed) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            return (lsns.sorted(), replayed, syncs)
        }
        #expect(lsns == Array(1...200))
        #expect(replayed.map { $0.lsn } == Array(1...200))
        for record in replayed {
            let id = record.payload.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            #expect(record.payload == payload(id: id, size: 100 + Int(id)))
            #expect(record.kind == .entry && record.ballot == LogBallot(round: 7, node: 3))
            #expect(record.slot == id && record.chosen == id / 2)
        }
        // Group commit: 200 appends made in one turn share a few groups (each group holds
        // up to 16 KiB here), not 200 syncs. Segment rolls add one sync each.
        #expect(syncs < 40)
    }

    @Test func segmentsRollAndRecycleBehindACheckpoint() async throws {
        let (segmentsBefore, segmentsAfter, spareCount, replayed) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 2)
            let (log, _) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            for id in 0..<300 { _ = try await log.append(payload(id: UInt64(id), size: 1000)) }
            let before = await log.segmentCount
            try await log.releaseSegments(before: 250)
            let after = await log.segmentCount
            let spares = try storage.list().filter { $0.hasPrefix("wal-spare-") }.count
            // More appends reuse the spares.
            for id in 300..<400 { _ = try await log.append(payload(id: UInt64(id), size: 1000)) }
            let (_, replayed) = try await WriteAheadLog.open(
                storage: storage, options: smallLog, executor: reactor, replayFrom: 250)
            return (before, after, spares, replayed)
        }
        #expect(segmentsBefore > 4)
        #expect(segmentsAfter < segmentsBefore)
        #expect(spareCount > 0)
        #expect(replayed.first?.lsn == 250 && replayed.last?.lsn == 400)
        #expect(replayed.map(\.lsn) == Array(250...400))
    }

    /// The core durability property under random crashes: a power cut in the middle of a
    /// random write or sync, unsynced writes dropped, kept or torn at 512-byte sectors,
    /// then reopen. Every acknowledged record is back with its payload, and nothing that
    /// was never written appears.
    @Test(arguments: 0..<100)
    func randomPowerCutsLoseNoAcknowledgedRecord(seed: UInt64) async throws {
        let failures = try await onReactor { reactor in
            let storage = FaultyStorage(seed: seed)
            var random = SplitMix64(seed: seed &* 7919)
            let ledger = Ledger()
            var failures: [String] = []
            var nextID: UInt64 = 0
            for round in 0..<6 {
                let (log, records) = try await WriteAheadLog.open(
                    storage: storage, options: smallLog, executor: reactor)
                failures += check(records, against: ledger, round: round)
                storage.cutPower(afterOperations: Int(random.next() % 40))
                let writers = 1 + Int(random.next() % 16)
                let perWriter = 1 + Int(random.next() % 30)
                let firstID = nextID
                nextID += UInt64(writers * perWriter)
                let sizes = (0..<(writers * perWriter)).map { _ in Int(random.next() % 3000) }
                await withTaskGroup(of: Void.self) { group in
                    for writer in 0..<writers {
                        group.addTask {
                            for index in 0..<perWriter {
                                let id = firstID + UInt64(writer * perWriter + index)
                                let bytes = payload(id: id, size: sizes[writer * perWriter + index])
                                ledger.attempted.insert(bytes)
                                guard let lsn = try? await log.append(bytes) else { return }
                                ledger.acknowledged[lsn] = bytes
                            }
                        }
                    }
                }
                storage.powerCut()
            }
            let (_, records) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            failures += check(records, against: ledger, round: 6)
            return failures
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    @Test func aFailedSyncFencesTheLogUntilReopened() async throws {
        let outcome = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 3)
            let (log, _) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            let first = try await log.append([1, 2, 3])
            storage.failNext(.sync, errno: EIO)
            var errors: [StorageError] = []
            do throws(StorageError) { _ = try await log.append([4]) } catch { errors.append(error) }
            do throws(StorageError) { _ = try await log.append([5]) } catch { errors.append(error) }
            let (reopened, records) = try await WriteAheadLog.open(
                storage: storage, options: smallLog, executor: reactor)
            let after = try await reopened.append([6])
            return (first, errors, records.map(\.payload), after)
        }
        #expect(outcome.0 == 1)
        #expect(outcome.1.count == 2)
        guard case .system(_, _, EIO) = outcome.1.first else { Issue.record("expected EIO, got \(outcome.1)"); return }
        if case .fenced = outcome.1.last {} else { Issue.record("the second append should find the log fenced") }
        #expect(outcome.2.first == [1, 2, 3])
        #expect(outcome.3 > 1)
    }

    @Test func noSpaceFencesToo() async throws {
        let errors = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 4)
            let (log, _) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            storage.failNext(.write, errno: ENOSPC)
            var errors: [StorageError] = []
            do throws(StorageError) { _ = try await log.append([1]) } catch { errors.append(error) }
            do throws(StorageError) { _ = try await log.append([2]) } catch { errors.append(error) }
            return errors
        }
        guard case .system(_, _, ENOSPC) = errors.first else { Issue.record("expected ENOSPC, got \(errors)"); return }
        guard case .fenced = errors.last else { Issue.record("expected fenced, got \(errors)"); return }
    }

    @Test func aFlippedBitBeforeTheTailIsCorruptionNamingFileAndOffset() async throws {
        let error = try await onReactor { reactor -> StorageError? in
            let storage = FaultyStorage(seed: 5)
            let (log, _) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            for id in 0..<10 { _ = try await log.append(payload(id: UInt64(id), size: 200)) }
            // Block 1 of the first live segment holds the first group; later groups follow.
            let segment = try storage.list().first { $0.hasPrefix("wal-0") }!
            storage.flipBit(in: segment, atByte: 4096 + 60)
            do throws(StorageError) {
                _ = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
                return nil
            } catch {
                return error
            }
        }
        guard case .corruption(let file, let offset, let detail) = error else {
            Issue.record("expected corruption, got \(String(describing: error))"); return
        }
        #expect(file.hasPrefix("wal-"))
        #expect(offset == 4096)
        #expect(detail.contains("later group"))
    }

    @Test func aMisdirectedWriteIsCaughtAtRecovery() async throws {
        let error = try await onReactor { reactor -> StorageError? in
            let storage = FaultyStorage(seed: 6)
            let (log, _) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            _ = try await log.append(payload(id: 1, size: 100))
            storage.misdirectNextWrite(by: 8 * 4096)  // the group lands 8 blocks too far
            _ = try await log.append(payload(id: 2, size: 100))
            _ = try await log.append(payload(id: 3, size: 100))
            do throws(StorageError) {
                _ = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
                return nil
            } catch {
                return error
            }
        }
        guard case .corruption = error else {
            Issue.record("expected corruption, got \(String(describing: error))"); return
        }
    }

    @Test func aDamagedSegmentHeaderInTheMiddleIsCorruption() async throws {
        let error = try await onReactor { reactor -> StorageError? in
            let storage = FaultyStorage(seed: 7)
            let (log, _) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            for id in 0..<200 { _ = try await log.append(payload(id: UInt64(id), size: 1000)) }
            let segments = try storage.list().filter { $0.hasPrefix("wal-0") }
            storage.flipBit(in: segments[1], atByte: 10)
            do throws(StorageError) {
                _ = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
                return nil
            } catch {
                return error
            }
        }
        guard case .corruption(_, 0, let detail) = error else {
            Issue.record("expected corruption, got \(String(describing: error))"); return
        }
        #expect(detail.contains("header"))
    }

    @Test func anOversizedRecordIsRefusedWithoutFencing() async throws {
        let (refused, accepted) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 8)
            let (log, _) = try await WriteAheadLog.open(storage: storage, options: smallLog, executor: reactor)
            var refused = false
            do throws(StorageError) { _ = try await log.append([UInt8](repeating: 1, count: 9000)) } catch {
                refused = error.description.contains("exceeds")
            }
            let accepted = (try? await log.append([1])) != nil
            return (refused, accepted)
        }
        #expect(refused && accepted)
    }
}

/// Checks a replay against what writers were told and what they tried.
private func check(_ records: [WALRecord], against ledger: Ledger, round: Int) -> [String] {
    var failures: [String] = []
    let byLSN = Dictionary(records.map { ($0.lsn, $0.payload) }, uniquingKeysWith: { first, _ in first })
    if let first = records.first?.lsn, records.map(\.lsn) != Array(first..<(first + UInt64(records.count))) {
        failures.append("round \(round): LSNs are not contiguous")
    }
    for (lsn, bytes) in ledger.acknowledged where byLSN[lsn] != bytes {
        failures.append("round \(round): acknowledged LSN \(lsn) is \(byLSN[lsn] == nil ? "missing" : "different")")
    }
    for record in records where !ledger.attempted.contains(record.payload) {
        failures.append("round \(round): LSN \(record.lsn) holds bytes nobody wrote")
    }
    // What was replayed now is part of the log for good: later rounds must keep it.
    for record in records { ledger.acknowledged[record.lsn] = record.payload }
    return failures
}
