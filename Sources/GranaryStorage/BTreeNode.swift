/// A leaf's value: in the page, or in a run of overflow pages.
enum LeafValue: Equatable {
    case inline([UInt8])
    case overflow(firstPage: UInt64, pageCount: UInt32, length: UInt32)

    var encodedBytes: Int {
        switch self {
        case .inline(let bytes): return bytes.count
        case .overflow: return 12
        }
    }
}

/// One B-tree node in memory. Leaves hold keys and values in key order; a branch holds
/// `children.count == keys.count + 1` page numbers, and `keys[i]` is the smallest key
/// under `children[i + 1]`.
///
/// A node read from disk stays in its page (a view: the page and the offset of each
/// entry) and is searched and read in place, so a read allocates one small array, not one
/// per key and value. The first write to it decodes it into arrays (`materialize`); the
/// tree's writers touch `keys`, `values` and `children` only after that, and readers go
/// through the accessors, which serve either form.
final class BTreeNode {
    let isLeaf: Bool
    var keys: [[UInt8]] { didSet { knownEncodedBytes = nil } }
    var values: [LeafValue] { didSet { knownEncodedBytes = nil } }
    /// A branch's size depends on its keys alone (a child is 8 bytes, one more than keys).
    var children: [UInt64]
    /// `encodedBytes` as last computed: a write changes one leaf, and the branches above it
    /// were measured on every write (a tenth of PutItem's B-tree CPU, perf) without changing.
    private var knownEncodedBytes: Int?
    /// The page this node was read from, and where each entry starts in it; nil once
    /// materialized (or for a node made in memory).
    private var page: AlignedBytes?
    private var entryOffsets: [UInt16] = []
    private var firstChild: UInt64 = 0

    init(isLeaf: Bool, keys: [[UInt8]] = [], values: [LeafValue] = [], children: [UInt64] = []) {
        self.isLeaf = isLeaf
        self.keys = keys
        self.values = values
        self.children = children
    }

    private init(view page: AlignedBytes, isLeaf: Bool, offsets: [UInt16], firstChild: UInt64) {
        self.isLeaf = isLeaf
        keys = []
        values = []
        children = []
        self.page = page
        entryOffsets = offsets
        self.firstChild = firstChild
    }

    var isView: Bool { page != nil }

    /// Entries (keys) in the node.
    var count: Int { page == nil ? keys.count : entryOffsets.count }

    /// Children of a branch.
    var childCount: Int { isLeaf ? 0 : count + 1 }

