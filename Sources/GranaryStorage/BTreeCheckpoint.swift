/// Checkpoints and the superblock: how a `BTree` becomes durable and is found again.
///
/// Superblock (pages 0 and 1, the slot is generation % 2), after the page header:
/// magic "GBTR", version, page size, generation, root page, page count, the WAL LSN the
/// checkpoint covers, the first free-list page and the free page count. Free-list pages
/// chain a next-page number and then page numbers.
extension BTree {
    static var superblockMagic: UInt32 { 0x5254_4247 }  // "GBTR"
    static var formatVersion: UInt16 { 1 }
    static var freeListEntriesPerPage: Int { (BTreePage.size - BTreePage.headerBytes - 8) / 8 }

    /// Pages a checkpoint encodes and writes at a time (256 KiB of buffer, up to 32 writes
    /// in flight). Deeper batches write no faster and hold the log's syncs up behind them:
    /// 16 durable writers' p99 was 1.9 ms at 128 pages, 1.5 at 32, 1.1 at 8 (BENCHMARKS.md).
    static var checkpointBatchPages: Int { 32 }

    /// What a checkpoint writes, fixed at the moment it began: each page's number and how
    /// to fill it, in page order. Pages are encoded only when their batch is written, so
    /// the snapshot costs no copy of the dirty set; the nodes it holds are never changed
    /// again (a write to one changes a copy: `makeDirty`).
    public struct CheckpointPlan {
        let generation: UInt64
        let lsn: UInt64
        let pages: [(number: UInt64, fill: (UnsafeMutableRawPointer) -> Void)]
        let root: UInt64
        let pageCount: UInt64
        let freeListFirst: UInt64
        let freeCount: Int
        let oldFreeListPages: [UInt64]
        let newFreeListPages: [UInt64]
    }

    /// Makes everything changed so far durable as checkpoint `generation + 1`, covering
    /// the WAL up to `lsn`. Writes may go on while it runs; they belong to the next one.
    public func checkpoint(lsn: UInt64) async throws(StorageError) {
        let plan = prepareCheckpoint(lsn: lsn)
        try await writeCheckpoint(plan)
    }

    /// The synchronous half of a checkpoint: takes the snapshot (the dirty pages, the free
    /// list) without waiting, so the caller can hold off writers for just this long. Then
    /// call `writeCheckpoint`.
    public func prepareCheckpoint(lsn: UInt64) -> CheckpointPlan {
        precondition(!checkpointing, "one checkpoint at a time")
        checkpointing = true
        let newGeneration = generation + 1

        // Snapshot, synchronously: what this checkpoint writes, and the free list it records.
        let nodes = dirty.sorted { $0.key < $1.key }
        dirty.removeAll()
        dirtyNodeBytes = 0
        let blobs = dirtyBlobs
        dirtyBlobs.removeAll()
        dirtyBlobPages = 0
        blobsInFlight = blobs
        for (page, node) in nodes {
            node.accountedBytes = 0
            cacheClean(page, node)
            pinned.insert(page)
        }
        freedByCheckpointInFlight = freedThisEpoch
        freedThisEpoch.removeAll()
        let oldFreeListPages = freeListPages
        let durableFree = free + freedByCheckpointInFlight + oldFreeListPages
        let listPageCount = (durableFree.count + Self.freeListEntriesPerPage - 1) / Self.freeListEntriesPerPage
        let newListPages = (0..<UInt64(listPageCount)).map { pageCount + $0 }
        pageCount += UInt64(listPageCount)
        let snapshotRoot = root
        let snapshotPageCount = pageCount

        var pages: [(number: UInt64, fill: (UnsafeMutableRawPointer) -> Void)] = []
        for (page, node) in nodes {
            pages.append((page, { node.encode(into: $0, number: page, generation: newGeneration) }))
        }
        for (first, value) in blobs {
            for index in 0..<Self.overflowPages(for: value.count) {
                let number = first + UInt64(index)
                pages.append(
                    (
                        number,
                        { page in
                            let start = index * BTreePage.overflowDataBytes
                            let count = min(BTreePage.overflowDataBytes, value.count - start)
                            value.withUnsafeBytes {
                                (page + BTreePage.headerBytes).copyMemory(
                                    from: $0.baseAddress! + start, byteCount: count)
                            }
                            memset(page + BTreePage.headerBytes + count, 0, BTreePage.overflowDataBytes - count)
                            BTreePage.seal(
                                page, kind: .overflow, count: count, number: number, generation: newGeneration)
                        }
                    ))
            }
        }
        for (index, number) in newListPages.enumerated() {
            let entries = Array(
                durableFree.dropFirst(index * Self.freeListEntriesPerPage).prefix(Self.freeListEntriesPerPage))
            let next = index + 1 < newListPages.count ? newListPages[index + 1] : 0
            pages.append(
                (
                    number,
                    { page in
                        var writer = PageWriter(base: page, offset: BTreePage.headerBytes)
                        writer.put(next)
                        for entry in entries { writer.put(entry) }
                        memset(page + writer.offset, 0, BTreePage.size - writer.offset)
                        BTreePage.seal(
                            page, kind: .freeList, count: entries.count, number: number, generation: newGeneration)
                    }
                ))
        }
        pages.sort { $0.number < $1.number }
        return CheckpointPlan(
            generation: newGeneration, lsn: lsn, pages: pages,
            root: snapshotRoot, pageCount: snapshotPageCount, freeListFirst: newListPages.first ?? 0,
            freeCount: durableFree.count, oldFreeListPages: oldFreeListPages, newFreeListPages: newListPages)
    }

