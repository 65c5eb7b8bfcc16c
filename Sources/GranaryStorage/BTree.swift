/// A copy-on-write B+tree in one file of `BTreePage.size` pages: ordered keys and values,
/// values of any size up to 400 KB (overflow pages beyond `BTreePage.inlineEntryBytesMax`),
/// a bounded cache of clean pages, and checkpoints that make the file consistent without
/// ever overwriting a page the last checkpoint uses.
///
/// Copy-on-write (shadow paging, as LMDB does): a node's identity is its page number. The
/// first change to a clean node since the last checkpoint moves it to a newly allocated
/// page, and its parent (changed to point there) moves too, up to the root. Pages freed
/// that way become reusable only once the next checkpoint is durable. A checkpoint writes
/// the dirty pages and the free list, syncs, then writes the superblock into the slot the
/// previous checkpoint did not use, and syncs again. A crash at any point leaves either
/// the old or the new superblock valid, and the tree it names is whole: no torn page can
/// matter, so no double-write area is needed. Which checkpoint a superblock names, and the
/// WAL position it covers, make recovery "last checkpoint, then the log after it".
///
/// Used by one task at a time on one core (inside an actor).
public final class BTree<S: Storage> {
    public struct Options: Sendable {
        /// Pages kept in memory, clean and dirty together: clean pages are evicted to make
        /// room for dirty ones, which stay until a checkpoint writes them (the caller
        /// checkpoints before they take the whole budget).
        public var cachePages = 8192
        /// What one cached clean page costs in memory: the unit of `cachePages`, in which
        /// the dirty pages' memory is counted against the budget.
        public var cleanPageBytes = BTreePage.size
        public init() {}
    }

    let file: S.File
    let options: Options
    let name: String

    /// The checkpoint the file is at, and the WAL LSN it covers.
    public internal(set) var generation: UInt64 = 0
    public internal(set) var checkpointLSN: UInt64 = 0
    var root: UInt64 = 0  // 0: the tree is empty
    var pageCount: UInt64 = 2  // pages [0, pageCount) exist; 0 and 1 are superblocks
    var free: [UInt64] = []  // reusable now
    var freedThisEpoch: [UInt64] = []  // reusable once the next checkpoint is durable
    var freedByCheckpointInFlight: [UInt64] = []
    var freeListPages: [UInt64] = []  // hold the durable free list
    var dirty: [UInt64: BTreeNode] = [:]
    var dirtyBlobs: [UInt64: [UInt8]] = [:]
    var cache: PageCache
    var pinned: Set<UInt64> = []  // being written by a checkpoint in flight
    var blobsInFlight: [UInt64: [UInt8]] = [:]  // overflow values a checkpoint is writing
    var checkpointing = false

    var dirtyBlobPages = 0
    /// The memory dirty pages (and overflow values) waiting for a checkpoint take: nodes as
    /// `BTreeNode.footprint` estimates them (a node decoded into arrays takes more or less
    /// than its page), overflow values by their pages. The caller checkpoints when it
    /// passes its budget; clean pages get what it leaves of the tree's.
    public var dirtyBytes: Int { dirtyNodeBytes + dirtyBlobPages * BTreePage.size }
    var dirtyNodeBytes = 0
    /// Clean pages are kept even when dirty ones fill the budget: a lookup needs its path.
    static var cleanPagesMin: Int { 16 }

    /// Opens the tree in `name`, creating an empty one if the file is new. Throws
    /// `.corruption` when neither superblock verifies, or the free list is damaged.
    public static func open(
        storage: S, name: String = "btree.db", options: Options = Options()
    ) async throws(StorageError) -> BTree {
        let file = try await storage.open(name, create: true)
        let tree = BTree(file: file, name: name, options: options)
        if try file.size() == 0 {
            try await tree.writeSuperblock()  // generation 0, empty
            try await file.synchronize()
            try await storage.synchronizeDirectory()
        } else {
            try await tree.loadSuperblock()
        }
        return tree
    }

    private init(file: S.File, name: String, options: Options) {
        self.file = file
        self.name = name
        self.options = options
        cache = PageCache(capacity: max(Self.cleanPagesMin, options.cachePages))
    }

    // MARK: Reading

    public func get(_ key: [UInt8]) async throws(StorageError) -> [UInt8]? {
        guard root != 0 else { return nil }
        var page = root
        while true {
            let node = try await load(page)
            if node.isLeaf {
                let (index, found) = node.search(key)
                return found ? try await resolve(node.value(at: index)) : nil
            }
            page = node.child(at: node.childIndex(for: key))
        }
    }

