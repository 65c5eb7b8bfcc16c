import GranaryIO
import Testing

@Suite struct FIFOLocksTests {
    /// Tasks of one actor, each taking a key's lock, suspending while holding it, and
    /// noting when it had it: the holders of a key never overlap and come in arrival order;
    /// another key is not held up.
    actor Recorder {
        let locks = FIFOLocks<String>()
        var events: [String] = []

        func run(_ name: String, key: String) async {
            events.append("\(name) waits")
            await locks.acquire(key)
            events.append("\(name) holds \(key)")
            await Task.yield()
            await Task.yield()
            events.append("\(name) releases \(key)")
            locks.release(key)
        }

        func heldCount() -> Int { locks.heldCount }
    }

    @Test func holdersOfAKeyNeverOverlapAndComeInArrivalOrder() async {
        let recorder = Recorder()
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                // One task at a time joins the queue, so arrival order is index order.
                let name = "t\(index)"
                let key = index % 4 == 3 ? "other" : "hot"
                group.addTask { await recorder.run(name, key: key) }
                await Task.yield()
            }
        }
        let events = await recorder.events
        for key in ["hot", "other"] {
            var holder: String?
            var order: [String] = []
            for event in events {
                let parts = event.split(separator: " ").map(String.init)
                guard parts.count == 3, parts[2] == key else { continue }
                if parts[1] == "holds" {
                    #expect(holder == nil, "\(parts[0]) took \(key) while \(holder ?? "") held it")
                    holder = parts[0]
                    order.append(parts[0])
                } else {
                    #expect(holder == parts[0])
                    holder = nil
                }
            }
            let waits = events.filter { $0.hasSuffix("waits") }.map { String($0.split(separator: " ")[0]) }
            let keyed = waits.filter { name in
                let index = Int(name.dropFirst())!
                return (index % 4 == 3 ? "other" : "hot") == key
            }
            #expect(order == keyed, "holders of \(key) in arrival order")
        }
        #expect(events.count == 60)
        #expect(await recorder.heldCount() == 0)
    }

    @Test func aFreeKeyIsTakenAtOnceAndReleasedToNothing() async {
        let locks = FIFOLocks<Int>()
        await locks.acquire(1)
        #expect(locks.isHeld(1) && !locks.isHeld(2))
        locks.release(1)
        #expect(!locks.isHeld(1) && locks.heldCount == 0)
    }
}
