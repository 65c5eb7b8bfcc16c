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
/// whole, read beside the pump (`sendImage`), and installs it.
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
    /// The peers an image of this replica's tree is being read for, and when each peer
    /// was last sent one, and its size.
    var imagesReading: Set<NodeID> = []
    var imagesSent: [NodeID: (at: ContinuousClock.Instant, bytes: Int)] = [:]
    /// Per peer sent an image (or about to be): the slot after which the log must stay
    /// until the peer has the image (`compactIfDue`).
    var imagePins: [NodeID: Slot] = [:]
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

    /// Drops the core's log, in memory, behind the slot the tree has applied, but not past
    /// an image sent to a peer that has not installed it yet: the peer needs the slots after
    /// the image's from the log. A pin goes once the peer has them, once this replica stops
    /// leading, or once `pinnedSlotsMax` slots are held behind it (the peer is sent a newer
    /// image). The snapshot the core keeps has no image (empty data): the image is the
    /// tree's, read when a message carries it.
    func compactIfDue() async throws(StorageError) {
        guard !replica.configuration.isLogOnly else { return }
        if replica.role != .leader { imagePins = [:] }
        imagePins = imagePins.filter { peer, slot in
            (replica.chosen(by: peer) ?? 0) < slot && treeApplied <= slot + Self.pinnedSlotsMax
        }
        let through = imagePins.values.reduce(treeApplied, min)
        guard through >= (replica.durable.snapshot?.slot ?? 0) + options.compactionSlots else { return }
        replica.compact(through: through, snapshot: Self.treeImage)
    }

    static var pinnedSlotsMax: Slot { 8192 }

    /// A full replica's own snapshot in the core: the tree, whose image is read when a
    /// message carries it (no image is empty). A snapshot received from a leader carries
    /// its image, and is passed on as it is.
    static var treeImage: [UInt8] { [] }

    /// After an image, the next one to the same peer waits until the peer has had time to
    /// receive and install it (it is asked for with every heartbeat until the peer answers
    /// that it has, and each is read from the whole tree): `imageBytesPerSecond` of it.
    static var imageBytesPerSecond: Int { 4 << 20 }

    /// Whether `envelope` is a snapshot to a peer that is away, that an image is being read
    /// for, or that was sent one too recently.
    private func isTooSoonForAnImage(_ envelope: Envelope) -> Bool {
        guard case .snapshot(_, let snapshot, _) = envelope.message, snapshot.data == Self.treeImage else {
            return false
        }
        if environment?.canReach(envelope.to) == false || imagesReading.contains(envelope.to) { return true }
        guard let sent = imagesSent[envelope.to] else { return false }
        return ContinuousClock.now - sent.at < .seconds(Double(sent.bytes) / Double(Self.imageBytesPerSecond))
    }

    /// The messages to send now. A snapshot of the replica's own goes later, from a task that
    /// reads the tree's image beside the pump (`sendImage`), so that heartbeats and writes
    /// go on meanwhile. A promise that carries one gets the image here (elections are rare).
    func withImages(_ messages: [Envelope]) async throws(StorageError) -> [Envelope] {
        var now: [Envelope] = []
        for envelope in messages where !isTooSoonForAnImage(envelope) {
            switch envelope.message {
            case .snapshot(let ballot, let snapshot, let sentAt) where snapshot.data == Self.treeImage:
                imagesReading.insert(envelope.to)
                imagePins[envelope.to] = min(imagePins[envelope.to] ?? .max, treeApplied)
                Task(executorPreference: executor) { [self] in
                    await sendImage(to: envelope.to, ballot: ballot, sentAt: sentAt)
                }
            case .promise(let ballot, let accepted, let snapshot?) where snapshot.data == Self.treeImage:
                guard let image = try await treeImage() else { continue }
                now.append(
                    Envelope(
                        from: envelope.from, to: envelope.to,
                        message: .promise(ballot: ballot, accepted: accepted, snapshot: image)))
            default:
                now.append(envelope)
            }
        }
        return now
    }

    /// The tree's image as of the slot it is labelled with, and the membership in force
    /// after it; nil if it could not be read whole (it is sent again later).
    func treeImage() async throws(StorageError) -> Snapshot? {
        guard let (slot, image) = try await store.snapshotImage() else { return nil }
        return Snapshot(slot: slot, membership: replica.membership(at: slot + 1), data: image)
    }

    /// Sends `peer` a snapshot with the tree's image, if this replica still leads in
    /// `ballot` once it is read. The log after the image's slot stays until the peer has it.
    func sendImage(to peer: NodeID, ballot: Ballot, sentAt: UInt64) async {
        defer { imagesReading.remove(peer) }
        let image: Snapshot?
        do throws(StorageError) {
            image = try await treeImage()
        } catch {
            if !closed { stop(error) }
            return
        }
        guard let image, !closed, failure == nil, replica.role == .leader, replica.promised == ballot else {
            imagePins[peer] = nil
            return
        }
        imagePins[peer] = image.slot
        imagesSent[peer] = (.now, image.data?.count ?? 0)
        environment?.send(
            [Envelope(from: id, to: peer, message: .snapshot(ballot: ballot, snapshot: image, sentAt: sentAt))],
            from: id)
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
