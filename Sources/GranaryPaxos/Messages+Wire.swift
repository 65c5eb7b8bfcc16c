/// The messages' binary form, for the network between nodes: little-endian integers,
/// length-prefixed byte strings, a tag byte per enum case. Decoding reads untrusted bytes:
/// every count is checked against the bytes left before anything is allocated, and
/// anything malformed is nil, never a trap.
extension Envelope {
    public func encode(to writer: inout WireWriter) {
        writer.u32(from)
        writer.u32(to)
        writer.message(message)
    }

    /// Decodes one envelope at the reader's position.
    public init?(reading reader: inout WireReader) {
        guard let from = reader.u32(), let to = reader.u32(), let message = reader.message() else { return nil }
        self.init(from: from, to: to, message: message)
    }
}

extension Membership {
    /// The voters' count (4 bytes), each voter (4), then the same for the log-only ones,
    /// little-endian.
    public var encoded: [UInt8] {
        var writer = WireWriter()
        for list in [voters, logOnly.sorted()] {
            writer.u32(UInt32(list.count))
            for id in list { writer.u32(id) }
        }
        return writer.bytes
    }

    /// A membership from its encoding, or nil if it does not parse or is not a valid one.
    public init?(encoded bytes: [UInt8]) {
        var reader = WireReader(bytes)
        guard let membership = reader.membership(), reader.isAtEnd else { return nil }
        self = membership
    }
}

/// Appends values in the wire form.
public struct WireWriter: Sendable {
    public var bytes: [UInt8]

    public init(bytes: [UInt8] = []) { self.bytes = bytes }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    public mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    public mutating func data(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes += value
    }

    mutating func ballot(_ ballot: Ballot) {
        u64(ballot.round)
        u32(ballot.node)
    }

    mutating func membership(_ membership: Membership) { bytes += membership.encoded }

    mutating func entry(_ entry: Entry) {
        u64(entry.slot)
        ballot(entry.ballot)
        switch entry.command {
        case .noop: u8(0)
        case .value(let value):
            u8(1)
            data(value)
        case .membership(let membership):
            u8(2)
            self.membership(membership)
        }
    }

    mutating func snapshot(_ snapshot: Snapshot) {
        u64(snapshot.slot)
        membership(snapshot.membership)
        if let data = snapshot.data {
            u8(1)
            self.data(data)
        } else {
            u8(0)
        }
    }

    mutating func message(_ message: Message) {
        switch message {
        case .prepare(let ballot, let fromSlot):
            u8(0)
            self.ballot(ballot)
            u64(fromSlot)
        case .promise(let ballot, let accepted, let snapshot):
            u8(1)
            self.ballot(ballot)
            u32(UInt32(accepted.count))
            for entry in accepted { self.entry(entry) }
            if let snapshot {
                u8(1)
                self.snapshot(snapshot)
            } else {
                u8(0)
            }
        case .reject(let promised):
            u8(2)
            ballot(promised)
        case .append(let ballot, let entries, let commit, let sentAt, let retain):
            u8(3)
            self.ballot(ballot)
            u32(UInt32(entries.count))
            for entry in entries { self.entry(entry) }
            u64(commit)
            u64(sentAt)
            u64(retain)
        case .snapshot(let ballot, let snapshot, let sentAt):
            u8(4)
            self.ballot(ballot)
            self.snapshot(snapshot)
            u64(sentAt)
        case .appended(let ballot, let matched, let chosen, let sentAt):
            u8(5)
            self.ballot(ballot)
            u64(matched)
            u64(chosen)
            u64(sentAt)
        case .leaderQuery:
            u8(6)
        case .leaderStatus(let alive):
            u8(7)
            u8(alive ? 1 : 0)
        case .timeoutNow(let ballot):
            u8(8)
            self.ballot(ballot)
        case .recoveryQuery:
            u8(9)
        case .recoveryStatus(let promised, let last):
            u8(10)
            ballot(promised)
            u64(last)
        }
    }
}

/// Reads values in the wire form from untrusted bytes: each read is nil when the bytes
/// left cannot hold it.
public struct WireReader: Sendable {
    let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { position == bytes.count }
    public var remaining: Int { bytes.count - position }

