import GranaryPaxos
import GranaryStorage

/// Where a replica's driver reaches the rest of the world: the network to its peers, and
/// whoever watches its state machine (the simulator's checks; later, a partition's reads).
public protocol ReplicaEnvironment: AnyObject, Sendable {
    /// Carries messages to their recipients; called only once what they report is durable.
    func send(_ messages: [Envelope], from: NodeID)
    /// A chosen entry was applied to the replica's tree.
    func applied(_ entry: Entry, at: NodeID)
    /// The replica's tree was replaced by a snapshot through `slot`, sent by the leader.
    func restored(through slot: Slot, at: NodeID) async
    /// A replica that started without its disk has caught up, and that is on disk: remove
    /// the mark that makes it start recovering (`Replica.Configuration.recovering`).
    func recovered(at: NodeID)
    /// Whether messages to `peer` can go now (no tree image is read for a peer that is
    /// away).
    func canReach(_ peer: NodeID) -> Bool
}

extension ReplicaEnvironment {
    public func canReach(_ peer: NodeID) -> Bool { true }
    public func applied(_ entry: Entry, at: NodeID) {}
    public func restored(through slot: Slot, at: NodeID) async {}
    public func recovered(at: NodeID) {}
}

/// One replica of a replication group: the Paxos core (`Replica`) driving a `ReplicaStore`.
/// Each of the core's `Ready`s is done in the order that keeps votes safe: persist (the
/// store's log, one group commit), then send, then apply the chosen entries to the tree.
///
/// The driver is an actor on one executor, the store's: a core's reactor in a node, the
/// simulator's scheduler in the simulator, with the same code. Inputs (a tick, a message,
/// a proposal) change the core at once and wake the pump, a task that runs the `Ready`s one
/// after another, so they never overlap and the inputs that arrive while one is being
/// persisted go out in the next. The applier, a second task, applies each `Ready`'s chosen
/// entries while the pump persists the next one. A storage failure stops the replica
/// (`failure`): like a crash, only a reopen, which recovers from what is really on disk,
/// goes on.
///
/// A full replica compacts the core's log every `compactionSlots` applied slots; the tree
/// is the snapshot. A replica that lags behind the compaction is sent the tree's image
/// whole (`withImages`), and installs it.
public actor ReplicationDriver<S: Storage & Sendable> {
    private nonisolated let executor: any SerialExecutor & TaskExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public struct Options: Sendable {
        /// The core keeps accepted entries in memory until then (a leader sends them from
        /// there), so this bounds its memory: 64 writes of at most a log record each.
        public var compactionSlots: Slot = 64
        /// Off except in the simulator's demonstration that its checks catch it: messages
        /// leave before what they report is durable.
        public var sendsBeforePersisting = false
        /// Off except there too: the replica reopens without its promise (its log kept).
        public var forgetsPromiseAtOpen = false
        public init() {}
    }

    /// Why a write did not happen.
    public enum WriteFailure: Error, Sendable {
        /// This replica does not lead; the leader it knows of, if any.
        case notLeader(NodeID?)
        /// The write's slot was chosen with another command (another leader took over
        /// first): it did not happen, and never will.
        case lost
        /// The store failed (`failure`): the write may or may not have happened.
        case storage(StorageError)
    }

    public private(set) var replica: Replica
    public nonisolated let store: ReplicaStore<S>
    let options: Options
    weak var environment: (any ReplicaEnvironment)?
    /// Set when the store failed: the replica stops, as if it had crashed.
    public private(set) var failure: StorageError?
    var closed = false
    /// Writes proposed here and not yet applied, by slot: what each proposed (as logged,
    /// and as writes, applied from here when it wins), and its writer, who learns whether
    /// its command won the slot (nil: unknown).
    var proposals: [Slot: (command: Command, writes: [StoreWrite], waiter: UnsafeContinuation<Bool?, Never>?)] = [:]
    /// Outcomes of proposals settled before their writer waited (true: its command won).
    var outcomes: [Slot: Bool] = [:]
    /// Chosen entries handed to the applier, in slot order, and whether it is applying.
    var toApply: [Entry] = []
    var applying = false
    var applierWaiter: UnsafeContinuation<Void, Never>?
    /// The last slot the applier applied to the tree (the core's `applied` is what it was
    /// handed, which may be more).
    var treeApplied: Slot = 0
    /// Callers waiting for the applier to finish what it was handed.
    var appliedWaiters: [UnsafeContinuation<Void, Never>] = []
    /// The pump, while it waits for an input; callers of `idle`.
    var pumpWaiter: UnsafeContinuation<Void, Never>?
    /// When each peer was last sent a large image of this replica's tree, and its size.
    var largeImagesSent: [NodeID: (at: ContinuousClock.Instant, bytes: Int)] = [:]
    /// An input came while the pump was not waiting.
    var woken = false
    var idleWaiters: [UnsafeContinuation<Void, Never>] = []

    /// Opens the replica in `storage` and starts its core with what the store recovered.
    /// Its first input runs the core's first `Ready` (the chosen entries the tree lacks).
    public static func open(
        storage: S, configuration: Replica.Configuration, storeOptions: ReplicaStore<S>.Options,
        options: Options = Options(), executor: any SerialExecutor & TaskExecutor,
        environment: (any ReplicaEnvironment)?
    ) async throws(StorageError) -> ReplicationDriver {
        let (store, state) = try await ReplicaStore.openMember(
            storage: storage, options: storeOptions, executor: executor)
        var durable = DurableState()
        durable.promised = options.forgetsPromiseAtOpen ? .zero : Ballot(state.promised)
        durable.chosen = state.chosen
        if state.snapshotSlot > 0 {
            var membership = configuration.founding
            if let bytes = state.membership {
                guard let decoded = Membership(encoded: bytes) else {
                    throw .corruption(file: "btree", offset: 0, detail: "the stored membership does not parse")
                }
                membership = decoded
            }
            durable.snapshot = Snapshot(
                slot: state.snapshotSlot, membership: membership, data: configuration.isLogOnly ? nil : treeImage)
        }
        for entry in state.entries {
            guard let command = Command(entry.command) else {
                throw .corruption(file: "wal", offset: 0, detail: "the membership in slot \(entry.slot) does not parse")
            }
            durable.log[entry.slot] = Entry(slot: entry.slot, ballot: Ballot(entry.ballot), command: command)
        }
        return ReplicationDriver(
            replica: Replica(configuration: configuration, durable: durable), store: store, options: options,
            environment: environment, executor: executor)
    }

    /// Opens the replica in `storage` as a group of one (node id `storeOptions.node`), and
    /// returns once it leads: it elects itself at once (its own promise is a majority), and
    /// then chooses, in its new ballot, whatever its log held accepted but not known chosen.
    public static func openAlone(
        storage: S, storeOptions: ReplicaStore<S>.Options, executor: any SerialExecutor & TaskExecutor
    ) async throws(StorageError) -> ReplicationDriver {
        let driver = try await open(
            storage: storage,
            configuration: Replica.Configuration(id: storeOptions.node, members: [storeOptions.node], seed: 0),
            storeOptions: storeOptions, executor: executor, environment: nil)
        // Alone, it needs the clock only to elect itself: a wait for a lease it cannot
        // have missed, then an election timeout, a few dozen ticks.
        for _ in 0..<1000 {
            let replica = await driver.replica
            guard replica.role != .leader || replica.hasReady else { break }
            await driver.tick()
            await driver.idle()
            if let failure = await driver.failure {
                await driver.close()
                throw failure
            }
        }
        let role = await driver.replica.role
        precondition(role == .leader, "a group of one elects itself")
        return driver
    }

    init(
        replica: Replica, store: ReplicaStore<S>, options: Options, environment: (any ReplicaEnvironment)?,
        executor: any SerialExecutor & TaskExecutor
    ) {
        self.replica = replica
        treeApplied = replica.applied
        self.executor = executor
        self.store = store
        self.options = options
        self.environment = environment
        Task(executorPreference: executor) { [self] in await pump() }
        Task(executorPreference: executor) { [self] in await applier() }
    }

    var id: NodeID { replica.configuration.id }

    /// Whether this replica may answer a strongly consistent read from its tree now: the
    /// core says it may (see `Replica.canServeStrongRead`), and the tree holds every slot
    /// the core handed out.
    public var canServeStrongRead: Bool { replica.canServeStrongRead && treeApplied >= replica.applied }

    /// The ballot this replica leads in, if it may serve strong reads now (as
    /// `canServeStrongRead`); nil otherwise.
    public var servingBallot: Ballot? { canServeStrongRead ? replica.promised : nil }

    /// The leader this replica last heard from (itself, when it leads), if any.
    public var leader: NodeID? { replica.leader }

    /// What an operator sees of the replica: its role, the leader it knows, the ballot it
    /// promised, and the chosen and applied prefixes of its log.
    public struct Status: Sendable {
        public var role: Replica.Role
        public var leader: NodeID?
        public var promised: Ballot
        public var chosen: Slot
        public var applied: Slot
        public var failure: String?
        /// It started without its disk and has not caught up (`Replica.Recovery`).
        public var recovering: Bool
    }

    public var status: Status {
        Status(
            role: replica.role, leader: replica.leader, promised: replica.promised, chosen: replica.chosen,
            applied: treeApplied, failure: failure?.description, recovering: replica.isRecovering)
    }

    // MARK: Inputs

    /// Each input changes the core at once; the pump (below) does what follows.
    public func tick(_ count: UInt64 = 1) {
        for _ in 0..<count { replica.tick() }
        wake()
    }

    public func receive(_ envelope: Envelope) {
        replica.step(envelope)
        wake()
    }

    /// Proposes writes for the next slot; returns it if this replica leads (see
    /// `Replica.propose`).
    public func propose(_ writes: [StoreWrite]) -> Slot? {
        defer { wake() }
        return replica.propose(.value(LogCommand.writes(writes).encoded))
    }

    public func proposeMembership(_ membership: Membership) -> Slot? {
        defer { wake() }
        return replica.proposeMembership(membership)
    }

    public func transferLeadership(to target: NodeID) -> Bool {
        defer { wake() }
        return replica.transferLeadership(to: target)
    }

    /// Writes `writes` together, in one slot: applied to this replica's tree, all of them,
    /// when it returns (and, in a group of one, durable). A leader's writes take the next
    /// slots; the ones proposed while a `Ready` is on its way go down together in the next.
    public func write(_ writes: [StoreWrite]) async throws(WriteFailure) {
        if let failure { throw .storage(.fenced(failure.description)) }
        let payload = LogCommand.writes(writes).encoded
        guard payload.count <= store.writeBytesMax else {
            throw .storage(.limitExceeded("a log record of \(payload.count) bytes exceeds \(store.writeBytesMax)"))
        }
        let command = Command.value(payload)
        guard let slot = replica.propose(command) else { throw .notLeader(replica.leader) }
        proposals[slot] = (command, writes, nil)
        wake()
        // The slot may be settled before the body runs: other jobs of this executor may run
        // first.
        let won = await withUnsafeContinuation { (waiter: UnsafeContinuation<Bool?, Never>) in
            if let outcome = outcomes.removeValue(forKey: slot) {
                waiter.resume(returning: outcome)
            } else if proposals[slot] == nil {
                waiter.resume(returning: nil)  // the replica stopped
            } else {
                proposals[slot]!.waiter = waiter
            }
        }
        switch won {
        case true?: return
        case false?: throw .lost
        case nil: throw .storage(.fenced(failure?.description ?? "the replica stopped"))
        }
    }

    /// The store failed: every waiting writer learns that its outcome is unknown.
    func stop(_ error: StorageError) {
        failure = error
        for (_, proposal) in proposals { proposal.waiter?.resume(returning: nil) }
        proposals = [:]
    }

    /// Stops the pump (the store is the caller's to close). Waiting writers learn that
    /// their outcome is unknown.
    public func close() {
        closed = true
        stop(failure ?? .fenced("the replica was closed"))
        wake()
        applierWaiter.take()?.resume()
    }

    /// Returns once the pump has nothing left to do (for tests and start-up).
    public func idle() async {
        if pumpWaiter == nil {
            await withUnsafeContinuation { waiter in
                if pumpWaiter == nil { idleWaiters.append(waiter) } else { waiter.resume() }
            }
        }
        await appliedAll()
    }

    // MARK: The Ready loop

    /// The pump: a task of its own on the replica's executor that runs the core's `Ready`s
    /// while there are any, then waits for an input. Writers only propose and wait for
    /// their slot, so none is held doing the others' work.
    /// It does nothing before the first input, so that whoever opened the replica sees it
    /// as recovered, before it applies what its log holds chosen.
    func pump() async {
        await park(untilWoken: true)
        while !closed {
            while failure == nil && !closed && replica.hasReady { await processReady() }
            for waiter in idleWaiters { waiter.resume() }
            idleWaiters = []
            await park(untilWoken: false)
        }
        for waiter in idleWaiters { waiter.resume() }
        idleWaiters = []
    }

    /// Waits for an input (returning at once if one came since, or if there is work).
    func park(untilWoken: Bool) async {
        await withUnsafeContinuation { waiter in
            if closed || woken || (!untilWoken && failure == nil && replica.hasReady) {
                woken = false
                waiter.resume()
            } else {
                pumpWaiter = waiter
            }
        }
    }

    func wake() {
        if let waiter = pumpWaiter.take() { waiter.resume() } else { woken = true }
    }

    /// One `Ready`: persisted, then sent; its chosen entries go to the applier, which
    /// applies them while the pump persists the next `Ready` (the core counts a slot applied
    /// once handed out). A snapshot to install waits until the applier is done, since it
    /// replaces the tree; so does a pump that finds `toApplyMax` entries still waiting.
    static var toApplyMax: Int { 4096 }

    func processReady() async {
        // One loop turn first, so that the inputs already on their way (other writers'
        // proposals, this turn's messages) go into this `Ready`: the log's group commit.
        await Task.yield()
        let ready = replica.ready()
        do throws(StorageError) {
            if ready.snapshot != nil { await appliedAll() }
            if let failure { throw failure }
            if !ready.earlyMessages.isEmpty { environment?.send(ready.earlyMessages, from: id) }
            if options.sendsBeforePersisting { environment?.send(try await withImages(ready.messages), from: id) }
            try await persist(ready)
            if ready.recovered { environment?.recovered(at: id) }
            if !options.sendsBeforePersisting { environment?.send(try await withImages(ready.messages), from: id) }
            if !ready.committed.isEmpty {
                if toApply.count >= Self.toApplyMax { await appliedAll() }
                toApply += ready.committed
                applierWaiter.take()?.resume()
            }
            replica.advance(ready)
            try await compactIfDue()
        } catch {
            stop(error)
        }
    }

    /// Applies the chosen entries it is handed, in slot order, each once. An entry this
    /// replica proposed is applied from the writes it was given; it settles its writer.
    func applier() async {
        while !closed {
            while !toApply.isEmpty && failure == nil {
                applying = true
                let entries = toApply
                toApply = []
                do throws(StorageError) {
                    for entry in entries {
                        let proposal = proposals.removeValue(forKey: entry.slot)
                        let won = proposal.map { $0.command == entry.command }
                        let command = won == true ? .writes(proposal!.writes) : try storeCommand(entry, applying: true)
                        try await store.apply(command, slot: entry.slot)
                        treeApplied = entry.slot
                        if let proposal {
                            if let waiter = proposal.waiter {
                                waiter.resume(returning: won)
                            } else {
                                outcomes[entry.slot] = won
                            }
                        }
                        environment?.applied(entry, at: id)
                    }
                    // A checkpoint of its own (started by an apply) may have failed: stop at once.
                    if let fenced = await store.fenced { throw fenced }
                } catch {
                    stop(error)
                }
                applying = false
            }
            for waiter in appliedWaiters { waiter.resume() }
            appliedWaiters = []
            await withUnsafeContinuation { waiter in
                if closed || (!toApply.isEmpty && failure == nil) { waiter.resume() } else { applierWaiter = waiter }
            }
        }
        for waiter in appliedWaiters { waiter.resume() }
        appliedWaiters = []
    }

    /// Returns once the applier has applied everything it was handed (or stopped).
    func appliedAll() async {
        guard applying || !toApply.isEmpty, failure == nil, !closed else { return }
        // Checked again inside: other jobs of this executor may run before the body.
        await withUnsafeContinuation { waiter in
            if (applying || !toApply.isEmpty) && failure == nil && !closed {
                appliedWaiters.append(waiter)
            } else {
                waiter.resume()
            }
        }
    }

    /// The snapshot first (it replaces the log up to its slot), then the promise, the
    /// entries and the chosen prefix, in one group commit.
    func persist(_ ready: Ready) async throws(StorageError) {
        if let snapshot = ready.snapshot {
            if ready.restoreSnapshot, let data = snapshot.data {
                try await store.installImage(data, slot: snapshot.slot)
                treeApplied = snapshot.slot
                await environment?.restored(through: snapshot.slot, at: id)
            } else if snapshot.data == nil || replica.configuration.isLogOnly {
                // A log-only replica's compaction, or a leader's snapshot it keeps only as
                // the start of its log (it has no tree to install it in).
                try await store.startLog(after: snapshot.slot, membership: snapshot.membership.encoded)
            }
            // A full replica's own compaction needs nothing on disk: the store keeps its log
            // until its tree is checkpointed past it, and the tree is the snapshot.
        }
        var entries: [(slot: UInt64, ballot: LogBallot, payload: [UInt8])] = []
        entries.reserveCapacity(ready.entries.count)
        for entry in ready.entries {
            entries.append((entry.slot, LogBallot(entry.ballot), try logged(entry)))
        }
        try await store.persist(promised: ready.promised.map(LogBallot.init), entries: entries, chosen: ready.chosen)
    }

    /// An entry's command as the log holds it (a value is already one: writes).
    func logged(_ entry: Entry) throws(StorageError) -> [UInt8] {
        switch entry.command {
        case .noop: return LogCommand.noop.encoded
        case .membership(let membership): return LogCommand.membership(membership.encoded).encoded
        case .value(let bytes):
            guard bytes.first == LogCommand.writesTag else {
                throw .corruption(file: "wal", offset: 0, detail: "slot \(entry.slot) holds a value that is not writes")
            }
            return bytes
        }
    }

    /// An entry's command as the store applies it. A membership change is kept as the
    /// membership it leaves in force (a change that is not one change is void).
    func storeCommand(_ entry: Entry, applying: Bool = false) throws(StorageError) -> LogCommand {
        switch entry.command {
        case .noop: return .noop
        case .membership(let membership):
            return .membership((applying ? replica.membership(at: entry.slot + 1) : membership).encoded)
        case .value(let bytes):
            guard case .writes(let writes)? = LogCommand(decoding: bytes) else {
                throw .corruption(file: "wal", offset: 0, detail: "slot \(entry.slot) holds a value that is not writes")
            }
            return .writes(writes)
        }
    }

    /// Drops the core's log, in memory, behind the slot the tree has applied. The snapshot
    /// it keeps has no image (empty data): the image is the tree's, read when a message
    /// carries it.
    func compactIfDue() async throws(StorageError) {
        guard !replica.configuration.isLogOnly,
            treeApplied >= (replica.durable.snapshot?.slot ?? 0) + options.compactionSlots
        else { return }
        replica.compact(through: treeApplied, snapshot: Self.treeImage)
    }

    /// A full replica's own snapshot in the core: the tree, whose image `withImages` reads
    /// when a message carries it (no image is empty). A snapshot received from a leader
    /// carries its image, and is passed on as it is.
    static var treeImage: [UInt8] { [] }

    /// An image above this size is sent to a peer at most once per `largeImageBytesPerSecond`
    /// of it: a follower that lags past compaction is sent the snapshot with every
    /// heartbeat until it has installed one, and each image is read from the whole tree.
    static var largeImageBytes: Int { 4 << 20 }
    static var largeImageBytesPerSecond: Int { 32 << 20 }

    /// Whether `envelope` is a snapshot to a peer that is away, or that was sent a large
    /// image too recently.
    private func isTooSoonForAnImage(_ envelope: Envelope) -> Bool {
        guard case .snapshot(_, let snapshot, _) = envelope.message, snapshot.data == Self.treeImage else {
            return false
        }
        if environment?.canReach(envelope.to) == false { return true }
        guard let sent = largeImagesSent[envelope.to] else { return false }
        return ContinuousClock.now - sent.at < .seconds(Double(sent.bytes) / Double(Self.largeImageBytesPerSecond))
    }

    /// The messages with the tree's image in each snapshot of its own they carry: the tree as applied
    /// now, which holds every slot through the core's snapshot and maybe more, so the
    /// snapshot is labelled with the tree's slot and the membership in force after it.
    func withImages(_ messages: [Envelope]) async throws(StorageError) -> [Envelope] {
        let messages = messages.filter { !isTooSoonForAnImage($0) }
        guard
            messages.contains(where: {
                switch $0.message {
                case .snapshot(_, let snapshot, _), .promise(_, _, let snapshot?): snapshot.data == Self.treeImage
                default: false
                }
            })
        else { return messages }
        await appliedAll()
        let slot = await store.appliedSlot
        let image = Snapshot(
            slot: slot, membership: replica.membership(at: slot + 1), data: try await store.snapshotImage())
        return messages.map { envelope in
            var envelope = envelope
            switch envelope.message {
            case .snapshot(let ballot, let snapshot, let sentAt) where snapshot.data == Self.treeImage:
                envelope.message = .snapshot(ballot: ballot, snapshot: image, sentAt: sentAt)
                if let bytes = image.data?.count, bytes > Self.largeImageBytes {
                    largeImagesSent[envelope.to] = (.now, bytes)
                }
            case .promise(let ballot, let accepted, let snapshot?) where snapshot.data == Self.treeImage:
                envelope.message = .promise(ballot: ballot, accepted: accepted, snapshot: image)
            default: break
            }
            return envelope
        }
    }
}

extension Ballot {
    init(_ ballot: LogBallot) { self.init(round: ballot.round, node: ballot.node) }
}

extension LogBallot {
    init(_ ballot: Ballot) { self.init(round: ballot.round, node: ballot.node) }
}

extension Command {
    /// A stored entry's command (nil for a membership that does not parse).
    init?(_ command: LogCommand) {
        switch command {
        case .noop: self = .noop
        case .writes: self = .value(command.encoded)
        case .membership(let bytes):
            guard let membership = Membership(encoded: bytes) else { return nil }
            self = .membership(membership)
        }
    }
}
