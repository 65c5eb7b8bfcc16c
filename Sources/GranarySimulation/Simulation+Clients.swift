import GranaryLinearizability
import GranaryPaxos

/// The simulation's clients and checks: writes and conditional writes through the leader,
/// strong reads wherever a replica may serve one; every step checks one leader per ballot,
/// one value per slot, in-order applies, identical states after each slot and leases that
/// never overlap; the end checks that no acknowledged write was lost and that the clients'
/// history is linearizable.
extension Simulation {
    /// Clients write to whoever leads, blindly or conditionally, and read anywhere: only a
    /// replica that may serve a strong read answers.
    func runClients() {
        if random.chance(proposalChance), let leader = currentLeader() {
            let key = UInt64(random.below(Int(Simulation.keys)))
            let value = nextValue
            nextValue += 1
            let operation: KeyValueCommand =
                random.chance(0.3)
                ? .compareAndSet(
                    key: key, expected: random.chance(0.5) ? nil : UInt64(random.below(Int(value))), new: value)
                : .write(key: key, value: value)
            report.proposed += 1
            if code == .shipped {
                proposeShipped(operation, to: leader)
            } else {
                propose(operation.encoded, to: leader)
            }
        }
        if random.chance(proposalChance) {
            read(key: UInt64(random.below(Int(Simulation.keys))), at: nodeIDs[random.below(nodeIDs.count)])
        }
    }

    /// Whether a replica would answer a strong read now (as the caller decides it).
    func servesStrongReads(_ id: NodeID) -> Bool {
        guard let replica = nodes[Int(id)].replica else { return false }
        if bug == .readsWithoutLease { return replica.role == .leader }
        return code == .shipped ? nodes[Int(id)].servesStrongReads : replica.canServeStrongRead
    }

    /// A strongly consistent read at `id`: answered from its applied state if it may serve one.
    func read(key: UInt64, at id: NodeID) {
        guard servesStrongReads(id), let value = readValue(key, at: id) else { return }
        historyClock += 2
        history.append(
            .init(key: key, input: .read, output: .read(value), call: historyClock - 1, returned: historyClock))
        report.strongReads += 1
        trace(6, UInt64(id), key, value ?? .max)
    }

    /// A client's write to a shipped replica's leader, which logs writes, not conditions:
    /// it evaluates a conditional write against its tree and logs a put, or answers that the
    /// condition failed (a read: only under its lease). Either needs every slot before it
    /// applied but this leader's own on other keys, and none of them on this key.
    func proposeShipped(_ operation: KeyValueCommand, to leader: NodeID) {
        guard case .compareAndSet(let key, let expected, let new) = operation else {
            guard case .write(let key, let value) = operation else { return }
            return propose(Simulation.shippedCommand(key: key, value: value), to: leader, as: operation)
        }
        let pendingOnKey = pending[leader]?.values.contains { KeyValueCommand($0)?.key == key } ?? false
        guard servesStrongReads(leader), !pendingOnKey, let current = readValue(key, at: leader) else { return }
        guard current == expected else {
            historyClock += 2
            history.append(
                .init(
                    key: key, input: operation.input, output: .compareAndSet(succeeded: false),
                    call: historyClock - 1, returned: historyClock))
            return
        }
        let command = Simulation.shippedCommand(key: key, value: new)
        outputOnCommit[command] = .compareAndSet(succeeded: true)
        propose(command, to: leader, as: operation)
    }

    /// A client's proposal to `leader`; remembered so that its commit acknowledges it.
    func propose(_ command: Command, to leader: NodeID, as operation: KeyValueCommand? = nil) {
        guard nodes[Int(leader)].replica != nil else { return }
        guard let slot = proposeCommand(command, at: leader) else {
            outputOnCommit[command] = nil
            return
        }
        pending[leader, default: [:]][slot] = command
        if let operation = operation ?? KeyValueCommand(command) {
            historyClock += 1
            pendingOperation[command] = history.entries.count
            history.append(
                .init(key: operation.key, input: operation.input, output: nil, call: historyClock, returned: nil))
        }
    }

