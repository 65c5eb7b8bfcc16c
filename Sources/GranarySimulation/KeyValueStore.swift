import GranaryLinearizability
import GranaryPaxos
import GranaryStorage

/// The replicated state machine the simulator's clients use: a register per key, written
/// blindly or conditionally through the log, read at the leader under its lease. Commands
/// are short text, so a failure report shows them as they are.
enum KeyValueCommand: Equatable {
    case write(key: UInt64, value: UInt64)
    case compareAndSet(key: UInt64, expected: UInt64?, new: UInt64)

    var key: UInt64 {
        switch self {
        case .write(let key, _), .compareAndSet(let key, _, _): key
        }
    }

    var encoded: Command {
        switch self {
        case .write(let key, let value): .value(Array("w:\(key):\(value)".utf8))
        case .compareAndSet(let key, let expected, let new):
            .value(Array("c:\(key):\(expected.map(String.init) ?? "-"):\(new)".utf8))
        }
    }

    /// Reads a command back; anything else in the log (no-ops, probes) is not one. The
    /// shipped replica's log holds a write as one put of a tree key (`Simulation.treeKey`).
    init?(_ command: Command) {
        guard case .value(let bytes) = command else { return nil }
        if case .writes(let writes)? = LogCommand(decoding: bytes) {
            guard writes.count == 1, case .put(let key, let value) = writes[0], key.starts(with: Array("kv/".utf8)),
                let number = Simulation.number(Array(key.dropFirst(3))), let value = Simulation.number(value)
            else { return nil }
            self = .write(key: number, value: value)
            return
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch (parts.first, parts.count) {
        case ("w", 3):
            guard let key = UInt64(parts[1]), let value = UInt64(parts[2]) else { return nil }
            self = .write(key: key, value: value)
        case ("c", 4):
            guard let key = UInt64(parts[1]), let new = UInt64(parts[3]) else { return nil }
            let expected = parts[2] == "-" ? nil : UInt64(parts[2])
            if parts[2] != "-" && expected == nil { return nil }
            self = .compareAndSet(key: key, expected: expected, new: new)
        default:
            return nil
        }
    }

    var input: KeyValueModel.Input {
        switch self {
        case .write(_, let value): .write(value)
        case .compareAndSet(_, let expected, let new): .compareAndSet(expected: expected, new: new)
        }
    }
}

/// One replica's copy of the state machine, rebuilt from slot 1 after a restart.
struct KeyValueStore {
    private(set) var values: [UInt64: UInt64] = [:] {
        didSet { cachedDigest = nil }
    }
    private var cachedDigest: UInt64?

    init(values: [UInt64: UInt64] = [:]) { self.values = values }

    /// Applies a chosen command; the answer is what its proposer tells the client.
    mutating func apply(_ command: Command) -> KeyValueModel.Output? {
        guard let operation = KeyValueCommand(command) else { return nil }
        switch operation {
        case .write(let key, let value):
            values[key] = value
            return .written
        case .compareAndSet(let key, let expected, let new):
            guard values[key] == expected else { return .compareAndSet(succeeded: false) }
            values[key] = new
            return .compareAndSet(succeeded: true)
        }
    }
}

extension KeyValueStore {
    /// The snapshot image: "key=value" pairs in key order.
    var encoded: [UInt8] {
        Array(values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";").utf8)
    }

    init(decoding bytes: [UInt8]) {
        for pair in String(decoding: bytes, as: UTF8.self).split(separator: ";") {
            let parts = pair.split(separator: "=")
            guard parts.count == 2, let key = UInt64(parts[0]), let value = UInt64(parts[1]) else {
                preconditionFailure("a snapshot this simulator wrote: \(pair)")
            }
            values[key] = value
        }
    }

    /// A digest that does not change between processes, to compare replicas' states.
    mutating func digest() -> UInt64 {
        if let cachedDigest { return cachedDigest }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in encoded { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        cachedDigest = hash
        return hash
    }
}