    /// The key of entry `index`, as bytes in the page or the array.
    private func withKey<R>(at index: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard let page else { return keys[index].withUnsafeBytes(body) }
        let offset = Int(entryOffsets[index])
        let length = Int(page.pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
        let start = offset + (isLeaf ? 7 : 2)
        return body(UnsafeRawBufferPointer(start: page.pointer + start, count: length))
    }

    func key(at index: Int) -> [UInt8] {
        withKey(at: index) { Array($0) }
    }

    func child(at index: Int) -> UInt64 {
        guard let page else { return children[index] }
        if index == 0 { return firstChild }
        let offset = Int(entryOffsets[index - 1])
        let length = Int(page.pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
        return UInt64(littleEndian: page.pointer.loadUnaligned(fromByteOffset: offset + 2 + length, as: UInt64.self))
    }

    func value(at index: Int) -> LeafValue {
        guard let page else { return values[index] }
        let offset = Int(entryOffsets[index])
        let keyLength = Int(page.pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
        let kind = page.pointer.load(fromByteOffset: offset + 2, as: UInt8.self)
        let length = UInt32(littleEndian: page.pointer.loadUnaligned(fromByteOffset: offset + 3, as: UInt32.self))
        let start = offset + 7 + keyLength
        if kind == 0 {
            return .inline(Array(UnsafeRawBufferPointer(start: page.pointer + start, count: Int(length))))
        }
        return .overflow(
            firstPage: UInt64(littleEndian: page.pointer.loadUnaligned(fromByteOffset: start, as: UInt64.self)),
            pageCount: UInt32(littleEndian: page.pointer.loadUnaligned(fromByteOffset: start + 8, as: UInt32.self)),
            length: length)
    }

    /// Gives up the page buffer of a node nobody will read again (an evicted one), so that
    /// the cache can read another page into it.
    func releasePage() -> AlignedBytes? {
        defer { page = nil }
        return page
    }

    /// A materialized node with this one's entries.
    func materializedCopy() -> BTreeNode {
        guard isView else { return BTreeNode(isLeaf: isLeaf, keys: keys, values: values, children: children) }
        return BTreeNode(
            isLeaf: isLeaf, keys: (0..<count).map { key(at: $0) },
            values: isLeaf ? (0..<count).map { value(at: $0) } : [],
            children: isLeaf ? [] : (0...count).map { child(at: $0) })
    }

    /// Decodes a view into arrays, so the node can be changed.
    func materialize() {
        guard page != nil else { return }
        let count = entryOffsets.count
        var newKeys: [[UInt8]] = []
        newKeys.reserveCapacity(count)
        for index in 0..<count { newKeys.append(key(at: index)) }
        if isLeaf {
            values = (0..<count).map { value(at: $0) }
        } else {
            children = (0...count).map { child(at: $0) }
        }
        keys = newKeys
        page = nil
        entryOffsets = []
    }

    /// The memory the tree accounts this node at while it is dirty (set by the tree).
    var accountedBytes = 0

    /// Roughly the heap memory of a materialized node: its encoded bytes, plus per entry
    /// the headers and malloc rounding of its key's array and (in a leaf) its value's, and
    /// its slots in the node's own arrays. 160 bytes per leaf entry is what keeps peak RSS
    /// of 16 durable writers within the budget plus 20 MiB (120 let it pass by 22 at a
    /// 32 MiB budget; BENCHMARKS.md, "Memory budget").
    var footprint: Int {
        encodedBytes + count * (isLeaf ? 160 : 64) + 256
    }

    /// Bytes this node takes encoded; more than a page means it must split.
    var encodedBytes: Int {
        precondition(!isView, "sizes are computed for materialized nodes")
        if let knownEncodedBytes { return knownEncodedBytes }
        let bytes =
            isLeaf
            ? BTreePage.headerBytes + zip(keys, values).reduce(0) { $0 + 7 + $1.0.count + $1.1.encodedBytes }
            : BTreePage.headerBytes + 8 + keys.reduce(0) { $0 + 2 + $1.count + 8 }
        knownEncodedBytes = bytes
        return bytes
    }

    /// The index of the first key >= `key` (binary search), and whether it is equal.
    func search(_ key: [UInt8]) -> (index: Int, found: Bool) {
        if let page { return Self.search(key, in: page.pointer, offsets: entryOffsets, keyStart: isLeaf ? 7 : 2) }
        // The array read once: per comparison, a class property's read is a dynamic
        // exclusivity check and a retain.
        return key.withUnsafeBytes { target in
            keys.withUnsafeBufferPointer { keys in
                var low = 0
                var high = keys.count
                while low < high {
                    let middle = (low + high) / 2
                    if keys[middle].withUnsafeBytes({ Self.compare($0, target) }) < 0 {
                        low = middle + 1
                    } else {
                        high = middle
                    }
                }
                return (low, low < keys.count && keys[low].withUnsafeBytes({ Self.compare($0, target) }) == 0)
            }
        }
    }

    /// The search of a view, on locals: a read of a class's stored property is a dynamic
    /// exclusivity check, and per comparison they were a tenth of uncached reads' CPU (perf).
    private static func search(
        _ key: [UInt8], in base: UnsafeMutableRawPointer, offsets: [UInt16], keyStart: Int
    ) -> (index: Int, found: Bool) {
        key.withUnsafeBytes { target in
            offsets.withUnsafeBufferPointer { offsets in
                func keyBytes(_ index: Int) -> UnsafeRawBufferPointer {
                    let offset = Int(offsets[index])
                    let length = Int(base.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
                    return UnsafeRawBufferPointer(start: base + offset + keyStart, count: length)
                }
                var low = 0
                var high = offsets.count
                while low < high {
                    let middle = (low + high) / 2
                    if compare(keyBytes(middle), target) < 0 { low = middle + 1 } else { high = middle }
                }
                return (low, low < offsets.count && compare(keyBytes(low), target) == 0)
            }
        }
    }

    /// memcmp order, shorter first on a common prefix: the order of `[UInt8]` keys.
    private static func compare(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Int {
        let common = min(left.count, right.count)
        if common > 0 {
            let result = memcmp(left.baseAddress!, right.baseAddress!, common)
            if result != 0 { return Int(result) }
        }
        return left.count - right.count
    }

    /// The child to descend into for `key`.
    func childIndex(for key: [UInt8]) -> Int {
        let (index, found) = search(key)
        return found ? index + 1 : index
    }

    func encode(into page: UnsafeMutableRawPointer, number: UInt64, generation: UInt64) {
        precondition(!isView, "only a materialized (dirty) node is written")
        precondition(encodedBytes <= BTreePage.size, "a node larger than a page was not split")
        var writer = PageWriter(base: page, offset: BTreePage.headerBytes)
        if isLeaf {
            for (key, value) in zip(keys, values) {
                writer.put(UInt16(key.count))
                switch value {
                case .inline(let bytes):
                    writer.put(UInt8(0))
                    writer.put(UInt32(bytes.count))
                    writer.put(key)
                    writer.put(bytes)
                case .overflow(let first, let count, let length):
                    writer.put(UInt8(1))
                    writer.put(length)
                    writer.put(key)
                    writer.put(first)
                    writer.put(count)
                }
            }
        } else {
            writer.put(children[0])
            for (key, child) in zip(keys, children.dropFirst()) {
                writer.put(UInt16(key.count))
                writer.put(key)
                writer.put(child)
            }
        }
        memset(page + writer.offset, 0, BTreePage.size - writer.offset)
        BTreePage.seal(page, kind: isLeaf ? .leaf : .branch, count: keys.count, number: number, generation: generation)
    }

    /// A view of a verified leaf or branch page (which it keeps); nil if its entries do
    /// not parse within the page.
    static func view(_ page: AlignedBytes, header: BTreePage.Header) -> BTreeNode? {
        var reader = PageReader(base: page.pointer, offset: BTreePage.headerBytes, limit: BTreePage.size)
        var offsets: [UInt16] = []
        offsets.reserveCapacity(header.count)
        switch header.kind {
        case .leaf:
            for _ in 0..<header.count {
                offsets.append(UInt16(reader.offset))
                guard let keyLength = reader.get(UInt16.self), let kind = reader.get(UInt8.self),
                    let length = reader.get(UInt32.self), reader.skip(Int(keyLength)),
                    reader.skip(kind == 0 ? Int(length) : 12)
                else { return nil }
            }
            return BTreeNode(view: page, isLeaf: true, offsets: offsets, firstChild: 0)
        case .branch:
            guard let first = reader.get(UInt64.self) else { return nil }
            for _ in 0..<header.count {
                offsets.append(UInt16(reader.offset))
                guard let keyLength = reader.get(UInt16.self), reader.skip(Int(keyLength)), reader.skip(8) else {
                    return nil
                }
            }
            return BTreeNode(view: page, isLeaf: false, offsets: offsets, firstChild: first)
        default:
            return nil
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