    /// Applies a chosen entry to a replica's state machine, checking it against every other.
    func apply(_ entry: Entry, at id: NodeID) {
        let expectedSlot = nodes[Int(id)].appliedThrough + 1
        if entry.slot != expectedSlot {
            report.violations.append("node \(id) applied slot \(entry.slot) when slot \(expectedSlot) was next")
        }
        nodes[Int(id)].appliedThrough = entry.slot
        let output = nodes[Int(id)].store.apply(entry.command)
        let digest = nodes[Int(id)].store.digest()
        if let chosen = chosenValues[entry.slot] {
            if chosen != entry.command {
                report.violations.append(
                    "slot \(entry.slot): node \(id) applied \(entry.command) but \(chosen) was chosen")
            } else if stateAfter[entry.slot] != digest {
                report.violations.append(
                    "slot \(entry.slot): node \(id)'s state differs from the first replica's that applied it")
            }
        } else {
            chosenValues[entry.slot] = entry.command
            stateAfter[entry.slot] = digest
            if case .membership(let membership) = entry.command { membershipChosen(membership, at: entry.slot) }
        }
        if let proposed = pending[id]?[entry.slot] {
            pending[id]![entry.slot] = nil
            if proposed == entry.command {
                acknowledged[proposed] = entry.slot
                if let index = pendingOperation.removeValue(forKey: proposed) {
                    historyClock += 1
                    history.entries[index].output = outputOnCommit.removeValue(forKey: proposed) ?? output
                    history.entries[index].returned = historyClock
                }
            } else if let index = pendingOperation.removeValue(forKey: proposed) {
                // Its slot chose another command, and a command lives in one slot only.
                failedOperations.insert(index)
            }
        }
        trace(4, UInt64(id), entry.slot, UInt64(entry.command.hashValueStable))
    }

    /// A replica's state machine reset to a snapshot (at restart, or sent by the leader).
    func restore(_ id: NodeID, data: [UInt8], through slot: Slot) {
        nodes[Int(id)].store = KeyValueStore(decoding: data)
        nodes[Int(id)].appliedThrough = slot
        if let digest = stateAfter[slot], digest != nodes[Int(id)].store.digest() {
            report.violations.append(
                "node \(id) restored a snapshot through slot \(slot) that differs from the state after that slot")
        }
        trace(10, UInt64(id), slot, 0)
    }

    /// The operator retires the replicas a chosen change removed (chosen slots are first
    /// applied in slot order, so `current` follows the log; a change that is not one
    /// change from it is void) once every voter of the new
    /// membership knows the change chosen: until then a voter that does not may need the
    /// old membership's quorum to recover the slots before it.
    func membershipChosen(_ membership: Membership, at slot: Slot) {
        guard membership.isOneChange(from: current) else { return }  // void, as the replicas read it
        let removed = current.voters.filter { !membership.contains($0) }
        if !removed.isEmpty { retiring.append((slot, removed, membership)) }
        current = membership
    }

    func retire() {
        retiring.removeAll { change in
            let known = change.membership.voters.allSatisfy { (nodes[Int($0)].replica?.chosen ?? 0) >= change.slot }
            guard known else { return false }
            for id in change.removed {
                stopDriver(id)
                nodes[Int(id)].replica = nil
                nodes[Int(id)].syncing = nil
                nodes[Int(id)].retired = true
                pending[id] = nil
                trace(11, UInt64(id), 0, 0)
            }
            return true
        }
    }

    func finish() -> SimulationReport {
        for id in nodeIDs { stopDriver(id) }
        // No acknowledged proposal lost: each is chosen in its slot.
        for (command, slot) in acknowledged.sorted(by: { $0.value < $1.value }) where chosenValues[slot] != command {
            report.violations.append(
                "acknowledged \(command) at slot \(slot) but \(chosenValues[slot].map { "\($0)" } ?? "nothing") is chosen there"
            )
        }
        report.ticks = now
        report.acknowledged = acknowledged.count
        report.chosenSlots = chosenValues.count
        // Every client's history, less proposals known never chosen, is linearizable.
        let checked = KeyValueHistory(
            history.entries.enumerated().filter { !failedOperations.contains($0.offset) }.map(\.element))
        let verdict = checked.check()
        report.operations = checked.entries.count
        report.inconclusiveKeys = verdict.inconclusiveKeys.count
        for (key, operations) in verdict.violations {
            report.violations.append(
                "key \(key): the history is not linearizable:\n    "
                    + operations.sorted { $0.call < $1.call }.map(\.description).joined(separator: "\n    "))
        }
        return report
    }

    /// At most one replica serves strong reads at any moment (leases never overlap).
    func checkLeases() {
        let serving = running.filter(servesStrongReads)
        if serving.count > 1 {
            let ballots = serving.map { "\($0) in ballot \(nodes[Int($0)].replica!.promised)" }.joined(separator: ", ")
            report.violations.append("tick \(now): two replicas serve strong reads at once: \(ballots)")
        }
    }

    func checkLeadership(_ id: NodeID) {
        guard nodes[Int(id)].replica!.role == .leader else { return }
        let ballot = nodes[Int(id)].replica!.promised
        if ballot.node != id { report.violations.append("node \(id) leads in ballot \(ballot), which is not its own") }
        let incarnation = nodes[Int(id)].incarnation
        if let other = leaderOfBallot[ballot], other != (id, incarnation) {
            report.violations.append(
                "two leaders in ballot \(ballot): \(other.id) (incarnation \(other.incarnation)) and \(id) (incarnation \(incarnation))"
            )
        }
        leaderOfBallot[ballot] = (id, incarnation)
    }
}
