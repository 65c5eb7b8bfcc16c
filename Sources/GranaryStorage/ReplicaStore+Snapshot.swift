import CShims

/// One piece of a replica's snapshot as it travels to another replica: some of the tree's
/// entries, in key order, with a checksum over everything the receiver relies on.
public struct SnapshotChunk: Sendable, Equatable {
    /// The snapshot's slot: the one the sender had applied when the stream began.
    public var slot: UInt64
    /// The chunk's place in the stream, from 0.
    public var index: UInt32
    public var last: Bool
    /// The entries as puts (`StoreWrite.encodeEntry`).
    public var payload: [UInt8]
    public var checksum: UInt32

    init(slot: UInt64, index: UInt32, last: Bool, payload: [UInt8]) {
        self.slot = slot
        self.index = index
        self.last = last
        self.payload = payload
        checksum = 0
        checksum = computedChecksum
    }

    /// CRC32C over the slot, the index, the last flag and the payload.
    var computedChecksum: UInt32 {
        var header = [UInt8]()
        withUnsafeBytes(of: slot.littleEndian) { header += $0 }
        withUnsafeBytes(of: index.littleEndian) { header += $0 }
        header.append(last ? 1 : 0)
        let crc = header.withUnsafeBytes { granary_crc32c(0, $0.baseAddress, $0.count) }
        return payload.withUnsafeBytes { granary_crc32c(crc, $0.baseAddress, $0.count) }
    }
}

/// Where a snapshot stream stands: what the sender reads next, what the receiver expects.
public struct SnapshotCursor: Sendable, Equatable {
    public var slot: UInt64
    public var index: UInt32 = 0
    /// The last key sent or installed; nil before the first.
    public var after: [UInt8]?
    public var finished = false
}

/// A snapshot as checksummed chunks, read from one replica's tree and installed in another's.
///
/// The sender reads its tree a batch at a time, each under the tree lock, so applies go on
/// between batches; the keys they write meanwhile are recorded, and read again at the end,
/// under the lock, with the slot applied then. The image is the tree exactly as of that
/// slot, its label, and no write waits for more than one batch.
///
/// The receiver installs into its tree directly, without logging: until the checkpoint
/// that ends the installation the tree on disk is the old one, so a crash part-way leaves
/// the replica as it was, and the stream starts again.
extension ReplicaStore {
    /// The most keys an image read records as written meanwhile; past it, the read gives up.
    static var imageWrittenKeysMax: Int { 1 << 20 }

