import Atomics

/// A bounded, lock-free, multi-producer single-consumer queue: Dmitry Vyukov's bounded
/// queue, in which each cell carries a sequence number that says whose turn it is.
///
/// Any thread may `tryPush`; only the owning core pops. A full queue refuses the element,
/// so a slow consumer pushes back on its producers instead of growing without bound.
/// Each producer's elements come out in the order it pushed them.
public final class BoundedMPSCQueue<Element>: @unchecked Sendable {
    // @unchecked: cells are handed between threads by the sequence-number protocol below;
    // an element is written before its cell's sequence is released and read after it is
    // acquired, so no two threads ever touch one cell's element at once.
    private let capacity: Int
    private let mask: Int
    private let sequences: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
    private let elements: UnsafeMutablePointer<Element?>
    private let enqueuePosition = ManagedAtomic<Int>(0)
    private var dequeuePosition = 0  // consumer only

    /// `capacity` is rounded up to a power of two.
    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 1 << 24, "queue capacity out of range")
        var size = 1
        while size < capacity { size <<= 1 }
        self.capacity = size
        self.mask = size - 1
        sequences = .allocate(capacity: size)
        elements = .allocate(capacity: size)
        for index in 0..<size {
            (sequences + index).initialize(to: .init(index))
            (elements + index).initialize(to: nil)
        }
    }

    deinit {
        (elements).deinitialize(count: capacity)
        elements.deallocate()
        sequences.deinitialize(count: capacity)
        sequences.deallocate()
    }

    private func sequence(_ index: Int) -> UnsafeAtomic<Int> {
        UnsafeAtomic(at: sequences + index)
    }

    /// Appends `element`, or returns false when the queue is full. Safe from any thread.
    public func tryPush(_ element: Element) -> Bool {
        var position = enqueuePosition.load(ordering: .relaxed)
        while true {
            let cell = position & mask
            let sequence = sequence(cell).load(ordering: .acquiring)
            let difference = sequence - position
            if difference == 0 {
                let (exchanged, original) = enqueuePosition.weakCompareExchange(
                    expected: position, desired: position + 1, ordering: .relaxed)
                if exchanged {
                    elements[cell] = element
                    self.sequence(cell).store(position + 1, ordering: .releasing)
                    return true
                }
                position = original
            } else if difference < 0 {
                return false  // full: the cell still holds an element from a lap ago
            } else {
                position = enqueuePosition.load(ordering: .relaxed)
            }
        }
    }

    /// Removes the oldest element, or returns nil when the queue is empty. Consumer only.
    public func pop() -> Element? {
        let cell = dequeuePosition & mask
        let sequence = sequence(cell).load(ordering: .acquiring)
        guard sequence == dequeuePosition + 1 else { return nil }
        let element = elements[cell].take()
        self.sequence(cell).store(dequeuePosition + capacity, ordering: .releasing)
        dequeuePosition += 1
        return element
    }

    /// Whether a pop would find nothing. Consumer only.
    public var isEmpty: Bool {
        sequence(dequeuePosition & mask).load(ordering: .acquiring) != dequeuePosition + 1
    }
}
