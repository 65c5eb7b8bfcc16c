import CShims
import Testing

@Suite struct ChecksumTests {
    @Test func knownVectors() {
        let check = Array("123456789".utf8)
        #expect(granary_crc32c(0, check, check.count) == 0xE306_9283)
        #expect(granary_crc32c_sse42(0, check, check.count) == 0xE306_9283)
        let zeros = [UInt8](repeating: 0, count: 32)
        #expect(granary_crc32c(0, zeros, zeros.count) == 0x8A91_36AA)  // RFC 3720 B.4
        #expect(granary_crc32c(0, [], 0) == 0)
    }

    /// x-amz-crc32's checksum agrees with zlib's, which boto3 checks it against.
    @Test func ieeeMatchesZlib() {
        let check = Array("123456789".utf8)
        #expect(granary_crc32(0, check, check.count) == 0xCBF4_3926)
        #expect(granary_crc32(0, [], 0) == 0)
        var generator = SystemRandomNumberGenerator()
        for length in [1, 15, 16, 1_000, 100_003] {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let zlibs = data.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
            #expect(granary_crc32(0, data, length) == zlibs)
            let split = length / 3
            let chained = data.withUnsafeBytes { bytes in
                granary_crc32(granary_crc32(0, bytes.baseAddress, split), bytes.baseAddress! + split, length - split)
            }
            #expect(chained == zlibs)
        }
    }

    @Test func implementationsAgreeAndChain() {
        var generator = SystemRandomNumberGenerator()
        for length in [1, 7, 8, 63, 4096, 100_003] {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let whole = granary_crc32c(0, data, length)
            #expect(granary_crc32c_sse42(0, data, length) == whole)
            let split = length / 3
            let chained = data.withUnsafeBytes { bytes in
                granary_crc32c(granary_crc32c(0, bytes.baseAddress, split), bytes.baseAddress! + split, length - split)
            }
            #expect(chained == whole)
        }
    }
}