    /// Up to `limit` entries in key order from `start` (inclusive; nil for the first key),
    /// or in reverse order from `start` downwards when `reverse`; none past `bound`
    /// (exclusive going forward, inclusive in reverse: a range's upper and lower ends), so
    /// that reading a small range costs its size, not the limit's.
    public func scan(
        from start: [UInt8]?, reverse: Bool = false, bound: [UInt8]? = nil, limit: Int
    ) async throws(StorageError) -> [(key: [UInt8], value: [UInt8])] {
        guard root != 0, limit > 0 else { return [] }
        // The path to the first leaf: (node, index of the child or entry taken).
        var path: [(node: BTreeNode, index: Int)] = []
        var node = try await load(root)
        while true {
            if node.isLeaf {
                var index: Int
                if let start {
                    let (position, found) = node.search(start)
                    index = reverse ? (found ? position : position - 1) : position
                } else {
                    index = reverse ? node.count - 1 : 0
                }
                path.append((node, index))
                break
            }
            let index = start.map { node.childIndex(for: $0) } ?? (reverse ? node.childCount - 1 : 0)
            path.append((node, index))
            node = try await load(node.child(at: index))
        }
        var results: [(key: [UInt8], value: [UInt8])] = []
        while results.count < limit {
            let (leaf, index) = path[path.count - 1]
            if index >= 0 && index < leaf.count {
                let key = leaf.key(at: index)
                if let bound, reverse ? key.lexicographicallyPrecedes(bound) : !key.lexicographicallyPrecedes(bound) {
                    break
                }
                results.append((key, try await resolve(leaf.value(at: index))))
                path[path.count - 1].index += reverse ? -1 : 1
                continue
            }
            // This leaf is done: climb to the nearest branch with a next child, then descend
            // to that child's first (or last) leaf.
            path.removeLast()
            while let last = path.last {
                let next = last.index + (reverse ? -1 : 1)
                if next >= 0 && next < last.node.childCount { break }
                path.removeLast()
            }
            guard !path.isEmpty else { break }
            path[path.count - 1].index += reverse ? -1 : 1
            var child = try await load(path[path.count - 1].node.child(at: path[path.count - 1].index))
            while !child.isLeaf {
                let index = reverse ? child.childCount - 1 : 0
                path.append((child, index))
                child = try await load(child.child(at: index))
            }
            path.append((child, reverse ? child.count - 1 : 0))
        }
        return results
    }

    // MARK: Writing

