import Foundation

/// The key distributions of YCSB's core workloads, drawing record numbers in [0, n).
/// Each client owns its own generators (they hold state), seeded from the run's seed.
/// Formulas follow YCSB's generators (site.ycsb.generator), which follow Gray et al.,
/// "Quickly Generating Billion-Record Synthetic Databases", SIGMOD 1994.

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64: fast, small, and the same
/// sequence for the same seed, so a run can be replayed.
public struct FastRandom: RandomNumberGenerator, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var mix = seed
        func splitMix() -> UInt64 {
            mix &+= 0x9E37_79B9_7F4A_7C15
            var z = mix
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }

    /// A double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// FNV-1a over the eight bytes of `value`: YCSB's `Utils.fnvhash64`, used to scatter
/// record numbers (key names and the scrambled zipfian).
public func fnvHash64(_ value: Int64) -> Int64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    var rest = UInt64(bitPattern: value)
    for _ in 0..<8 {
        hash ^= rest & 0xFF
        hash = hash &* 0x0000_0100_0000_01B3
        rest >>= 8
    }
    return Int64(bitPattern: hash & 0x7FFF_FFFF_FFFF_FFFF)
}

/// Zipfian over [0, items): item 0 the most popular, P(i) proportional to 1/(i+1)^theta.
/// The item count may grow between draws (the "latest" distribution's does): zeta is then
/// extended incrementally rather than recomputed.
public struct Zipfian: Sendable {
    public static let defaultTheta = 0.99
    public let theta: Double
    private let alpha: Double
    private let zeta2: Double
    private var items: Int
    private var zetaN: Double
    private var eta: Double

    public init(items: Int, theta: Double = Zipfian.defaultTheta, zetaN knownZetaN: Double? = nil) {
        precondition(items > 0, "a zipfian needs at least one item")
        self.theta = theta
        alpha = 1 / (1 - theta)
        zeta2 = Self.zeta(from: 0, to: 2, theta: theta, initial: 0)
        self.items = items
        zetaN = knownZetaN ?? Self.zeta(from: 0, to: items, theta: theta, initial: 0)
        eta = 0
        eta = computeEta()
    }

    static func zeta(from start: Int, to end: Int, theta: Double, initial: Double) -> Double {
        var sum = initial
        for i in start..<end { sum += 1 / pow(Double(i + 1), theta) }
        return sum
    }

    private func computeEta() -> Double {
        (1 - pow(2 / Double(items), 1 - theta)) / (1 - zeta2 / zetaN)
    }

    /// Draws from [0, items), first growing the item count to `items` if it is larger.
    public mutating func next(items newItems: Int? = nil, using random: inout FastRandom) -> Int {
        if let newItems, newItems > items {
            zetaN = Self.zeta(from: items, to: newItems, theta: theta, initial: zetaN)
            items = newItems
            eta = computeEta()
        }
        let u = random.unit()
        let uz = u * zetaN
        if uz < 1 { return 0 }
        if uz < 1 + pow(0.5, theta) { return min(1, items - 1) }
        return min(items - 1, Int(Double(items) * pow(eta * u - eta + 1, alpha)))
    }
}

/// YCSB's `ScrambledZipfianGenerator`: zipfian popularity, with the popular items spread
/// over the key space by a hash instead of clustered at its start. It draws from a fixed
/// space of 10 billion items (whose zeta YCSB precomputed) and folds the hash into range.
public struct ScrambledZipfian: Sendable {
    static let itemSpace = 10_000_000_000
    static let itemSpaceZeta = 26.46902820178302  // zeta(10^10, 0.99), YCSB's constant
    private var zipfian = Zipfian(items: ScrambledZipfian.itemSpace, zetaN: ScrambledZipfian.itemSpaceZeta)

    public init() {}

    public mutating func next(items: Int, using random: inout FastRandom) -> Int {
        Int(fnvHash64(Int64(zipfian.next(using: &random))) % Int64(items))
    }
}

/// How a workload picks the records it touches.
public enum KeyDistribution: String, Sendable, CaseIterable {
    case uniform, zipfian, latest, hotspot
}

/// One client's key chooser: a distribution with its state.
public struct KeyChooser: Sendable {
    public let distribution: KeyDistribution
    private var scrambled = ScrambledZipfian()
    private var latest: Zipfian?
    /// Hotspot: this fraction of the records takes `hotOperationFraction` of the draws.
    public static let hotSetFraction = 0.2
    public static let hotOperationFraction = 0.8

    public init(_ distribution: KeyDistribution) { self.distribution = distribution }

    /// A record number in [0, items): `items` is how many records exist now (for "latest",
    /// the newest ones are the most popular).
    public mutating func next(items: Int, using random: inout FastRandom) -> Int {
        precondition(items > 0, "no records to choose from")
        switch distribution {
        case .uniform:
            return Int(random.next() % UInt64(items))
        case .zipfian:
            return scrambled.next(items: items, using: &random)
        case .latest:
            if latest == nil { latest = Zipfian(items: items) }
            return items - 1 - latest!.next(items: items, using: &random)
        case .hotspot:
            let hot = max(1, Int(Double(items) * Self.hotSetFraction))
            if random.unit() < Self.hotOperationFraction || hot == items {
                return Int(random.next() % UInt64(hot))
            }
            return hot + Int(random.next() % UInt64(items - hot))
        }
    }
}