    public mutating func u8() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { position += 4 }
        return (0..<4).reduce(0) { $0 | UInt32(bytes[position + $1]) << (8 * $1) }
    }

    public mutating func u64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        defer { position += 8 }
        return (0..<8).reduce(0) { $0 | UInt64(bytes[position + $1]) << (8 * $1) }
    }

    public mutating func data() -> [UInt8]? {
        guard let count = u32(), Int(count) <= remaining else { return nil }
        defer { position += Int(count) }
        return Array(bytes[position..<position + Int(count)])
    }

    /// A count of items that take at least `minimumBytes` each: nil if the bytes left
    /// cannot hold that many.
    mutating func count(minimumBytes: Int) -> Int? {
        guard let count = u32(), Int(count) <= remaining / minimumBytes else { return nil }
        return Int(count)
    }

    mutating func ballot() -> Ballot? {
        guard let round = u64(), let node = u32() else { return nil }
        return Ballot(round: round, node: node)
    }

    mutating func membership() -> Membership? {
        var lists: [[NodeID]] = []
        for _ in 0..<2 {
            guard let count = count(minimumBytes: 4), count <= 1024 else { return nil }
            var list: [NodeID] = []
            for _ in 0..<count { list.append(u32()!) }
            lists.append(list)
        }
        let voters = lists[0], logOnly = Set(lists[1])
        guard !voters.isEmpty, Set(voters).count == voters.count, logOnly.count == lists[1].count,
            logOnly.isSubset(of: voters), logOnly.count < voters.count
        else { return nil }
        return Membership(voters: voters, logOnly: logOnly)
    }

    mutating func entry() -> Entry? {
        guard let slot = u64(), let ballot = ballot(), let tag = u8() else { return nil }
        let command: Command
        switch tag {
        case 0: command = .noop
        case 1:
            guard let value = data() else { return nil }
            command = .value(value)
        case 2:
            guard let membership = membership() else { return nil }
            command = .membership(membership)
        default: return nil
        }
        return Entry(slot: slot, ballot: ballot, command: command)
    }

    mutating func entries() -> [Entry]? {
        guard let count = count(minimumBytes: 21) else { return nil }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            guard let entry = entry() else { return nil }
            entries.append(entry)
        }
        return entries
    }

    mutating func snapshot() -> Snapshot? {
        guard let slot = u64(), let membership = membership(), let flag = u8() else { return nil }
        switch flag {
        case 0: return Snapshot(slot: slot, membership: membership, data: nil)
        case 1:
            guard let data = data() else { return nil }
            return Snapshot(slot: slot, membership: membership, data: data)
        default: return nil
        }
    }

    mutating func message() -> Message? {
        switch u8() {
        case 0:
            guard let ballot = ballot(), let fromSlot = u64() else { return nil }
            return .prepare(ballot: ballot, fromSlot: fromSlot)
        case 1:
            guard let ballot = ballot(), let accepted = entries(), let flag = u8() else { return nil }
            switch flag {
            case 0: return .promise(ballot: ballot, accepted: accepted, snapshot: nil)
            case 1:
                guard let snapshot = snapshot() else { return nil }
                return .promise(ballot: ballot, accepted: accepted, snapshot: snapshot)
            default: return nil
            }
        case 2:
            return ballot().map { .reject(promised: $0) }
        case 3:
            guard let ballot = ballot(), let entries = entries(), let commit = u64(), let sentAt = u64(),
                let retain = u64()
            else { return nil }
            return .append(ballot: ballot, entries: entries, commit: commit, sentAt: sentAt, retain: retain)
        case 4:
            guard let ballot = ballot(), let snapshot = snapshot(), let sentAt = u64() else { return nil }
            return .snapshot(ballot: ballot, snapshot: snapshot, sentAt: sentAt)
        case 5:
            guard let ballot = ballot(), let matched = u64(), let chosen = u64(), let sentAt = u64() else {
                return nil
            }
            return .appended(ballot: ballot, matched: matched, chosen: chosen, sentAt: sentAt)
        case 6:
            return .leaderQuery
        case 7:
            switch u8() {
            case 0: return .leaderStatus(alive: false)
            case 1: return .leaderStatus(alive: true)
            default: return nil
            }
        case 8:
            return ballot().map { .timeoutNow(ballot: $0) }
        case 9:
            return .recoveryQuery
        case 10:
            guard let promised = ballot(), let last = u64() else { return nil }
            return .recoveryStatus(promised: promised, last: last)
        default:
            return nil
        }
    }
}