    /// The tree's entries, exactly as of the slot returned (see above), nil if the tree was
    /// replaced by an installation meanwhile or too many keys were written.
    public func snapshotEntries(
        batchBytes: Int = 1 << 20
    ) async throws(StorageError) -> (slot: UInt64, entries: [(key: [UInt8], value: [UInt8])])? {
        let read = nextImageRead
        nextImageRead += 1
        imageReads[read] = []
        defer { imageReads[read] = nil }
        let installsAtStart = installs
        var entries: [(key: [UInt8], value: [UInt8])] = []
        var after: [UInt8]?
        var more = true
        var readBytes = 0
        while more {
            // A batch from the page cache need not wait for anything: let this core's other
            // work (heartbeats, requests, I/O completions) in between.
            await Task.yield()
            if let fenced { throw .fenced(fenced.description) }
            await treeLock.acquire(.tree)
            defer { treeLock.release(.tree) }
            var bytes = 0
            while more && bytes < batchBytes {
                // A scan reads every value it returns: ask for about what the batch has
                // room for, at the entries' average size so far.
                let average = entries.isEmpty ? 256 : max(1, readBytes / entries.count)
                let limit = min(256, max(1, (batchBytes - bytes) / average))
                let batch = try await tree.scan(from: after.map { $0 + [0] }, limit: limit)
                more = batch.count == limit
                for (key, value) in batch {
                    after = key
                    if key == Self.appliedSlotKey { continue }  // the receiver's is its own
                    entries.append((key, value))
                    bytes += key.count + value.count
                    readBytes += key.count + value.count
                }
            }
        }
        if let fenced { throw .fenced(fenced.description) }
        await treeLock.acquire(.tree)
        defer { treeLock.release(.tree) }
        guard installs == installsAtStart, let written = imageReads[read], written.count <= Self.imageWrittenKeysMax
        else { return nil }
        var rewritten: [(key: [UInt8], value: [UInt8]?)] = []
        for key in written.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            rewritten.append((key, try await tree.get(key)))
        }
        return (appliedSlot, Self.merge(entries, rewritten))
    }

    /// `entries` (in key order) with `rewritten` (in key order) put over them: a value
    /// replaces or adds its key, nil removes it.
    static func merge(
        _ entries: [(key: [UInt8], value: [UInt8])], _ rewritten: [(key: [UInt8], value: [UInt8]?)]
    ) -> [(key: [UInt8], value: [UInt8])] {
        guard !rewritten.isEmpty else { return entries }
        var merged: [(key: [UInt8], value: [UInt8])] = []
        merged.reserveCapacity(entries.count + rewritten.count)
        var next = 0
        for entry in entries {
            while next < rewritten.count && rewritten[next].key.lexicographicallyPrecedes(entry.key) {
                if let value = rewritten[next].value { merged.append((rewritten[next].key, value)) }
                next += 1
            }
            if next < rewritten.count && rewritten[next].key == entry.key {
                if let value = rewritten[next].value { merged.append((entry.key, value)) }
                next += 1
            } else {
                merged.append(entry)
            }
        }
        for (key, value) in rewritten[next...] { if let value { merged.append((key, value)) } }
        return merged
    }

    /// Records that `key` was written, for the image reads in progress.
    func noteWritten(_ key: [UInt8]) {
        guard !imageReads.isEmpty else { return }
        for read in imageReads.keys where imageReads[read]!.count <= Self.imageWrittenKeysMax {
            imageReads[read]!.insert(key)
        }
    }

    /// `entries` as a stream of chunks of the snapshot of `slot`, each of about `bytesMax`
    /// bytes of payload (at least one entry; one empty chunk for no entries).
    public static func chunks(
        of entries: [(key: [UInt8], value: [UInt8])], slot: UInt64, bytesMax: Int = 1 << 20
    ) -> [SnapshotChunk] {
        var chunks: [SnapshotChunk] = []
        var writes: [StoreWrite] = []
        var bytes = 5
        for (position, (key, value)) in entries.enumerated() {
            writes.append(.put(key: key, value: value))
            bytes += 9 + key.count + value.count
            let last = position == entries.count - 1
            if bytes >= bytesMax || last {
                chunks.append(
                    SnapshotChunk(
                        slot: slot, index: UInt32(chunks.count), last: last, payload: StoreWrite.encodeEntry(writes)))
                writes = []
                bytes = 5
            }
        }
        if chunks.isEmpty {
            chunks.append(SnapshotChunk(slot: slot, index: 0, last: true, payload: StoreWrite.encodeEntry([])))
        }
        return chunks
    }

    /// Starts installing the snapshot of `slot`: the tree is emptied (nothing is logged;
    /// see above). No write may reach this replica until `finishInstall`.
    public func beginInstall(slot: UInt64) async throws(StorageError) -> SnapshotCursor {
        if let fenced { throw .fenced(fenced.description) }
        await treeLock.acquire(.tree)
        defer { treeLock.release(.tree) }
        installs += 1
        while true {
            let batch = try await tree.scan(from: nil, limit: 256)
            if batch.isEmpty { break }
            for (key, _) in batch { try await tree.delete(key) }
            await Task.yield()
        }
        return SnapshotCursor(slot: slot)
    }

    /// Installs the next chunk of the stream. A chunk whose checksum fails, or that is not
    /// the one expected (another snapshot, out of order, after the last), is refused with
    /// `.corruption` and changes nothing: the stream must start again.
    public func installChunk(
        _ chunk: SnapshotChunk, at cursor: SnapshotCursor
    ) async throws(StorageError) -> SnapshotCursor {
        guard chunk.checksum == chunk.computedChecksum else {
            throw .corruption(
                file: "snapshot", offset: UInt64(chunk.index), detail: "chunk \(chunk.index) fails its checksum")
        }
        guard !cursor.finished, chunk.slot == cursor.slot, chunk.index == cursor.index else {
            throw .corruption(
                file: "snapshot", offset: UInt64(chunk.index),
                detail:
                    "chunk \(chunk.index) of slot \(chunk.slot) arrived where chunk \(cursor.index) "
                    + "of slot \(cursor.slot) was expected"
            )
        }
        guard let writes = StoreWrite.decodeEntry(chunk.payload) else {
            throw .corruption(
                file: "snapshot", offset: UInt64(chunk.index), detail: "chunk \(chunk.index) does not parse")
        }
        var next = cursor
        for write in writes {
            guard case .put(let key, _) = write, next.after.map({ $0.lexicographicallyPrecedes(key) }) ?? true else {
                throw .corruption(
                    file: "snapshot", offset: UInt64(chunk.index),
                    detail: "chunk \(chunk.index) is not puts in key order")
            }
            next.after = key
        }
        await treeLock.acquire(.tree)
        defer { treeLock.release(.tree) }
        for case .put(let key, let value) in writes { try await tree.put(key, value) }
        next.index += 1
        next.finished = chunk.last
        return next
    }

    /// Ends an installation whose last chunk is in: the replica has applied the
    /// snapshot's slot, and a checkpoint makes the tree durable with it.
    public func finishInstall(_ cursor: SnapshotCursor) async throws(StorageError) {
        guard cursor.finished else {
            throw .corruption(
                file: "snapshot", offset: UInt64(cursor.index), detail: "the stream ended before its last chunk")
        }
        appliedSlot = cursor.slot
        forgetEntries(through: cursor.slot)
        await log.restartSlots(after: cursor.slot)
        try await checkpoint()
    }
}

