import GranaryModel
import GranaryStorage

/// What an item's change does to its table's local secondary indexes: each index entry
/// the old item had and the new one has not (or under another key) deleted, each entry of
/// the new item put unless it is the old one unchanged; logged in the same entry as the
/// item, so that the indexes and the table never disagree.
///
/// An entry's value is the projected item (`ItemCodec`), or a reference: only the keys and
/// `IndexMaintenance.referenceMarker`, the rest to be read from the table. An entry is a
/// reference when the copies would not fit one log entry with the item (a 400 KB item
/// projected whole into three indexes is past the log's 1 MiB record).
struct IndexWrites {
    var writes: [StoreWrite] = []
    /// Per index whose entry changed: DynamoDB's size of the old entry and the new (nil:
    /// none), for its statistics.
    var counts: [(index: UInt32, old: Int?, new: Int?)] = []
    /// About what the writes add to a log entry.
    var bytes = 0

    /// The writes for `maintenance`'s indexes, in at most `bytesMax` bytes of log entry.
    init(_ maintenance: IndexMaintenance?, old: Item?, new: Item?, bytesMax: Int = .max) {
        guard let maintenance, !maintenance.localIndexes.isEmpty else { return }
        var puts: [(key: [UInt8], item: Item, keys: Item)] = []
        for index in maintenance.localIndexes {
            let before = old.flatMap { maintenance.entry(of: $0, in: index) }
            let after = new.flatMap { maintenance.entry(of: $0, in: index) }
            if let before, let after, before.key == after.key, before.item == after.item { continue }
            if let before, before.key != after?.key {
                writes.append(.delete(key: before.key))
                bytes += 5 + before.key.count
            }
            if let after {
                let keys = after.item.filter { maintenance.isKey($0.key, of: index) }
                puts.append((after.key, after.item, keys))
            }
            let newSize = after?.item.sizeBytes
            if before != nil || newSize != nil { counts.append((index.id, before?.item.sizeBytes, newSize)) }
        }
        // Copies while they fit, the largest made references first when they do not.
        var encoded = puts.map { ItemCodec.encode($0.item) }
        var total = bytes + zip(puts, encoded).reduce(0) { $0 + 9 + $1.0.key.count + $1.1.count }
        for position in encoded.indices.sorted(by: { encoded[$0].count > encoded[$1].count }) where total > bytesMax {
            var keys = puts[position].keys
            keys[IndexMaintenance.referenceMarker] = .null
            let reference = ItemCodec.encode(keys)
            total -= encoded[position].count - reference.count
            encoded[position] = reference
        }
        for (put, value) in zip(puts, encoded) { writes.append(.put(key: put.key, value: value)) }
        bytes = total
    }

    /// Another write to go with these (a global index's outbox record).
    mutating func add(_ write: StoreWrite) {
        writes.append(write)
        if case .put(let key, let value) = write { bytes += 9 + key.count + value.count }
    }
}
