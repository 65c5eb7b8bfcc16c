/// A replica's identity within its group.
public typealias NodeID = UInt32

/// A log position. Slot 0 is never used: slot numbers start at 1, so "0" means "none".
public typealias Slot = UInt64

/// A Paxos ballot: a round, made unique by the proposing node's id. Ballots are totally
/// ordered (round first); `zero` is below every real ballot.
public struct Ballot: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var round: UInt64
    public var node: NodeID

    public init(round: UInt64, node: NodeID) {
        self.round = round
        self.node = node
    }

    public static let zero = Ballot(round: 0, node: 0)

    public static func < (lhs: Ballot, rhs: Ballot) -> Bool {
        (lhs.round, lhs.node) < (rhs.round, rhs.node)
    }

    public var description: String { "\(round).\(node)" }
}

/// Who is in a group: the voters (every one persists the log and votes), and which of them
/// are log-only (they vote and keep the recent log but hold no state machine, so they never
/// lead). A majority of the voters is a quorum.
public struct Membership: Hashable, Sendable, CustomStringConvertible {
    public private(set) var voters: [NodeID]
    public private(set) var logOnly: Set<NodeID>

    public init(voters: [NodeID], logOnly: Set<NodeID> = []) {
        precondition(!voters.isEmpty, "a group has a voter")
        precondition(Set(voters).count == voters.count, "voters are distinct")
        precondition(logOnly.isSubset(of: voters), "a log-only replica is a voter")
        precondition(logOnly.count < voters.count, "someone can lead")
        self.voters = voters.sorted()
        self.logOnly = logOnly
    }

    public var quorum: Int { voters.count / 2 + 1 }

    public func contains(_ id: NodeID) -> Bool { voters.contains(id) }

    public func canLead(_ id: NodeID) -> Bool { voters.contains(id) && !logOnly.contains(id) }

    public func adding(_ id: NodeID, logOnly: Bool = false) -> Membership {
        Membership(voters: voters + [id], logOnly: logOnly ? self.logOnly.union([id]) : self.logOnly)
    }

    public func removing(_ id: NodeID) -> Membership {
        Membership(voters: voters.filter { $0 != id }, logOnly: logOnly.subtracting([id]))
    }

    /// One change at a time: a single voter added or removed, so that every majority of the
    /// old voters meets every majority of the new. Replacing a replica is two changes: add
    /// the new one, then remove the old. (A replica does not switch between holding a state
    /// machine and being log-only: it is removed and added again.)
    public func isOneChange(from old: Membership) -> Bool {
        let added = Set(voters).subtracting(old.voters), removed = Set(old.voters).subtracting(voters)
        let kept = Set(voters).intersection(old.voters)
        return added.count + removed.count == 1 && kept.allSatisfy { logOnly.contains($0) == old.logOnly.contains($0) }
    }

    public var description: String {
        voters.map { logOnly.contains($0) ? "\($0)(log)" : "\($0)" }.joined(separator: ",")
    }
}

/// A state machine's image through `slot`, which replaces the log up to it. A log-only
/// replica's has no data (it has no state machine); it only marks where its log starts.
public struct Snapshot: Hashable, Sendable {
    public var slot: Slot
    /// The membership in force after `slot`.
    public var membership: Membership
    public var data: [UInt8]?

    public init(slot: Slot, membership: Membership, data: [UInt8]?) {
        self.slot = slot
        self.membership = membership
        self.data = data
    }
}

/// What a slot holds: a client's command, a no-op that fills a gap a new leader found, or a
/// new membership that governs every later slot.
public enum Command: Hashable, Sendable, CustomStringConvertible {
    case noop
    case value([UInt8])
    case membership(Membership)

    /// About what the command takes in a message (a value's bytes; the rest are small).
    var byteCount: Int {
        if case .value(let bytes) = self { bytes.count } else { 16 }
    }

    public var description: String {
        switch self {
        case .noop: "noop"
        case .membership(let membership): "members(\(membership))"
        case .value(let bytes):
            if let text = String(validating: bytes, as: UTF8.self), text.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) {
                text
            } else {
                "value(\(bytes.count)B:…\(bytes.suffix(8).map { String($0, radix: 16) }.joined()))"
            }
        }
    }
}

/// A slot's accepted value and the ballot it was accepted in.
public struct Entry: Hashable, Sendable {
    public var slot: Slot
    public var ballot: Ballot
    public var command: Command

    public init(slot: Slot, ballot: Ballot, command: Command) {
        self.slot = slot
        self.ballot = ballot
        self.command = command
    }
}