    /// The asynchronous half: encodes and writes the planned pages a batch at a time (each
    /// batch's runs of consecutive page numbers in flight together), syncs, writes the
    /// superblock, syncs. Only then are the pages this epoch freed reusable. Other tree
    /// operations run between the batches.
    public func writeCheckpoint(_ plan: CheckpointPlan) async throws(StorageError) {
        defer { checkpointing = false }
        let buffer = AlignedBytes(count: Self.checkpointBatchPages * BTreePage.size)
        var batchStart = 0
        while batchStart < plan.pages.count {
            let batch = plan.pages[batchStart..<min(plan.pages.count, batchStart + Self.checkpointBatchPages)]
            var runs: [(buffer: UnsafeRawBufferPointer, offset: UInt64)] = []
            var runStart = batch.startIndex
            for index in batch.indices {
                batch[index].fill(buffer.pointer + (index - batch.startIndex) * BTreePage.size)
                if index + 1 == batch.endIndex || batch[index + 1].number != batch[index].number + 1 {
                    let slots = (runStart - batch.startIndex)..<(index + 1 - batch.startIndex)
                    let bytes = buffer.slice((slots.lowerBound * BTreePage.size)..<(slots.upperBound * BTreePage.size))
                    runs.append((UnsafeRawBufferPointer(bytes), batch[runStart].number * UInt64(BTreePage.size)))
                    runStart = index + 1
                }
            }
            try await file.write(runs: runs)
            batchStart = batch.endIndex
        }
        try await file.synchronize()
        try await writeSuperblock(
            generation: plan.generation, root: plan.root, pageCount: plan.pageCount, lsn: plan.lsn,
            freeListFirst: plan.freeListFirst, freeCount: plan.freeCount)
        try await file.synchronize()

        generation = plan.generation
        checkpointLSN = plan.lsn
        free += freedByCheckpointInFlight + plan.oldFreeListPages
        freedByCheckpointInFlight.removeAll()
        freeListPages = plan.newFreeListPages
        pinned.removeAll()
        blobsInFlight.removeAll()
        cache.capacity = cleanPageBudget
        cache.trim(pinned: pinned)
    }

    func writeSuperblock(
        generation: UInt64 = 0, root: UInt64 = 0, pageCount: UInt64 = 2, lsn: UInt64 = 0,
        freeListFirst: UInt64 = 0, freeCount: Int = 0
    ) async throws(StorageError) {
        let block = AlignedBytes(count: BTreePage.size)
        var writer = PageWriter(base: block.pointer, offset: BTreePage.headerBytes)
        writer.put(Self.superblockMagic)
        writer.put(Self.formatVersion)
        writer.put(UInt16(0))
        writer.put(UInt32(BTreePage.size))
        writer.put(UInt32(0))
        writer.put(generation)
        writer.put(root)
        writer.put(pageCount)
        writer.put(lsn)
        writer.put(freeListFirst)
        writer.put(UInt64(freeCount))
        let slot = generation % 2
        BTreePage.seal(block.pointer, kind: .superblock, count: 0, number: slot, generation: generation)
        try await file.write(UnsafeRawBufferPointer(block.bytes), at: slot * UInt64(BTreePage.size))
    }

    /// Reads both superblock slots and takes the newest valid one; then the free list.
    func loadSuperblock() async throws(StorageError) {
        let block = AlignedBytes(count: BTreePage.size)
        var best:
            (generation: UInt64, root: UInt64, pageCount: UInt64, lsn: UInt64, freeFirst: UInt64, freeCount: UInt64)?
        for slot in UInt64(0)...1 {
            let read = try await file.read(into: block.bytes, at: slot * UInt64(BTreePage.size))
            guard read == BTreePage.size, let header = BTreePage.open(block.pointer, expectedNumber: slot),
                header.kind == .superblock
            else { continue }
            var reader = PageReader(base: block.pointer, offset: BTreePage.headerBytes, limit: BTreePage.size)
            guard reader.get(UInt32.self) == Self.superblockMagic, reader.get(UInt16.self) == Self.formatVersion,
                reader.get(UInt16.self) != nil, reader.get(UInt32.self) == UInt32(BTreePage.size),
                reader.get(UInt32.self) != nil,
                let generation = reader.get(UInt64.self), let root = reader.get(UInt64.self),
                let pageCount = reader.get(UInt64.self), let lsn = reader.get(UInt64.self),
                let freeFirst = reader.get(UInt64.self), let freeCount = reader.get(UInt64.self)
            else { continue }
            if best == nil || generation > best!.generation {
                best = (generation, root, pageCount, lsn, freeFirst, freeCount)
            }
        }
        guard let best else {
            throw .corruption(
                file: name, offset: 0, detail: "both superblocks fail their checksums: the tree cannot be found")
        }
        generation = best.generation
        root = best.root
        pageCount = best.pageCount
        checkpointLSN = best.lsn
        var page = best.freeFirst
        while page != 0 && free.count < Int(best.freeCount) {
            let read = try await file.read(into: block.bytes, at: page * UInt64(BTreePage.size))
            guard read == BTreePage.size, let header = BTreePage.open(block.pointer, expectedNumber: page),
                header.kind == .freeList, freeListPages.count < Int(best.pageCount)
            else {
                throw .corruption(
                    file: name, offset: page * UInt64(BTreePage.size), detail: "free-list page \(page) is damaged")
            }
            var reader = PageReader(base: block.pointer, offset: BTreePage.headerBytes, limit: BTreePage.size)
            let next = reader.get(UInt64.self) ?? 0
            for _ in 0..<header.count { if let entry = reader.get(UInt64.self) { free.append(entry) } }
            freeListPages.append(page)
            page = next
        }
        guard free.count == Int(best.freeCount) else {
            throw .corruption(
                file: name, offset: 0,
                detail: "the free list holds \(free.count) pages, the superblock says \(best.freeCount)")
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
