import Foundation
import XCTest
import Kernels
import MainBrain

/// Paths and shared objects for the tests.
enum Fixtures {
    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    static func bytes(_ relative: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(relative))) }

    /// Little-endian f32 values of a fixture (a reference's full logit row).
    static func floats(_ relative: String) throws -> [Float] {
        let bytes = try bytes(relative)
        return bytes.withUnsafeBytes { raw in
            (0..<bytes.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    static func json(_ relative: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(relative))) as! [String: Any]
    }

    /// The default model's path. Tests that need it skip without it on a developer machine
    /// (`make test` fetches it) and fail under CI, where it must be present.
    static func modelPath() throws -> String {
        if let path = DefaultModel.path() { return path }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail("the default model is missing under CI: `make test` should have fetched it (make model)")
        }
        throw XCTSkip("needs the default model: run `make model`")
    }

    /// Gemma 3 270M (`make gemma`): `$TWINBRAIN_GEMMA_MODEL`, else the checkout's `.cache/models/`.
    /// Skips without it on a developer machine, fails under CI.
    static func gemmaPath() throws -> String {
        var candidates = [ProcessInfo.processInfo.environment["TWINBRAIN_GEMMA_MODEL"] ?? ""]
        if let model = DefaultModel.path() {
            candidates.append(URL(fileURLWithPath: model).deletingLastPathComponent().appendingPathComponent("gemma-3-270m-q4_k_m.gguf").path)
        }
        if let path = candidates.first(where: { !$0.isEmpty && FileManager.default.fileExists(atPath: $0) }) { return path }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail("Gemma 3 270M is missing under CI: `make test` should have fetched it (make gemma)")
        }
        throw XCTSkip("needs Gemma 3 270M: run `make gemma`")
    }

    nonisolated(unsafe) private static var gemmaLoaded: (Model, Tokenizer)?

    /// Gemma 3 270M, loaded once for the whole test run (exact arithmetic).
    static func gemma() throws -> (Model, Tokenizer) {
        let path = try gemmaPath()
        return try lock.withLock {
            if let pair = gemmaLoaded { return pair }
            let gguf = try GGUFFile(path: path)
            let pair = (try Model(gguf: gguf, contextTokens: 4096), try Tokenizer(gguf: gguf))
            gemmaLoaded = pair
            return pair
        }
    }

    nonisolated(unsafe) private static var loaded: [ProductArithmetic: (Model, Tokenizer)] = [:]
    private static let lock = NSLock()

    /// The default model, loaded once per arithmetic for the whole test run.
    static func model(_ arithmetic: ProductArithmetic = .exact) throws -> (Model, Tokenizer) {
        let path = try modelPath()
        return try lock.withLock {
            if let pair = loaded[arithmetic] { return pair }
            let gguf = try GGUFFile(path: path)
            let pair = (try Model(gguf: gguf, arithmetic: arithmetic), try Tokenizer(gguf: gguf))
            loaded[arithmetic] = pair
            return pair
        }
    }
}

/// `count` tokens after `prompt`, greedy, not stopping at the end of a turn (as the references were made).
func greedyContinuation(_ generator: Generator, prompt: [Int32], count: Int) throws -> [Int32] {
    var request = GenerationRequest(prompt: prompt)
    request.maxTokens = count
    request.sampling = .greedy
    request.stopAtEndOfGeneration = false
    return try generator.generate(request).ids
}

extension Array where Element == Int32 {
    init(json: Any?) { self = (json as! [NSNumber]).map { $0.int32Value } }
}

/// Writes GGUF files byte by byte, for tests that need precise or damaged files.
struct GGUFBuilder {
    enum Value {
        case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), u64(UInt64), i64(Int64)
        case f32(Float), f64(Double), bool(Bool), string(String)
        case array(type: UInt32, [Value])

        var typeCode: UInt32 {
            switch self {
            case .u8: 0
            case .i8: 1
            case .u16: 2
            case .i16: 3
            case .u32: 4
            case .i32: 5
            case .f32: 6
            case .bool: 7
            case .string: 8
            case .array: 9
            case .u64: 10
            case .i64: 11
            case .f64: 12
            }
        }
    }

    var version: UInt32 = 3
    var metadata: [(String, Value)] = []
    var tensors: [(name: String, dims: [UInt64], type: UInt32, data: [UInt8])] = []
    var alignment = 32

    mutating func add(f32 name: String, dims: [Int], values: [Float]) {
        var data: [UInt8] = []
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
        tensors.append((name, dims.map(UInt64.init), 0, data))
    }

    func build() -> [UInt8] {
        var out: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func putString(_ s: String) { put(UInt64(s.utf8.count)); out += Array(s.utf8) }
        func putValue(_ v: Value) {
            switch v {
            case let .u8(x): put(x)
            case let .i8(x): put(x)
            case let .u16(x): put(x)
            case let .i16(x): put(x)
            case let .u32(x): put(x)
            case let .i32(x): put(x)
            case let .u64(x): put(x)
            case let .i64(x): put(x)
            case let .f32(x): put(x.bitPattern)
            case let .f64(x): put(x.bitPattern)
            case let .bool(x): put(UInt8(x ? 1 : 0))
            case let .string(s): putString(s)
            case let .array(type, items):
                put(type); put(UInt64(items.count))
                for item in items { putValue(item) }
            }
        }
        out += Array("GGUF".utf8)
        put(version)
        put(UInt64(tensors.count))
        put(UInt64(metadata.count))
        for (key, value) in metadata { putString(key); put(value.typeCode); putValue(value) }
        var offset: UInt64 = 0
        var offsets: [UInt64] = []
        for t in tensors {
            offsets.append(offset)
            offset += UInt64(t.data.count)
            offset = (offset + UInt64(alignment) - 1) / UInt64(alignment) * UInt64(alignment)
        }
        for (t, off) in zip(tensors, offsets) {
            putString(t.name); put(UInt32(t.dims.count))
            for d in t.dims { put(d) }
            put(t.type); put(off)
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (t, off) in zip(tensors, offsets) {
            while out.count < dataStart + Int(off) { out.append(0) }
            out += t.data
        }
        return out
    }

    func write(to url: URL) throws { try Data(build()).write(to: url) }
}

func temporaryFile(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("twinbrain-tests-\(getpid())-\(name)")
}
