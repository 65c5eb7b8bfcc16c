import CShims

/// Request bodies sent compressed (Content-Encoding: gzip or deflate), and the CRC32 of
/// response bodies that boto3 checks (x-amz-crc32): zlib inflates, ISA-L checksums.
enum BodyCoding {
    enum Failure: Error {
        case unsupported(String)
        case malformed
        case tooLarge
    }

    /// The body as the client meant it: decompressed when `encoding` says so, never larger
    /// than `limit` bytes.
    static func decode(_ body: [UInt8], encoding: String?, limit: Int) throws(Failure) -> [UInt8] {
        guard let encoding = encoding?.lowercased(), encoding != "identity", !encoding.isEmpty else { return body }
        guard encoding == "gzip" || encoding == "deflate" || encoding == "x-gzip" else { throw .unsupported(encoding) }
        // 15 + 32: a gzip or zlib header, detected; "deflate" bodies in the wild are zlib.
        return try inflate(body, windowBits: 15 + 32, limit: limit)
    }

    private static func inflate(_ input: [UInt8], windowBits: Int32, limit: Int) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard granary_inflate_init(&stream, windowBits) == Z_OK else { throw .malformed }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: min(limit, max(4096, input.count * 4)))
        var produced = 0
        let status: Int32 = input.withUnsafeBufferPointer { source in
            stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
            stream.avail_in = uInt(source.count)
            while true {
                if produced == output.count {
                    guard output.count < limit else { return Z_BUF_ERROR }
                    output += [UInt8](repeating: 0, count: min(limit - output.count, output.count))
                }
                let result: Int32 = output.withUnsafeMutableBufferPointer { target in
                    stream.next_out = target.baseAddress! + produced
                    stream.avail_out = uInt(target.count - produced)
                    let result = CShims.inflate(&stream, Z_NO_FLUSH)
                    produced = target.count - Int(stream.avail_out)
                    return result
                }
                if result == Z_STREAM_END { return Z_STREAM_END }
                if result != Z_OK { return result }
                if stream.avail_in == 0 && stream.avail_out > 0 { return Z_DATA_ERROR }  // truncated
            }
        }
        if status == Z_BUF_ERROR && produced >= limit { throw .tooLarge }
        guard status == Z_STREAM_END else { throw .malformed }
        output.removeSubrange(produced...)
        return output
    }

    /// CRC32 (IEEE, zlib's), as x-amz-crc32 carries it in decimal.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { granary_crc32(0, $0.baseAddress, $0.count) }
    }
}
