import Kernels

/// One tensor's description from the GGUF header.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ne0 first: ne0 is the contiguous (fastest) dimension, so a weight [in, out] holds out rows of in.
    public let dims: [Int]
    public let type: GGMLType
    /// Offset from the start of the file.
    public let fileOffset: Int
    public let byteCount: Int
    public var elementCount: Int { dims.reduce(1, *) }
}

/// A parsed, memory-mapped GGUF file (versions 2 and 3, little-endian).
///
/// Parsing checks every length against the bytes that remain before allocating, so a
/// damaged or hostile file fails with a `GGUFError` instead of a crash or a huge allocation.
public final class GGUFFile: @unchecked Sendable {
    public let version: UInt32
    /// Metadata in file order.
    public let keys: [String]
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    let tensorIndex: [String: Int]
    public let file: MappedFile

    static let magic: UInt32 = 0x4655_4747  // "GGUF" read as little-endian u32
    static let maxArrayDepth = 4
    /// Metadata array elements in one file (vocabularies have a few hundred thousand).
    static let maxArrayElements = 1 << 23

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        var r = ByteReader(file.bytes)
        let magic = try r.u32("magic")
        guard magic == Self.magic else { throw GGUFError.badMagic(found: magic) }
        version = try r.u32("version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
        let tensorCount = try r.u64("tensor count")
        let kvCount = try r.u64("metadata count")
        // A key/value pair takes at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 8 + 4 + 8.
        guard kvCount <= UInt64(r.remaining / 13) else { throw GGUFError.absurdCount(what: "metadata count", count: kvCount) }
        guard tensorCount <= UInt64(r.remaining / 32) else { throw GGUFError.absurdCount(what: "tensor count", count: tensorCount) }

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        for _ in 0..<kvCount {
            let key = try r.string("metadata key")
            let type = try r.u32("type of '\(key)'")
            let value = try Self.readValue(&r, type: type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else { throw GGUFError.duplicateKey(key) }
            keys.append(key)
        }
        self.keys = keys
        self.metadata = metadata

        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard let v = a.int, v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
                throw GGUFError.badAlignment(UInt64(a.int ?? 0))
            }
            alignment = v
        }
        self.alignment = alignment

        struct RawTensor { let name: String; let dims: [Int]; let type: GGMLType; let offset: UInt64 }
        var raw: [RawTensor] = []
        raw.reserveCapacity(Int(tensorCount))
        var index: [String: Int] = [:]
        for _ in 0..<tensorCount {
            let name = try r.string("tensor name")
            let nDims = try r.u32("dimension count of '\(name)'")
            guard (1...4).contains(nDims) else { throw GGUFError.badDimensions(tensor: name, dims: [UInt64(nDims)]) }
            var dims64: [UInt64] = []
            for _ in 0..<nDims { dims64.append(try r.u64("dimensions of '\(name)'")) }
            let typeRaw = try r.u32("type of '\(name)'")
            guard let type = GGMLType(rawValue: typeRaw) else { throw GGUFError.unknownTensorType(typeRaw, tensor: name) }
            let offset = try r.u64("offset of '\(name)'")
            // Any real tensor has fewer elements than the file has bytes times 2 (4-bit types).
            var product: UInt64 = 1
            for d in dims64 {
                let (p, overflow) = product.multipliedReportingOverflow(by: d)
                guard !overflow, d > 0, p <= UInt64(file.bytes.count) * 2 else {
                    throw GGUFError.badDimensions(tensor: name, dims: dims64)
                }
                product = p
            }
            guard index.updateValue(raw.count, forKey: name) == nil else { throw GGUFError.duplicateTensor(name) }
            raw.append(RawTensor(name: name, dims: dims64.map { Int($0) }, type: type, offset: offset))
        }
        tensorIndex = index