    /// Inserts or replaces `key`'s value.
    public func put(_ key: [UInt8], _ value: [UInt8]) async throws(StorageError) {
        guard key.count <= BTreePage.keyBytesMax else {
            throw .limitExceeded("a key of \(key.count) bytes exceeds \(BTreePage.keyBytesMax)")
        }
        let stored = storeValue(value, key: key)
        if root == 0 {
            let page = allocatePage()
            setDirty(page, BTreeNode(isLeaf: true, keys: [key], values: [stored]))
            root = page
            return
        }
        let path = try await mutablePath(to: key)
        let leaf = path.last!.node
        let (index, found) = leaf.search(key)
        if found {
            release(leaf.values[index])
            leaf.values[index] = stored
        } else {
            leaf.keys.insert(key, at: index)
            leaf.values.insert(stored, at: index)
        }
        splitOverfullNodes(path)
        for (_, node) in path { account(node) }
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    public func delete(_ key: [UInt8]) async throws(StorageError) -> Bool {
        guard root != 0, try await get(key) != nil else { return false }
        let path = try await mutablePath(to: key)
        let leaf = path.last!.node
        let (index, found) = leaf.search(key)
        precondition(found, "a key found by get must be found on its mutable path")
        release(leaf.values[index])
        leaf.keys.remove(at: index)
        leaf.values.remove(at: index)
        removeEmptyNodes(path)
        for (page, node) in path where dirty[page] === node { account(node) }
        return true
    }

    /// The path from the root to `key`'s leaf, every node on it dirty (moved to a new page
    /// if it was clean), with each parent pointing at its child's new page.
    private func mutablePath(to key: [UInt8]) async throws(StorageError) -> [(page: UInt64, node: BTreeNode)] {
        var path: [(page: UInt64, node: BTreeNode)] = []
        let (rootPage, rootNode) = try await makeDirty(root)
        root = rootPage
        path.append((rootPage, rootNode))
        while !path.last!.node.isLeaf {
            let parent = path.last!.node
            let slot = parent.childIndex(for: key)
            let (page, node) = try await makeDirty(parent.children[slot])
            parent.children[slot] = page
            path.append((page, node))
        }
        return path
    }

    private func makeDirty(_ page: UInt64) async throws(StorageError) -> (UInt64, BTreeNode) {
        if let node = dirty[page] { return (page, node) }
        let loaded = try await load(page)
        // A node the checkpoint in flight has yet to encode stays as it is: the change
        // goes to a copy (its arrays shared until written).
        let node = pinned.contains(page) ? loaded.materializedCopy() : loaded
        node.materialize()
        cache.remove(page)
        freedThisEpoch.append(page)
        let moved = allocatePage()
        setDirty(moved, node)
        return (moved, node)
    }

    /// Splits, bottom-up, every node of the path that no longer fits a page.
    private func splitOverfullNodes(_ path: [(page: UInt64, node: BTreeNode)]) {
        var level = path.count - 1
        while level >= 0, path[level].node.encodedBytes > BTreePage.size {
            let node = path[level].node
            let (separator, right) = split(node)
            let rightPage = allocatePage()
            setDirty(rightPage, right)
            if level == 0 {
                let newRoot = allocatePage()
                setDirty(newRoot, BTreeNode(isLeaf: false, keys: [separator], children: [path[0].page, rightPage]))
                root = newRoot
                // A new root may itself be too big only if keys are huge; it has one key.
                return
            }
            let parent = path[level - 1].node
            let slot = parent.children.firstIndex(of: path[level].page)!
            parent.keys.insert(separator, at: slot)
            parent.children.insert(rightPage, at: slot + 1)
            if right.encodedBytes > BTreePage.size || node.encodedBytes > BTreePage.size {
                // One split was not enough (a run of large entries): split again from here.
                splitOverfullNodes(Array(path[..<level]) + [(path[level].page, node)])
                splitOverfullNodes(Array(path[..<level]) + [(rightPage, right)])
                account(right)
                return
            }
            level -= 1
        }
    }

    /// Moves the upper half of `node`, by bytes, into a new node; returns the separator (the
    /// right node's smallest key) and the right node.
    private func split(_ node: BTreeNode) -> ([UInt8], BTreeNode) {
        precondition(node.keys.count >= 2 || !node.isLeaf, "a node too big to split")
        let half = node.encodedBytes / 2
        var bytes = BTreePage.headerBytes
        var cut = 1
        for index in 0..<node.keys.count {
            bytes +=
                node.isLeaf ? 7 + node.keys[index].count + node.values[index].encodedBytes : 10 + node.keys[index].count
            if bytes >= half { cut = max(1, index); break }
        }
        if node.isLeaf {
            cut = min(max(cut, 1), node.keys.count - 1)
            let right = BTreeNode(isLeaf: true, keys: Array(node.keys[cut...]), values: Array(node.values[cut...]))
            node.keys.removeSubrange(cut...)
            node.values.removeSubrange(cut...)
            return (right.keys[0], right)
        }
        cut = min(max(cut, 1), node.keys.count - 1)
        // The key at `cut` moves up; the children after it go right.
        let separator = node.keys[cut]
        let right = BTreeNode(
            isLeaf: false, keys: Array(node.keys[(cut + 1)...]), children: Array(node.children[(cut + 1)...]))
        node.keys.removeSubrange(cut...)
        node.children.removeSubrange((cut + 1)...)
        return (separator, right)
    }

    /// After a delete: removes a leaf left empty from its parent, and so on up; a root
    /// branch left with one child is replaced by that child. Pages are not merged: an
    /// underfull page keeps its space for later inserts.
    private func removeEmptyNodes(_ path: [(page: UInt64, node: BTreeNode)]) {
        var level = path.count - 1
        while level > 0 {
            let (page, node) = path[level]
            let empty = node.isLeaf ? node.keys.isEmpty : node.children.isEmpty
            guard empty else { break }
            removeDirty(page)
            free.append(page)  // a dirty page was never durable: reusable at once
            let parent = path[level - 1].node
            let slot = parent.children.firstIndex(of: page)!
            parent.children.remove(at: slot)
            if !parent.keys.isEmpty { parent.keys.remove(at: max(0, slot - 1)) }
            level -= 1
        }
        while root != 0, let top = dirty[root] ?? cache.peek(root), !top.isLeaf, top.childCount <= 1 {
            let old = root
            root = top.childCount == 1 ? top.child(at: 0) : 0
            if removeDirty(old) { free.append(old) } else { freedThisEpoch.append(old) }
        }
        if root != 0, let top = dirty[root], top.isLeaf, top.keys.isEmpty {
            removeDirty(root)
            free.append(root)
            root = 0
        }
    }

    // MARK: Dirty memory

    private func setDirty(_ page: UInt64, _ node: BTreeNode) {
        dirty[page] = node
        account(node)
    }

    /// Takes a page out of the dirty set; returns whether it was there.
    @discardableResult
    private func removeDirty(_ page: UInt64) -> Bool {
        guard let node = dirty.removeValue(forKey: page) else { return false }
        dirtyNodeBytes -= node.accountedBytes
        node.accountedBytes = 0
        return true
    }

    /// Brings a dirty node's share of `dirtyNodeBytes` up to date after a change.
    private func account(_ node: BTreeNode) {
        let now = node.footprint
        dirtyNodeBytes += now - node.accountedBytes
        node.accountedBytes = now
    }

    // MARK: Values and overflow pages

    static func overflowPages(for length: Int) -> Int {
        (length + BTreePage.overflowDataBytes - 1) / BTreePage.overflowDataBytes
    }

    private func storeValue(_ value: [UInt8], key: [UInt8]) -> LeafValue {
        guard 7 + key.count + value.count > BTreePage.inlineEntryBytesMax else { return .inline(value) }
        // Overflow runs are contiguous, taken from the end of the file, so that one read
        // fetches a whole value.
        let count = Self.overflowPages(for: value.count)
        let first = pageCount
        pageCount += UInt64(count)
        dirtyBlobs[first] = value
        dirtyBlobPages += count
        return .overflow(firstPage: first, pageCount: UInt32(count), length: UInt32(value.count))
    }

    private func release(_ value: LeafValue) {
        guard case .overflow(let first, let count, _) = value else { return }
        let pages = (0..<UInt64(count)).map { first + $0 }
        if dirtyBlobs.removeValue(forKey: first) != nil {
            free += pages
            dirtyBlobPages -= pages.count
        } else {
            freedThisEpoch += pages
        }
    }

    private func resolve(_ value: LeafValue) async throws(StorageError) -> [UInt8] {
        switch value {
        case .inline(let bytes):
            return bytes
        case .overflow(let first, let count, let length):
            if let bytes = dirtyBlobs[first] ?? blobsInFlight[first] { return bytes }
            let buffer = AlignedBytes(count: Int(count) * BTreePage.size)
            let read = try await file.read(into: buffer.bytes, at: first * UInt64(BTreePage.size))
            guard read == buffer.count else {
                throw .corruption(
                    file: name, offset: first * UInt64(BTreePage.size),
                    detail: "overflow pages past the end of the file")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(length))
            for index in 0..<Int(count) {
                let page = buffer.pointer + index * BTreePage.size
                guard let header = BTreePage.open(page, expectedNumber: first + UInt64(index)), header.kind == .overflow
                else {
                    throw .corruption(
                        file: name, offset: (first + UInt64(index)) * UInt64(BTreePage.size),
                        detail: "overflow page fails its checksum or names another page")
                }
                let take = min(BTreePage.overflowDataBytes, Int(length) - bytes.count)
                bytes += UnsafeRawBufferPointer(start: page + BTreePage.headerBytes, count: take)
            }
            return bytes
        }
    }

    // MARK: Pages and the cache

    private func allocatePage() -> UInt64 {
        if let page = free.popLast() { return page }
        defer { pageCount += 1 }
        return pageCount
    }

    private func load(_ page: UInt64) async throws(StorageError) -> BTreeNode {
        if let node = dirty[page] { return node }
        if let node = cache.lookup(page) { return node }
        // A buffer per read in flight (another task may load a page while this one waits),
        // kept by the node as its page.
        let buffer = cache.takeBuffer()
        let offset = page * UInt64(BTreePage.size)
        pageReads += 1
        let read = try await file.read(into: buffer.bytes, at: offset)
        guard read == BTreePage.size, let header = BTreePage.open(buffer.pointer, expectedNumber: page),
            let node = BTreeNode.view(buffer, header: header)
        else {
            throw .corruption(
                file: name, offset: offset,
                detail: "page \(page) fails its checksum, names another page, or does not parse")
        }
        if let cached = cache.lookup(page) {  // loaded by another task meanwhile
            cache.giveBack(buffer)
            return cached
        }
        cacheClean(page, node)
        return node
    }

    /// Caches a clean page within what the dirty pages leave of the budget.
    func cacheClean(_ page: UInt64, _ node: BTreeNode) {
        cache.capacity = cleanPageBudget
        cache.insert(page, node, pinned: pinned)
    }

    /// The clean pages the cache may hold: the budget less the dirty pages' memory.
    var cleanPageBudget: Int {
        max(Self.cleanPagesMin, options.cachePages - dirtyBytes / options.cleanPageBytes)
    }

    public var cachedPageCount: Int { cache.count }
    /// Pages read from the file since open (cache misses), for benchmarks and metrics.
    public private(set) var pageReads = 0
}

#if canImport(Glibc)
import Glibc
#endif