/// A whole snapshot in one piece, for a snapshot small enough to travel in one message:
/// its chunks one after another, each framed by its slot (8 bytes), index (4), last flag
/// (1), checksum (4) and payload length (4), little-endian, then its payload.
extension ReplicaStore {
    /// The tree's image as of the slot returned (`snapshotEntries`), nil if it could not
    /// be read whole.
    public func snapshotImage(batchBytes: Int = 1 << 20) async throws(StorageError) -> (slot: UInt64, image: [UInt8])? {
        guard let (slot, entries) = try await snapshotEntries(batchBytes: batchBytes) else { return nil }
        var image: [UInt8] = []
        for chunk in Self.chunks(of: entries, slot: slot) {
            withUnsafeBytes(of: chunk.slot.littleEndian) { image += $0 }
            withUnsafeBytes(of: chunk.index.littleEndian) { image += $0 }
            image.append(chunk.last ? 1 : 0)
            withUnsafeBytes(of: chunk.checksum.littleEndian) { image += $0 }
            withUnsafeBytes(of: UInt32(chunk.payload.count).littleEndian) { image += $0 }
            image += chunk.payload
        }
        return (slot, image)
    }

    /// Installs a snapshot image (`snapshotImage`) of `slot`. A damaged or foreign image is
    /// refused with `.corruption`, the tree left emptied: the caller must install again.
    public func installImage(_ image: [UInt8], slot: UInt64) async throws(StorageError) {
        var cursor = try await beginInstall(slot: slot)
        var position = 0
        func field<T: FixedWidthInteger>(_: T.Type) throws(StorageError) -> T {
            let size = MemoryLayout<T>.size
            guard image.count - position >= size else {
                throw .corruption(file: "snapshot", offset: UInt64(position), detail: "the image ends inside a chunk")
            }
            defer { position += size }
            return (0..<size).reduce(T.zero) { $0 | T(image[position + $1]) << (8 * $1) }
        }
        while !cursor.finished {
            let chunkSlot = try field(UInt64.self), index = try field(UInt32.self), last = try field(UInt8.self)
            let checksum = try field(UInt32.self), length = Int(try field(UInt32.self))
            guard image.count - position >= length else {
                throw .corruption(file: "snapshot", offset: UInt64(position), detail: "the image ends inside a chunk")
            }
            var chunk = SnapshotChunk(
                slot: chunkSlot, index: index, last: last == 1, payload: Array(image[position..<position + length]))
            chunk.checksum = checksum
            position += length
            cursor = try await installChunk(chunk, at: cursor)
            await Task.yield()  // as when an image is read
        }
        guard position == image.count else {
            throw .corruption(file: "snapshot", offset: UInt64(position), detail: "bytes follow the last chunk")
        }
        try await finishInstall(cursor)
    }
}
