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
final class BTreeNode {
    var isLeaf: Bool
    var keys: [[UInt8]]
    var values: [LeafValue]
    var children: [UInt64]

    init(isLeaf: Bool, keys: [[UInt8]] = [], values: [LeafValue] = [], children: [UInt64] = []) {
        self.isLeaf = isLeaf
        self.keys = keys
        self.values = values
        self.children = children
    }

    /// Bytes this node takes encoded; more than a page means it must split.
    var encodedBytes: Int {
        if isLeaf {
            return BTreePage.headerBytes + zip(keys, values).reduce(0) { $0 + 7 + $1.0.count + $1.1.encodedBytes }
        }
        return BTreePage.headerBytes + 8 + keys.reduce(0) { $0 + 2 + $1.count + 8 }
    }

    /// The index of the first key >= `key` (binary search), and whether it is equal.
    func search(_ key: [UInt8]) -> (index: Int, found: Bool) {
        var low = 0
        var high = keys.count
        while low < high {
            let middle = (low + high) / 2
            if keys[middle].lexicographicallyPrecedes(key) { low = middle + 1 } else { high = middle }
        }
        return (low, low < keys.count && keys[low] == key)
    }

    /// The child to descend into for `key`.
    func childIndex(for key: [UInt8]) -> Int {
        let (index, found) = search(key)
        return found ? index + 1 : index
    }

    func encode(into page: UnsafeMutableRawPointer, number: UInt64, generation: UInt64) {
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

    /// Decodes a verified leaf or branch page; nil if its contents do not parse.
    static func decode(_ page: UnsafeRawPointer, header: BTreePage.Header) -> BTreeNode? {
        var reader = PageReader(base: page, offset: BTreePage.headerBytes, limit: BTreePage.size)
        switch header.kind {
        case .leaf:
            let node = BTreeNode(isLeaf: true)
            for _ in 0..<header.count {
                guard let keyLength = reader.get(UInt16.self), let kind = reader.get(UInt8.self),
                      let length = reader.get(UInt32.self), let key = reader.bytes(Int(keyLength)) else { return nil }
                node.keys.append(key)
                if kind == 0 {
                    guard let bytes = reader.bytes(Int(length)) else { return nil }
                    node.values.append(.inline(bytes))
                } else {
                    guard let first = reader.get(UInt64.self), let count = reader.get(UInt32.self) else { return nil }
                    node.values.append(.overflow(firstPage: first, pageCount: count, length: length))
                }
            }
            return node
        case .branch:
            guard let first = reader.get(UInt64.self) else { return nil }
            let node = BTreeNode(isLeaf: false, children: [first])
            for _ in 0..<header.count {
                guard let keyLength = reader.get(UInt16.self), let key = reader.bytes(Int(keyLength)),
                      let child = reader.get(UInt64.self) else { return nil }
                node.keys.append(key)
                node.children.append(child)
            }
            return node
        default:
            return nil
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
