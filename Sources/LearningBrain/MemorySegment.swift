import Foundation
import Kernels

/// One learned document version's token-memory entries on disk: a file of its own, so learning
/// writes one file and forgetting deletes one. Written to a temporary name, flushed, renamed
/// and the directory flushed, so after a crash a segment is either whole or absent; a checksum
/// over everything catches a damaged one, which is then learned again rather than trusted.
///
/// Layout (little-endian): magic "TBMEMSG1", dimension u32, count u32, document i64,
/// keyspace (32 bytes: what the keys mean: the fitted keyspace file's SHA-256, or for keys of no
/// fitted file the model's shape and the tap point),
/// keys f16 [count × dimension], values i32 [count], positions i32 [count], CRC-32 u32 of all
/// that precedes it.
public struct MemorySegment: Equatable, Sendable {
    public var document: Int64
    public var dimension: Int
    public var keys: [UInt16]
    public var values: [Int32]
    public var positions: [Int32]

    public var count: Int { values.count }

    public init(document: Int64, dimension: Int, keys: [UInt16], values: [Int32], positions: [Int32]) {
        precondition(keys.count == values.count * dimension && positions.count == values.count)
        self.document = document
        self.dimension = dimension
        self.keys = keys
        self.values = values
        self.positions = positions
    }

    public struct Damaged: Error, CustomStringConvertible {
        public let description: String
    }

    static let magic = Array("TBMEMSG1".utf8)
    static let headerSize = 8 + 4 + 4 + 8 + 32

    /// The 32 bytes naming what the keys mean: a fitted keyspace's SHA-256 (64 hex digits) as its
    /// bytes, else the name (longer names are cut; shorter ones padded).
    static func keyspaceBytes(_ keyspace: String) -> [UInt8] {
        let hex = Array(keyspace.utf8)
        if hex.count == 64, keyspace.allSatisfy(\.isHexDigit) {
            return stride(from: 0, to: 64, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
        }
        return Array((hex + Array(repeating: 0, count: 32)).prefix(32))
    }

    public func encoded(keyspace: String) -> Data {
        var data = Data(capacity: Self.headerSize + keys.count * 2 + count * 8 + 4)
        data.append(contentsOf: Self.magic)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        put(UInt32(dimension))
        put(UInt32(count))
        put(document)
        data.append(contentsOf: Self.keyspaceBytes(keyspace))
        for k in keys { put(k) }
        for v in values { put(v) }
        for p in positions { put(p) }
        put(CRC32.checksum(data))
        return data
    }

    public init(decoding data: Data, keyspace: String) throws {
        let bytes = [UInt8](data)
        guard bytes.count >= Self.headerSize + 4, Array(bytes[0..<8]) == Self.magic else {
            throw Damaged(description: "not a memory segment (bad magic or too short)")
        }
        var at = 8
        func take<T: FixedWidthInteger>(_: T.Type) -> T {
            var v: T = 0
            withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: bytes[at..<at + MemoryLayout<T>.size]) }
            at += MemoryLayout<T>.size
            return T(littleEndian: v)
        }
        let dimension = Int(take(UInt32.self)), count = Int(take(UInt32.self)), document = take(Int64.self)
        let space = Array(bytes[at..<at + 32])
        at += 32
        guard dimension > 0, bytes.count == Self.headerSize + count * (dimension * 2 + 8) + 4 else {
            throw Damaged(description: "memory segment of document \(document): its size does not match its header (truncated?)")
        }
        let stored = UInt32(bytes[bytes.count - 4]) | UInt32(bytes[bytes.count - 3]) << 8
            | UInt32(bytes[bytes.count - 2]) << 16 | UInt32(bytes[bytes.count - 1]) << 24
        guard CRC32.checksum(bytes[0..<(bytes.count - 4)]) == stored else {
            throw Damaged(description: "memory segment of document \(document): checksum mismatch (damaged)")
        }
        guard space == Self.keyspaceBytes(keyspace) else {
            throw Damaged(description: "memory segment of document \(document) was made for other keys (another model or tap)")
        }
        self.init(document: document, dimension: dimension, keys: (0..<count * dimension).map { _ in take(UInt16.self) },
                  values: (0..<count).map { _ in take(Int32.self) }, positions: (0..<count).map { _ in take(Int32.self) })
    }
}

