/// Recovery of a replica that starts without its disk (a wiped or replaced data directory).
/// It may have promised ballots and accepted entries it no longer remembers; voting as if
/// it never had could let two quorums choose different values for one slot. So, as a
/// rebuilt replica in "Paxos Made Live", it does not vote until it has caught up:
///
/// 1. It asks every other voter for its promise and the last slot its log holds. Whatever
///    it promised or accepted before, the proposer of that ballot had promised and accepted
///    too, durably, before asking; so once every other voter has answered, it knows a ballot
///    at least as high as any it promised and a slot at least as high as any it accepted.
///    Until then it ignores leaders and candidates alike. (A quorum is not enough: its
///    others may never have heard of what this replica chose with the silent ones. Nor is
///    a new group told apart from a wiped replica: every replica of a new cluster starts
///    recovering, so a new cluster begins once each member has started.)
/// 2. It promises that ballot, refusing every lower one, then follows leaders: it accepts,
///    answers and learns what is chosen, but makes no promise to a candidate and does not
///    run for leader until it knows every slot through that last one chosen. A leader may
///    count its acceptances meanwhile: they are in ballots above anything it forgot, and a
///    quorum that elects a later leader without it meets every quorum that counted it in
///    a replica that remembers.
///
/// A crash before the end starts recovery over: the caller keeps a mark on disk from before
/// the replica's first start until it has persisted a `Ready` whose `recovered` is set.
extension Replica {
    enum Recovery: Sendable {
        /// Answers so far: each other voter's promise and the last slot of its log.
        case asking([NodeID: (promised: Ballot, last: Slot)])
        /// Every slot through this one must be known chosen before it votes.
        case catchingUp(through: Slot)
    }

    /// The replica started without its disk and has not caught up: it neither promises
    /// nor leads (see `Recovery`).
    public var isRecovering: Bool { recovery != nil }

    /// The slot a recovering replica must know chosen before it votes again, once known.
    public var recoveringThrough: Slot? {
        if case .catchingUp(let through) = recovery { return through }
        return nil
    }

    var isAskingToRecover: Bool {
        if case .asking = recovery { return true }
        return false
    }

    /// The voters a recovering replica must hear from.
    var otherVoters: Set<NodeID> { Set(currentMemberships.flatMap(\.voters)).subtracting([id]) }

    /// Asks the voters that have not answered yet (again, on every heartbeat).
    mutating func askToRecover() {
        guard case .asking(let answers) = recovery else { return }
        for voter in otherVoters.subtracting(answers.keys).sorted() { send(.recoveryQuery, to: voter) }
    }

    /// What this replica tells a recovering one: its promise and the last slot it holds.
    mutating func answerRecoveryQuery(from peer: NodeID) {
        let last = max(durable.log.keys.max() ?? 0, chosen, baseSlot)
        send(.recoveryStatus(promised: durable.promised, last: last), to: peer)
    }

    mutating func handleRecoveryStatus(promised: Ballot, last: Slot, from peer: NodeID) {
        noteRound(promised.round)
        guard case .asking(var answers) = recovery, otherVoters.contains(peer) else { return }
        answers[peer] = (promised, last)
        recovery = .asking(answers)
        concludeAskingIfAnswered()
    }

    /// Moves on to catching up once every other voter answered.
    mutating func concludeAskingIfAnswered() {
        guard case .asking(let answers) = recovery else { return }
        guard
            otherVoters.isSubset(of: answers.keys)
                || (!configuration.recoveryAsksEveryVoter
                    && isQuorumOfEach(Set(answers.keys).union([id]), currentMemberships))
        else { return }
        let highest = answers.values.map(\.promised).max() ?? .zero
        if highest > durable.promised { promise(highest) }
        recovery = .catchingUp(through: answers.values.map(\.last).max() ?? 0)
        finishRecoveryIfCaughtUp()
    }

    mutating func finishRecoveryIfCaughtUp() {
        guard case .catchingUp(let through) = recovery, chosen >= through else { return }
        recovery = nil
        recoveredUnpersisted = true
    }
}
