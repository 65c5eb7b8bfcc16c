import CShims
import Foundation

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

    /// The response encodings a client accepts, in DynamoDB's preference: gzip, then
    /// deflate; nil for neither (or when it refuses both with q=0).
    static func acceptedEncoding(_ header: String?) -> String? {
        guard let header else { return nil }
        var accepted: Set<String> = []
        for item in header.lowercased().split(separator: ",") {
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let name = parts.first else { continue }
            let quality = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            if quality > 0 { accepted.insert(name) }
        }
        if accepted.contains("gzip") || accepted.contains("x-gzip") || accepted.contains("*") { return "gzip" }
        if accepted.contains("deflate") { return "deflate" }
        return nil
    }

    /// `body` compressed for the wire (gzip or zlib-wrapped "deflate") at zlib's fastest
    /// level: a response is compressed on the request's core, so speed beats ratio. Nil
    /// when zlib fails, and the body goes out as it is.
    static func encode(_ body: [UInt8], as encoding: String) -> [UInt8]? {
        var stream = z_stream()
        guard granary_deflate_init(&stream, 1, encoding == "gzip" ? 15 + 16 : 15) == Z_OK else { return nil }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(body.count))) + 32)
        let status: Int32 = body.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
                stream.avail_in = uInt(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                return CShims.deflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { return nil }
        output.removeSubrange(Int(stream.total_out)...)
        return output
    }

    /// CRC32 (IEEE, zlib's), as x-amz-crc32 carries it in decimal.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { granary_crc32(0, $0.baseAddress, $0.count) }
    }
}
