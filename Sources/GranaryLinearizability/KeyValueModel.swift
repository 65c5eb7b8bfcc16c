/// A register per key, as a DynamoDB item is: reads, blind writes, and conditional writes
/// (compare-and-set, the shape of a PutItem with a ConditionExpression on the old value).
/// Values are opaque numbers; `nil` is "no item".
public enum KeyValueModel: SequentialModel {
    public typealias Value = UInt64

    public enum Input: Hashable, Sendable {
        case read
        case write(Value)
        case compareAndSet(expected: Value?, new: Value)
    }

    public enum Output: Hashable, Sendable {
        case read(Value?)
        case written
        case compareAndSet(succeeded: Bool)
    }

    public static var initialState: Value? { nil }

    public static func step(_ state: Value?, _ input: Input, _ output: Output?) -> Value?? {
        switch (input, output) {
        case (.read, nil):
            return .some(state)
        case (.read, .read(let seen)):
            return seen == state ? .some(state) : nil
        case (.write(let value), nil), (.write(let value), .written):
            return .some(value)
        case (.compareAndSet(let expected, let new), nil):
            // Unknown outcome: where it is placed, the condition decides whether it wrote.
            return .some(state == expected ? new : state)
        case (.compareAndSet(let expected, let new), .compareAndSet(let succeeded)):
            if succeeded { return state == expected ? .some(new) : nil }
            return state != expected ? .some(state) : nil
        default:
            return nil
        }
    }
}

/// A key-value history: each operation names its key. Operations on different keys never
/// constrain each other, so each key's history is checked alone (P-compositionality).
public struct KeyValueHistory: Sendable {
    public struct Entry: Sendable {
        public var key: UInt64
        public var input: KeyValueModel.Input
        public var output: KeyValueModel.Output?
        public var call: UInt64
        public var returned: UInt64?

        public init(
            key: UInt64, input: KeyValueModel.Input, output: KeyValueModel.Output?, call: UInt64, returned: UInt64?
        ) {
            self.key = key
            self.input = input
            self.output = output
            self.call = call
            self.returned = returned
        }
    }

    public var entries: [Entry] = []

    public init(_ entries: [Entry] = []) { self.entries = entries }

    public mutating func append(_ entry: Entry) { entries.append(entry) }

    public struct Verdict: Sendable, CustomStringConvertible {
        /// Keys whose history no sequential order explains, with their operations.
        public var violations: [(key: UInt64, operations: [Entry])] = []
        /// Keys the search gave up on (its step budget).
        public var inconclusiveKeys: [UInt64] = []
        public var operations = 0

        public var isLinearizable: Bool { violations.isEmpty }

        public var description: String {
            var text = "\(operations) operations: "
            text += violations.isEmpty ? "linearizable" : "NOT linearizable on keys \(violations.map(\.key))"
            if !inconclusiveKeys.isEmpty { text += ", inconclusive on keys \(inconclusiveKeys)" }
            return text
        }
    }

    public func check(stepBudget: Int = 5_000_000) -> Verdict {
        var verdict = Verdict(operations: entries.count)
        let byKey = Dictionary(grouping: entries, by: \.key)
        for key in byKey.keys.sorted() {
            let history = byKey[key]!
            let operations = history.map {
                Operation<KeyValueModel.Input, KeyValueModel.Output>(
                    input: $0.input, output: $0.output, call: $0.call, returned: $0.returned)
            }
            switch LinearizabilityChecker<KeyValueModel>.check(operations, stepBudget: stepBudget) {
            case .linearizable: break
            case .notLinearizable: verdict.violations.append((key, history))
            case .inconclusive: verdict.inconclusiveKeys.append(key)
            }
        }
        return verdict
    }
}

extension KeyValueHistory.Entry: CustomStringConvertible {
    public var description: String {
        let answer = output.map { "\($0)" } ?? "unknown"
        return "[\(call), \(returned.map(String.init) ?? "inf")] key \(key) \(input) -> \(answer)"
    }
}