/// The directory of segments: one `<document>.seg` per learned document version.
public struct MemorySegmentDirectory: Sendable {
    public let files: DocumentFiles
    /// What the keys mean: segments made for other keys are refused on reading.
    public let keyspace: String
    public var path: String { files.path }

    public init(path: String, keyspace: String) throws {
        files = try DocumentFiles(path: path, suffix: "seg")
        self.keyspace = keyspace
    }

    public func write(_ segment: MemorySegment) throws { try files.write(segment.encoded(keyspace: keyspace), document: segment.document) }
    public func read(_ document: Int64) throws -> MemorySegment { try MemorySegment(decoding: files.read(document), keyspace: keyspace) }
    public func remove(_ document: Int64) throws { try files.remove(document) }
    public func documents() throws -> [Int64] { try files.documents() }
}

/// A directory of one file per learned document version (`<document>.<suffix>`): learning writes
/// one file and forgetting deletes one. Written to a temporary name, flushed, renamed and the
/// directory flushed, so after a crash a file is either whole or absent.
public struct DocumentFiles: Sendable {
    public let path: String
    public let suffix: String

    public init(path: String, suffix: String) throws {
        self.path = path
        self.suffix = suffix
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ document: Int64) -> String { (path as NSString).appendingPathComponent("\(document).\(suffix)") }

    /// Writes a document's file whole or not at all (temporary file, fsync, rename, fsync of the directory).
    public func write(_ data: Data, document: Int64) throws {
        let final = file(document), temporary = final + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.error("create \(temporary)") }
        var written = 0
        let ok = data.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return fsync(fd) == 0
        }
        close(fd)
        guard ok else { unlink(temporary); throw Self.error("write \(temporary)") }
        guard rename(temporary, final) == 0 else { unlink(temporary); throw Self.error("rename \(temporary)") }
        try syncDirectory()
    }

    public func read(_ document: Int64) throws -> Data {
        guard let data = FileManager.default.contents(atPath: file(document)) else { throw Self.error("read \(file(document))") }
        return data
    }

    /// Deletes a document's file (absent is fine: forgetting twice is forgetting).
    public func remove(_ document: Int64) throws {
        if unlink(file(document)) != 0 && errno != ENOENT { throw Self.error("delete \(file(document))") }
        try syncDirectory()
    }

    /// Documents with a file; leftover temporary files (a crash mid-write) are deleted.
    public func documents() throws -> [Int64] {
        var out: [Int64] = []
        let ending = "." + suffix
        for name in try FileManager.default.contentsOfDirectory(atPath: path) {
            if name.hasSuffix(ending + ".tmp") { unlink((path as NSString).appendingPathComponent(name)); continue }
            if name.hasSuffix(ending), let id = Int64(name.dropLast(ending.count)) { out.append(id) }
        }
        return out.sorted()
    }

    func syncDirectory() throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Self.error("open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw Self.error("fsync \(path)") }
    }

    static func error(_ what: String) -> FileError { FileError(operation: what, code: errno) }

    /// A file operation that failed, with the system's reason.
    public struct FileError: Error, CustomStringConvertible {
        public let operation: String
        public let code: Int32
        public var description: String { "cannot \(operation): \(String(cString: strerror(code)))" }
        /// The filesystem is full (or the quota used up): worth retrying once space is freed.
        public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
    }
}

extension TokenMemory {
    /// The entries of one document, as a segment to write.
    public func segment(document: Int64) -> MemorySegment {
        let rows = documents.indices.filter { documents[$0] == document }
        var k: [UInt16] = []
        k.reserveCapacity(rows.count * dimension)
        for r in rows { k += keys[r * dimension..<(r + 1) * dimension] }
        return MemorySegment(document: document, dimension: dimension, keys: k, values: rows.map { values[$0] },
                             positions: rows.map { positions[$0] })
    }

    /// Appends a segment read back: the same entries, bit for bit, as when it was learned.
    public func append(_ segment: MemorySegment) {
        precondition(segment.dimension == dimension)
        append(keys: segment.keys.map(halfToFloat), values: segment.values, document: segment.document, positions: segment.positions)
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
