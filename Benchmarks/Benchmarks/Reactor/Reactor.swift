// Microbenchmarks of the reactor: the floor of one io_uring round trip in each of the two
// styles the reactor offers (completion callbacks, and async tasks that resume on the
// core), the cost of a cross-core message, and the CRC32C choice.
//
//     cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target Reactor
//
// Each benchmark's iteration runs 1,000 operations on a reactor thread and waits for them
// to finish, so the figures (scaled per operation) include no cross-thread hand-off cost
// except in the cross-core benchmark, where that hand-off is the thing measured.
import Benchmark
import CShims
import Dispatch
import GranaryIO

/// Two reactors pinned to CPUs 0 and 1 (or unpinned on a one-CPU machine).
let reactors: ReactorGroup = {
    let cpus = ReactorGroup.availableCPUs()
    return try! ReactorGroup(cpus: cpus.count >= 2 ? [cpus[0], cpus[1]] : [nil, nil])
}()

/// Runs `body` on `reactor`'s thread and waits until it calls its completion.
func runOnReactor(_ reactor: Reactor, _ body: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
    let done = DispatchSemaphore(value: 0)
    while !reactor.tryPost({ body { done.signal() } }) {}
    done.wait()
}

/// `count` no-op requests, one after another, each submitted from the previous one's callback.
func chainNoOperations(on reactor: Reactor, count: Int, then finish: @escaping () -> Void) {
    guard count > 0 else { return finish() }
    reactor.submit({ _ in chainNoOperations(on: reactor, count: count - 1, then: finish) }) { sqe, _ in
        io_uring_prep_nop(sqe)
    }
}

/// A cross-core ping-pong: `count` round trips between `home` and `away`.
func pingPong(home: Reactor, away: Reactor, count: Int, then finish: @escaping @Sendable () -> Void) {
    guard count > 0 else { return finish() }
    while !away.tryPost({
        while !home.tryPost({ pingPong(home: home, away: away, count: count - 1, then: finish) }) {}
    }) {}
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 10_000)

    let reactor = reactors.reactors[0]

    Benchmark("No-op round trip, completion callback") { benchmark in
        let count = benchmark.scaledIterations.count
        runOnReactor(reactor) { done in chainNoOperations(on: reactor, count: count, then: done) }
    }

    Benchmark("No-op round trip, async task on the reactor") { benchmark in
        let count = benchmark.scaledIterations.count
        runOnReactor(reactor) { done in
            Task(executorPreference: reactor) {
                for _ in 0..<count { _ = await reactor.noOperation() }
                done()
            }
        }
    }

    Benchmark("No-op, 32 in flight, async tasks on the reactor") { benchmark in
        let count = benchmark.scaledIterations.count
        runOnReactor(reactor) { done in
            Task(executorPreference: reactor) {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<32 {
                        group.addTask(executorPreference: reactor) {
                            for _ in 0..<(count / 32) { _ = await reactor.noOperation() }
                        }
                    }
                }
                done()
            }
        }
    }

    Benchmark("Cross-core message round trip") { benchmark in
        let away = reactors.reactors[1]
        let count = benchmark.scaledIterations.count
        runOnReactor(reactor) { done in
            pingPong(home: reactor, away: away, count: count, then: done)
        }
    }

    Benchmark("Cross-core messages one way, bounded inbox") { benchmark in
        // One core sends `count` messages as fast as the receiver's inbox takes them; the
        // last one tells the sender that everything arrived.
        let away = reactors.reactors[1]
        let count = benchmark.scaledIterations.count
        runOnReactor(reactor) { done in
            for index in 0..<count {
                let last = index == count - 1
                while !away.tryPost({ if last { done() } }) {}
            }
        }
    }

    for size in [4096, 65536] {
        let data = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        data.initializeMemory(as: UInt8.self, repeating: 0xA5)
        Benchmark("CRC32C ISA-L, \(size) bytes", configuration: .init(metrics: [.wallClock, .throughput])) {
            benchmark in
            for _ in benchmark.scaledIterations { blackHole(granary_crc32c(0, data.baseAddress, size)) }
        }
        Benchmark("CRC32C SSE4.2 crc32q, \(size) bytes", configuration: .init(metrics: [.wallClock, .throughput])) {
            benchmark in
            for _ in benchmark.scaledIterations { blackHole(granary_crc32c_sse42(0, data.baseAddress, size)) }
        }
    }

    // x-amz-crc32 over a response body (a GetItem of a 1 KB item answers about 1.1 KB).
    let body = UnsafeMutableRawBufferPointer.allocate(byteCount: 1100, alignment: 16)
    body.initializeMemory(as: UInt8.self, repeating: 0x5A)
    Benchmark(
        "CRC32 (IEEE) ISA-L crc32_gzip_refl, 1100 bytes", configuration: .init(metrics: [.wallClock, .throughput])
    ) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(granary_crc32(0, body.baseAddress, body.count)) }
    }
    Benchmark("CRC32 (IEEE) zlib crc32, 1100 bytes", configuration: .init(metrics: [.wallClock, .throughput])) {
        benchmark in
        for _ in benchmark.scaledIterations { blackHole(crc32(0, body.baseAddress, uInt(body.count))) }
    }
}