        let dataStart = (r.offset + alignment - 1) / alignment * alignment
        guard dataStart <= file.bytes.count || raw.isEmpty else {
            throw GGUFError.truncated(what: "tensor data", offset: dataStart)
        }
        dataOffset = dataStart
        let dataBytes = UInt64(max(0, file.bytes.count - dataStart))
        tensors = try raw.map { t in
            // Rows must be whole blocks (ggml's rule for ne0).
            guard t.dims[0] % t.type.blockSize == 0, let bytes = t.type.byteCount(elements: t.dims.reduce(1, *)) else {
                throw GGUFError.badDimensions(tensor: t.name, dims: t.dims.map { UInt64($0) })
            }
            guard t.offset % UInt64(alignment) == 0 else {
                throw GGUFError.misalignedTensor(tensor: t.name, offset: t.offset, alignment: alignment)
            }
            guard t.offset <= dataBytes, UInt64(bytes) <= dataBytes - t.offset else {
                throw GGUFError.tensorOutOfBounds(tensor: t.name, offset: t.offset, bytes: UInt64(bytes), dataBytes: dataBytes)
            }
            return GGUFTensorInfo(name: t.name, dims: t.dims, type: t.type,
                                  fileOffset: dataStart + Int(t.offset), byteCount: bytes)
        }
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The raw bytes of a tensor (inside the mapping; valid while this file lives).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawPointer {
        file.bytes.baseAddress! + tensor.fileOffset
    }

    private static func readValue(_ r: inout ByteReader, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try r.u8(key))
        case 1: return .int8(Int8(bitPattern: try r.u8(key)))
        case 2: return .uint16(try r.u16(key))
        case 3: return .int16(Int16(bitPattern: try r.u16(key)))
        case 4: return .uint32(try r.u32(key))
        case 5: return .int32(Int32(bitPattern: try r.u32(key)))
        case 6: return .float32(Float(bitPattern: try r.u32(key)))
        case 7:
            let b = try r.u8(key)
            return .bool(b != 0)
        case 8: return .string(try r.string("value of '\(key)'"))
        case 9:
            guard depth < maxArrayDepth else { throw GGUFError.nestingTooDeep(key: key) }
            let elementType = try r.u32("array type of '\(key)'")
            let count = try r.u64("array length of '\(key)'")
            // Each element takes at least its smallest encoding, so a longer array cannot fit; and
            // all arrays together are capped far above any real vocabulary, which bounds memory.
            let smallest: UInt64 = [0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8, 8: 8, 9: 12][elementType] ?? 1
            guard count <= UInt64(r.remaining) / smallest, count <= UInt64(maxArrayElements - r.arrayElements) else {
                throw GGUFError.absurdCount(what: "length of array '\(key)'", count: count)
            }
            r.arrayElements += Int(count)
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<count { items.append(try readValue(&r, type: elementType, key: key, depth: depth + 1)) }
            return .array(items)
        case 10: return .uint64(try r.u64(key))
        case 11: return .int64(Int64(bitPattern: try r.u64(key)))
        case 12: return .float64(Double(bitPattern: try r.u64(key)))
        default: throw GGUFError.unknownValueType(type, key: key)
        }
    }
}

/// Bounds-checked little-endian reads from a byte buffer.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0
    /// Metadata array elements read so far.
    var arrayElements = 0
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func take(_ n: Int, _ what: String) throws -> UnsafeRawPointer {
        guard n >= 0, n <= remaining else { throw GGUFError.truncated(what: what, offset: offset) }
        defer { offset += n }
        return bytes.baseAddress! + offset
    }
    mutating func u8(_ what: String) throws -> UInt8 { try take(1, what).load(as: UInt8.self) }
    mutating func u16(_ what: String) throws -> UInt16 { UInt16(littleEndian: try take(2, what).loadUnaligned(as: UInt16.self)) }
    mutating func u32(_ what: String) throws -> UInt32 { UInt32(littleEndian: try take(4, what).loadUnaligned(as: UInt32.self)) }
    mutating func u64(_ what: String) throws -> UInt64 { UInt64(littleEndian: try take(8, what).loadUnaligned(as: UInt64.self)) }

    mutating func string(_ what: String) throws -> String {
        let start = offset
        let length = try u64("length of \(what)")
        guard length <= UInt64(remaining) else { throw GGUFError.absurdCount(what: "length of \(what) at byte \(start)", count: length) }
        let p = try take(Int(length), what)
        let buffer = UnsafeRawBufferPointer(start: p, count: Int(length))
        guard let s = String(validating: buffer.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw GGUFError.invalidUTF8(what: what, offset: start)
        }
        return s
    }
}
