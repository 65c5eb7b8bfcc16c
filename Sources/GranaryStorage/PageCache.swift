/// The B-tree's clean pages, within a page budget, evicted by CLOCK (second chance): each
/// hit sets a slot's reference bit, and the hand clears bits as it sweeps until it finds a
/// slot whose bit is clear. A hit is one dictionary lookup and a miss one insertion and
/// one removal; the sampled LRU before it (five random samples, each a dictionary lookup
/// of its last use) cost a tenth of the CPU of uncached reads (perf, tools/bench-tree).
///
/// Page buffers of evicted nodes that nobody else holds are kept for the next reads (up to
/// `spareBuffersMax`): a read then allocates nothing.
struct PageCache {
    private struct Slot {
        var page: UInt64
        var node: BTreeNode?
        var referenced: Bool
    }

    /// The clean-page budget: the tree's page budget less its dirty pages, so the tree
    /// sets it before each insertion. While a checkpoint is written its pages are pinned
    /// and cannot be evicted, so the cache may pass the budget by up to their count.
    var capacity: Int
    private var slots: [Slot] = []
    private var slotOfPage: [UInt64: Int] = [:]
    private var emptySlots: [Int] = []
    private var hand = 0
    private var spareBuffers: [AlignedBytes] = []
    static let spareBuffersMax = 256

    init(capacity: Int) {
        precondition(capacity > 0, "a cache holds a page")
        self.capacity = capacity
    }

    var count: Int { slotOfPage.count }

    /// The page's node, marked recently used.
    mutating func lookup(_ page: UInt64) -> BTreeNode? {
        guard let slot = slotOfPage[page] else { return nil }
        slots[slot].referenced = true
        return slots[slot].node
    }

    /// The page's node, if cached, without marking it.
    func peek(_ page: UInt64) -> BTreeNode? {
        slotOfPage[page].flatMap { slots[$0].node }
    }

    /// Caches a page (replacing what a page freed and written again held), first evicting
    /// unpinned pages while the cache is at its budget. When every cached page may be
    /// pinned there is nothing to evict, and no sweep is made: a checkpoint larger than
    /// the budget moved its pages in one sweep each, half a second for 20,000 pages.
    mutating func insert(_ page: UInt64, _ node: BTreeNode, pinned: Set<UInt64>) {
        if let slot = slotOfPage[page] {
            slots[slot].node = node
            return
        }
        while count >= capacity, pinned.count < count, evictOne(pinned: pinned) {}
        let slot: Int
        if let empty = emptySlots.popLast() {
            slot = empty
            slots[slot] = Slot(page: page, node: node, referenced: false)
        } else {
            slot = slots.count
            slots.append(Slot(page: page, node: node, referenced: false))
        }
        slotOfPage[page] = slot
    }

    mutating func remove(_ page: UInt64) {
        guard let slot = slotOfPage.removeValue(forKey: page) else { return }
        var node = slots[slot].node!
        slots[slot].node = nil
        emptySlots.append(slot)
        if isKnownUniquelyReferenced(&node), var buffer = node.releasePage(),
            isKnownUniquelyReferenced(&buffer), spareBuffers.count < Self.spareBuffersMax
        {
            spareBuffers.append(buffer)
        }
    }

    /// Evicts until the cache is within its budget (after a checkpoint unpins its pages).
    mutating func trim(pinned: Set<UInt64>) {
        while count > capacity, evictOne(pinned: pinned) {}
    }

    /// A buffer for a page read: a spare one, or a new one.
    mutating func takeBuffer() -> AlignedBytes {
        spareBuffers.popLast() ?? AlignedBytes(count: BTreePage.size, zeroed: false)
    }

    mutating func giveBack(_ buffer: AlignedBytes) {
        if spareBuffers.count < Self.spareBuffersMax { spareBuffers.append(buffer) }
    }

    /// Evicts the first unpinned page whose reference bit is clear, clearing bits on the
    /// way (two sweeps at most). Returns false when every cached page is pinned.
    private mutating func evictOne(pinned: Set<UInt64>) -> Bool {
        guard !slots.isEmpty else { return false }
        for _ in 0..<2 * slots.count {
            hand = hand + 1 < slots.count ? hand + 1 : 0
            guard slots[hand].node != nil else { continue }
            if slots[hand].referenced {
                slots[hand].referenced = false
                continue
            }
            if !pinned.isEmpty && pinned.contains(slots[hand].page) { continue }
            remove(slots[hand].page)
            return true
        }
        return false
    }
}
