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

/// A snapshot as a stream of checksummed chunks, and its installation in another replica.
///
/// The sender reads the tree a chunk at a time, each under the tree lock, so writes go on
/// between chunks: the stream is fuzzy, each key as of some slot at or after the
/// snapshot's. Every write is a blind put or delete of a whole value, so a receiver that
/// installs the stream and then applies every entry after the snapshot's slot, in order,
/// holds exactly the sender's state (each key ends with its last write, or, if it had none
/// since the snapshot's slot, with the value the stream carried, which no write changed).
/// The sender must keep those entries until the receiver has them.
///
/// The receiver installs into its tree directly, without logging: until the checkpoint
/// that ends the installation the tree on disk is the old one, so a crash part-way leaves
/// the replica as it was, and the stream starts again.
extension ReplicaStore {
    /// Starts a stream of this replica's snapshot.
    public func beginSnapshot() -> SnapshotCursor {
        SnapshotCursor(slot: appliedSlot)
    }

    /// The next chunk of the stream at `cursor`: entries after the cursor's key, up to
    /// about `bytesMax` bytes of payload (at least one entry), and the cursor after it.
    public func readSnapshotChunk(
        at cursor: SnapshotCursor, bytesMax: Int = 1 << 20
    ) async throws(StorageError) -> (chunk: SnapshotChunk, next: SnapshotCursor) {
        precondition(!cursor.finished, "a snapshot stream read past its end")
        if let fenced { throw .fenced(fenced.description) }
        var writes: [StoreWrite] = []
        var bytes = 5
        var next = cursor
        var more = true
        await treeLock.acquire(.tree)
        defer { treeLock.release(.tree) }
        while more && bytes < bytesMax {
            let batch = try await tree.scan(from: next.after.map { $0 + [0] }, limit: 64)
            more = batch.count == 64
            for (key, value) in batch {
                next.after = key
                if key == Self.appliedSlotKey { continue }  // the receiver's is its own
                writes.append(.put(key: key, value: value))
                bytes += 9 + key.count + value.count
                if bytes >= bytesMax {
                    more = true
                    break
                }
            }
        }
        let chunk = SnapshotChunk(
            slot: cursor.slot, index: cursor.index, last: !more, payload: StoreWrite.encodeEntry(writes))
        next.index += 1
        next.finished = !more
        return (chunk, next)
    }

    /// Starts installing the snapshot of `slot`: the tree is emptied (nothing is logged;
    /// see above). No write may reach this replica until `finishInstall`.
    public func beginInstall(slot: UInt64) async throws(StorageError) -> SnapshotCursor {
        if let fenced { throw .fenced(fenced.description) }
        await treeLock.acquire(.tree)
        defer { treeLock.release(.tree) }
        while true {
            let batch = try await tree.scan(from: nil, limit: 256)
            if batch.isEmpty { break }
            for (key, _) in batch { try await tree.delete(key) }
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
    public func snapshotImage() async throws(StorageError) -> [UInt8] {
        var image: [UInt8] = []
        var cursor = beginSnapshot()
        while !cursor.finished {
            let (chunk, next) = try await readSnapshotChunk(at: cursor)
            withUnsafeBytes(of: chunk.slot.littleEndian) { image += $0 }
            withUnsafeBytes(of: chunk.index.littleEndian) { image += $0 }
            image.append(chunk.last ? 1 : 0)
            withUnsafeBytes(of: chunk.checksum.littleEndian) { image += $0 }
            withUnsafeBytes(of: UInt32(chunk.payload.count).littleEndian) { image += $0 }
            image += chunk.payload
            cursor = next
        }
        return image
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
        }
        guard position == image.count else {
            throw .corruption(file: "snapshot", offset: UInt64(position), detail: "bytes follow the last chunk")
        }
        try await finishInstall(cursor)
    }
}
