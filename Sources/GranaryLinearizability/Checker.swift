/// A sequential specification: the state a history's operations act on, and what each
/// operation may return from a given state.
public protocol SequentialModel {
    associatedtype State: Hashable
    associatedtype Input
    associatedtype Output

    static var initialState: State { get }
    /// The state after `input` ran on `state` and answered `output`, or nil when `output`
    /// is not an answer the operation could give in `state`. An operation whose outcome is
    /// unknown gets `output == nil` and must be accepted in any state.
    static func step(_ state: State, _ input: Input, _ output: Output?) -> State?
}

/// One operation of a concurrent history: its input, its answer (nil if the client never
/// learned it: a time-out, a crash) and when it was called and returned. Times are any
/// increasing counter; an operation with an unknown outcome may take effect at any time
/// after its call, so its return is taken as infinitely late.
public struct Operation<Input, Output> {
    public var input: Input
    public var output: Output?
    public var call: UInt64
    public var returned: UInt64?

    public init(input: Input, output: Output?, call: UInt64, returned: UInt64?) {
        precondition(returned.map { $0 > call } ?? true, "an operation returns after its call")
        precondition(output == nil || returned != nil, "an answered operation has a return time")
        self.input = input
        self.output = output
        self.call = call
        self.returned = returned
    }
}

public enum CheckResult: Equatable, Sendable {
    case linearizable
    /// No order of the operations that respects their real-time order explains every answer.
    case notLinearizable
    /// The search took more than its step budget: neither proven nor refuted.
    case inconclusive
}

/// Linearizability checking by Wing and Gong's search with Lowe's memoization, as Porcupine
/// (anishathalye/porcupine) does it: walk the history's call and return events in time
/// order; at a call, try to take that operation next (if the model accepts its answer and
/// the pair (set of operations taken, state) was not tried before), lifting it out of the
/// list; at a return of an operation not yet taken, nothing can explain the history from
/// here, so undo the last choice. The search is exponential in the worst case; histories
/// are partitioned (per key) by the caller to keep each one small, and `stepBudget` bounds it.
public enum LinearizabilityChecker<Model: SequentialModel> {
    public typealias Op = Operation<Model.Input, Model.Output>

    public static func check(_ operations: [Op], stepBudget: Int = 5_000_000) -> CheckResult {
        if operations.isEmpty { return .linearizable }
        var events = EventList(operations)
        var state = Model.initialState
        var taken = Bitset(count: operations.count)
        var tried: Set<CacheKey> = []
        var stack: [(event: Int, state: Model.State)] = []
        var steps = 0
        var event = events.first
        while events.first != EventList.end {
            steps += 1
            if steps > stepBudget { return .inconclusive }
            let op = events.operation[event]
            if events.isCall[event] {
                if let next = Model.step(state, operations[op].input, operations[op].output) {
                    var nextTaken = taken
                    nextTaken.insert(op)
                    if tried.insert(CacheKey(taken: nextTaken, state: next)).inserted {
                        stack.append((event, state))
                        state = next
                        taken = nextTaken
                        events.lift(event)
                        event = events.first
                        continue
                    }
                }
                event = events.next[event]
            } else {
                // The earliest return still in the list belongs to an operation not taken:
                // every order from here puts something after a return it must precede.
                guard let last = stack.popLast() else { return .notLinearizable }
                state = last.state
                taken.remove(events.operation[last.event])
                events.unlift(last.event)
                event = events.next[last.event]
            }
        }
        return .linearizable
    }

    struct CacheKey: Hashable {
        var taken: Bitset
        var state: Model.State
    }
}

/// The history as a doubly linked list of call and return events in time order, from which
/// the search lifts an operation's two events and puts them back.
struct EventList {
    static let end = -1
    var isCall: [Bool] = []
    var operation: [Int] = []
    /// For a call, the index of its return event.
    var match: [Int] = []
    var next: [Int] = []
    var previous: [Int] = []
    /// The first event still in the list (`end` when empty); `previous` of the first is `end`.
    var first: Int = end

    init<Input, Output>(_ operations: [Operation<Input, Output>]) {
        // (time, is return, operation): calls before returns at equal times, so operations
        // that touch in time count as concurrent (the lenient reading, as Porcupine's).
        var order: [(time: UInt64, isReturn: Bool, op: Int)] = []
        for (index, op) in operations.enumerated() {
            order.append((op.call, false, index))
            order.append((op.returned ?? .max, true, index))
        }
        order.sort { ($0.time, $0.isReturn ? 1 : 0, $0.op) < ($1.time, $1.isReturn ? 1 : 0, $1.op) }
        var returnIndex = [Int](repeating: 0, count: operations.count)
        for (index, event) in order.enumerated() where event.isReturn { returnIndex[event.op] = index }
        for (index, event) in order.enumerated() {
            isCall.append(!event.isReturn)
            operation.append(event.op)
            match.append(event.isReturn ? EventList.end : returnIndex[event.op])
            next.append(index + 1 < order.count ? index + 1 : EventList.end)
            previous.append(index - 1)
        }
        first = order.isEmpty ? EventList.end : 0
    }

    private mutating func unlink(_ event: Int) {
        let before = previous[event], after = next[event]
        if before == EventList.end { first = after } else { next[before] = after }
        if after != EventList.end { previous[after] = before }
    }

    /// Puts back an event unlinked last (its neighbours still point around it).
    private mutating func relink(_ event: Int) {
        let before = previous[event], after = next[event]
        if before == EventList.end { first = event } else { next[before] = event }
        if after != EventList.end { previous[after] = event }
    }

    /// Takes a call and its return out of the list.
    mutating func lift(_ call: Int) {
        precondition(isCall[call])
        unlink(call)
        unlink(match[call])
    }

    /// Undoes `lift(call)`; lifts are undone in the reverse order of their making.
    mutating func unlift(_ call: Int) {
        relink(match[call])
        relink(call)
    }
}

/// A fixed-size set of operation indices, hashable for the search's memo.
struct Bitset: Hashable {
    private var words: [UInt64]

    init(count: Int) { words = [UInt64](repeating: 0, count: (count + 63) / 64) }

    mutating func insert(_ index: Int) { words[index >> 6] |= 1 << UInt64(index & 63) }
    mutating func remove(_ index: Int) { words[index >> 6] &= ~(1 << UInt64(index & 63)) }
}
