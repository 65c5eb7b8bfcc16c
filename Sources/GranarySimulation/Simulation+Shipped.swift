import GranaryLinearizability
import GranaryPaxos
import GranaryReplication
import GranaryStorage
import GranaryStorageFaults

/// Which replica code a simulation runs.
public enum ReplicaCode: Sendable {
    /// The Paxos core alone, its disk a `DurableState` in memory and its state machine a
    /// dictionary: fast, for many seeds and long runs.
    case model
    /// What a node ships: `ReplicationDriver` driving the core over a `ReplicaStore` (its WAL
    /// and B-tree) on `FaultyStorage`, on the simulator's scheduler. Crashes cut the power
    /// (unsynced writes lost or torn), a crash may come in the middle of a persist, writes
    /// and syncs fail with EIO (the store fences, the replica restarts).
    case shipped
}

/// The shipped replica in the simulation: how each input reaches it, and its checks.
extension Simulation: ReplicaEnvironment {
    /// The simulator's tree keys: "kv/" and the key, 8 bytes big-endian.
    static func treeKey(_ key: UInt64) -> [UInt8] {
        Array("kv/".utf8) + (0..<8).map { UInt8(truncatingIfNeeded: key >> (56 - 8 * $0)) }
    }

    static func treeValue(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    static func number(_ bytes: [UInt8]) -> UInt64? {
        bytes.count == 8 ? bytes.reduce(0) { $0 << 8 | UInt64($1) } : nil
    }

    /// A client's write as the shipped replica logs it: one put.
    static func shippedCommand(key: UInt64, value: UInt64) -> Command {
        .value(LogCommand.writes([.put(key: treeKey(key), value: treeValue(value))]).encoded)
    }

    func storeOptions() -> ReplicaStore<FaultyStorage>.Options {
        var options = ReplicaStore<FaultyStorage>.Options()
        options.log.segmentBytes = 64 * 1024
        options.log.groupBytesMax = 16 * 1024
        options.log.recordPayloadBytesMax = 8 * 1024
        options.log.zeroFillNewSegments = false
        options.tree.cachePages = 64
        options.checkpointDirtyPages = 16
        options.checkpointLogSegments = 3
        return options
    }

    // MARK: Starting and stopping

    /// Starts (or restarts) a node's replica from its disk.
    func startReplica(_ id: NodeID) {
        switch code {
        case .model:
            let disk = nodes[Int(id)].disk
            nodes[Int(id)].replica = Replica(configuration: configuration(id), durable: disk)
            if let snapshot = disk.snapshot, let data = snapshot.data {
                restore(id, data: data, through: snapshot.slot)
            }
        case .shipped:
            if nodes[Int(id)].storage == nil { nodes[Int(id)].storage = FaultyStorage(seed: seed &+ UInt64(id) << 32) }
            var options = ReplicationDriver<FaultyStorage>.Options()
            options.compactionSlots = Simulation.compactionSlots
            options.sendsBeforePersisting = bug == .sendBeforePersist
            options.forgetsPromiseAtOpen = bug == .forgetPromiseOnRestart
            let storage = nodes[Int(id)].storage!, configuration = configuration(id), storeOptions = storeOptions()
            let environment: any ReplicaEnvironment = self
            let opened = executor.run { [executor] () -> Result<ReplicationDriver<FaultyStorage>, StorageError> in
                do throws(StorageError) {
                    return .success(
                        try await ReplicationDriver.open(
                            storage: storage, configuration: configuration, storeOptions: storeOptions,
                            options: options, executor: executor, environment: environment))
                } catch {
                    return .failure(error)
                }
            }
            switch opened {
            case .success(let driver):
                nodes[Int(id)].driver = driver
                nodes[Int(id)].failuresAtStart = storage.failuresInjected
                let failure = mirror(id, driver)
                precondition(failure == nil, "a replica that opened has not failed")
                if !configuration.isLogOnly {
                    let store = driver.store
                    adoptTree(
                        executor.run { await Simulation.treeValues(store) }, at: id,
                        through: nodes[Int(id)].replica!.applied)
                }
            case .failure(let error):
                report.violations.append("node \(id) could not reopen its disk: \(error)")
            }
        }
    }

    func crashShipped(_ id: NodeID) {
        stopDriver(id)
        nodes[Int(id)].storage?.powerCut()
    }

    /// Stops a node's shipped replica (its pump ends), counting its checkpoints.
    func stopDriver(_ id: NodeID) {
        guard let driver = nodes[Int(id)].driver else { return }
        let store = driver.store
        report.checkpoints += executor.run { await store.checkpointCount }
        executor.run { await driver.close() }
        nodes[Int(id)].driver = nil
    }

    /// The simulator's keys as a replica's tree holds them (nil if the tree fails a read).
    static func treeValues(_ store: ReplicaStore<FaultyStorage>) async -> [UInt64: UInt64]? {
        var values: [UInt64: UInt64] = [:]
        for key in 0..<Simulation.keys {
            do {
                values[key] = try await store.get(Simulation.treeKey(key)).flatMap(Simulation.number)
            } catch {
                return nil
            }
        }
        return values
    }

    /// The node's model state machine becomes what its tree holds through `slot` (after a
    /// restart, or a snapshot installed), checked against the state after that slot.
    func adoptTree(_ values: [UInt64: UInt64]?, at id: NodeID, through slot: Slot) {
        guard let values else {
            report.violations.append("node \(id) could not read its tree through slot \(slot)")
            return
        }
        nodes[Int(id)].store = KeyValueStore(values: values)
        nodes[Int(id)].appliedThrough = slot
        if let digest = stateAfter[slot], digest != nodes[Int(id)].store.digest() {
            report.violations.append("node \(id)'s tree through slot \(slot) differs from the state after that slot")
        }
        trace(10, UInt64(id), slot, 0)
    }

    // MARK: Inputs

    /// Runs one input on a shipped replica, then what follows it: its messages out, its
    /// crash if the disk failed or one was planned, and the checks.
    func onDriver(_ id: NodeID, _ body: sending @escaping (ReplicationDriver<FaultyStorage>) async -> Void) {
        guard let driver = nodes[Int(id)].driver else { return }
        let storage = nodes[Int(id)].storage!
        if stepIsFaulty && random.chance(faults.crashWhilePersisting) {
            storage.cutPower(afterOperations: random.below(4))
        } else if stepIsFaulty && random.chance(faults.diskError) {
            storage.failNext(random.chance(0.5) ? .write : .sync)
            report.diskErrors += 1
        }
        executor.run { await body(driver) }
        storage.cancelPlannedFaults()
        let failure = mirror(id, driver)
        if let failure, storage.failuresInjected == nodes[Int(id)].failuresAtStart {
            report.violations.append("node \(id)'s store failed with no disk fault injected: \(failure)")
        }
        if failure != nil || crashAfterSend.contains(id) {
            crashAfterSend.remove(id)
            crash(id)
            return
        }
        checkLeadership(id)
        if checkLeasesOnEveryStep { checkLeases() }
    }

    /// The node's copy of its driver's core (and whether it may serve strong reads), taken
    /// once the driver has nothing left to do; returns the driver's failure, if any.
    func mirror(_ id: NodeID, _ driver: ReplicationDriver<FaultyStorage>) -> StorageError? {
        let (replica, servesReads, failure) = executor.run {
            await (driver.replica, driver.canServeStrongRead, driver.failure)
        }
        nodes[Int(id)].replica = replica
        nodes[Int(id)].servesStrongReads = servesReads
        return failure
    }

    public func send(_ messages: [Envelope], from id: NodeID) {
        if stepIsFaulty && !messages.isEmpty && random.chance(faults.crashBeforeSend) {
            crashAfterSend.insert(id)
        }
        if crashAfterSend.contains(id) { return }
        send(messages, faulty: stepIsFaulty)
    }

    public func applied(_ entry: Entry, at id: NodeID) {
        apply(entry, at: id)
    }

    public func restored(through slot: Slot, at id: NodeID) async {
        guard let store = nodes[Int(id)].driver?.store else { return }
        report.snapshotsInstalled += 1
        adoptTree(await Simulation.treeValues(store), at: id, through: slot)
    }

    public func recovered(at id: NodeID) { nodes[Int(id)].recovering = false }

    /// A strong read's value at a replica that may serve one (from its tree, when shipped):
    /// the key's value or nil if it has none; nil outside if the tree failed the read.
    func readValue(_ key: UInt64, at id: NodeID) -> UInt64?? {
        guard code == .shipped, let store = nodes[Int(id)].driver?.store else {
            return .some(nodes[Int(id)].store.values[key])
        }
        return executor.run { () -> UInt64?? in
            do {
                return .some(try await store.get(Simulation.treeKey(key)).flatMap(Simulation.number))
            } catch {
                return nil
            }
        }
    }
}