/// The messages replicas exchange.
public enum Message: Hashable, Sendable {
    /// Phase 1a: a candidate asks for promises for every slot from `fromSlot` on.
    case prepare(ballot: Ballot, fromSlot: Slot)
    /// Phase 1b: the acceptor promises `ballot` and reports what it accepted from the slot on,
    /// with its snapshot when it has compacted its log at or past that slot (those slots
    /// are chosen; the snapshot is what the candidate must learn of them).
    case promise(ballot: Ballot, accepted: [Entry], snapshot: Snapshot?)
    /// The acceptor has promised a higher ballot; the sender should stand down.
    case reject(promised: Ballot)
    /// Phase 2a from the leader, also its heartbeat: accept these entries (those at or
    /// below `commit` are already chosen), and know that every slot up to `commit` is chosen.
    /// `sentAt` is the leader's clock when it sent this; the answer echoes it, and the
    /// leader's lease runs from the send time of what a quorum answered.
    /// Every replica with a state machine knows every slot up to `retain` chosen (and has
    /// it on disk): log-only replicas may drop those slots from their log.
    case append(ballot: Ballot, entries: [Entry], commit: Slot, sentAt: UInt64, retain: Slot)
    /// Catch-up of a replica that needs slots the leader compacted: install this snapshot
    /// (every slot up to its slot is chosen); answered with `appended`.
    case snapshot(ballot: Ballot, snapshot: Snapshot, sentAt: UInt64)
    /// Phase 2b: every slot up to `matched` is accepted in `ballot` or known chosen here;
    /// `chosen` is the prefix known chosen; `sentAt` echoes the append it answers.
    case appended(ballot: Ballot, matched: Slot, chosen: Slot, sentAt: UInt64)
    /// Before running for leader: "have you heard from a leader lately?" A follower that
    /// merely lost its own link to a live leader is told so and does not disturb the group.
    case leaderQuery
    /// The answer: `alive` if the sender leads or heard from a leader within an election timeout.
    case leaderStatus(alive: Bool)
    /// Leadership transfer: the leader of `ballot` asks the recipient to run for leader now.
    case timeoutNow(ballot: Ballot)
    /// From a replica that started without its disk: "what have you promised, and how far
    /// does your log go?" (see `Replica.Recovery`).
    case recoveryQuery
    /// The answer: the highest ballot promised, and the last slot held (accepted or chosen).
    case recoveryStatus(promised: Ballot, last: Slot)
}

/// A message with its sender and recipient.
public struct Envelope: Hashable, Sendable {
    public var from: NodeID
    public var to: NodeID
    public var message: Message

    public init(from: NodeID, to: NodeID, message: Message) {
        self.from = from
        self.to = to
        self.message = message
    }
}

/// What the caller must do, in order, after a batch of inputs: persist (durably), then
/// send, then apply the newly chosen entries; then call `advance`. Persist before send:
/// a promise or an acceptance may not leave the node before it is on disk, or a crash
/// could make the node forget a vote it gave.
public struct Ready: Sendable {
    /// The promised ballot to persist, if it changed.
    public var promised: Ballot?
    /// A snapshot to persist, before the entries: it replaces every log entry up to its
    /// slot (drop them). If `restoreSnapshot`, it came from the leader and the state
    /// machine must be reset to its data before the committed entries are applied.
    public var snapshot: Snapshot?
    public var restoreSnapshot = false
    /// Every slot up to here is chosen: persist it after the entries (a restarted replica
    /// keeps knowing it, so it does not need the quorums of memberships long replaced).
    public var chosen: Slot?
    /// Accepted entries to persist (each replaces what the slot held).
    public var entries: [Entry] = []
    public var messages: [Envelope] = []
    /// A leader's appends, which may leave before the rest is persisted (it counts its own
    /// acceptances only once they are on disk), so that its sync and its followers' overlap.
    public var earlyMessages: [Envelope] = []
    /// Chosen entries to apply, in slot order, each exactly once.
    public var committed: [Entry] = []
    /// A replica that started without its disk has caught up: once the rest of this `Ready`
    /// is persisted, the caller removes its mark of recovery (before sending the messages).
    public var recovered = false

    public var isEmpty: Bool {
        promised == nil && snapshot == nil && chosen == nil && entries.isEmpty && messages.isEmpty && committed.isEmpty
            && !recovered && earlyMessages.isEmpty
    }
}

/// What a replica keeps on disk: its promise, its latest snapshot, its accepted entries
/// after the snapshot, and how far it knows them chosen.
public struct DurableState: Sendable, Equatable {
    public var promised: Ballot = .zero
    public var snapshot: Snapshot?
    public var chosen: Slot = 0
    public var log: [Slot: Entry] = [:]

    public init() {}
}

extension Message: CustomStringConvertible {
    /// One line per message, for transcripts and failure reports.
    public var description: String {
        func list(_ entries: [Entry]) -> String {
            "[" + entries.map { "\($0.slot)@\($0.ballot)=\($0.command)" }.joined(separator: " ") + "]"
        }
        switch self {
        case .prepare(let ballot, let fromSlot): return "prepare \(ballot) from \(fromSlot)"
        case .promise(let ballot, let accepted, let snapshot):
            return "promise \(ballot) \(list(accepted))" + (snapshot.map { " snapshot \($0.slot)" } ?? "")
        case .reject(let promised): return "reject promised \(promised)"
        case .append(let ballot, let entries, let commit, let sentAt, let retain):
            return "append \(ballot) \(list(entries)) commit \(commit) at \(sentAt)"
                + (retain > 0 ? " retain \(retain)" : "")
        case .snapshot(let ballot, let snapshot, let sentAt):
            return "snapshot \(ballot) through \(snapshot.slot) members \(snapshot.membership) at \(sentAt)"
        case .appended(let ballot, let matched, let chosen, let sentAt):
            return "appended \(ballot) matched \(matched) chosen \(chosen) at \(sentAt)"
        case .leaderQuery: return "leader?"
        case .leaderStatus(let alive): return alive ? "leader alive" : "no leader"
        case .timeoutNow(let ballot): return "timeout-now \(ballot)"
        case .recoveryQuery: return "recovering: promised? last slot?"
        case .recoveryStatus(let promised, let last): return "recovery status promised \(promised) last \(last)"
        }
    }
}

extension Envelope: CustomStringConvertible {
    public var description: String { "\(from)->\(to) \(message)" }
}
