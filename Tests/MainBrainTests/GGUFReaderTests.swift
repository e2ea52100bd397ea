import Foundation
import XCTest
import Kernels
import MainBrain

final class GGUFReaderTests: XCTestCase {
    /// A small file with every metadata type, a nested array, custom alignment and two tensors.
    func sampleBuilder() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.alignment = 64
        b.metadata = [
            ("general.architecture", .string("llama")),
            ("general.alignment", .u32(64)),
            ("t.u8", .u8(200)), ("t.i8", .i8(-100)), ("t.u16", .u16(60000)), ("t.i16", .i16(-30000)),
            ("t.u32", .u32(4_000_000_000)), ("t.i32", .i32(-2_000_000_000)),
            ("t.u64", .u64(1 << 40)), ("t.i64", .i64(-(1 << 40))),
            ("t.f32", .f32(1.5)), ("t.f64", .f64(-2.25)), ("t.bool", .bool(true)), ("t.string", .string("héllo")),
            ("t.array", .array(type: 8, [.string("a"), .string("bc")])),
            ("t.nested", .array(type: 9, [.array(type: 4, [.u32(1), .u32(2)]), .array(type: 4, [])])),
        ]
        b.add(f32: "a", dims: [3, 2], values: [1, 2, 3, 4, 5, 6])
        b.add(f32: "b", dims: [4], values: [-1, -2, -3, -4])
        return b
    }

    func parse(_ bytes: [UInt8]) throws -> GGUFFile {
        let url = temporaryFile("parse.gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(bytes).write(to: url)
        return try GGUFFile(path: url.path)
    }

    func testReadsEveryValueTypeAndTensor() throws {
        for version: UInt32 in [2, 3] {
            var b = sampleBuilder()
            b.version = version
            let f = try parse(b.build())
            XCTAssertEqual(f.version, version)
            XCTAssertEqual(f.alignment, 64)
            XCTAssertEqual(f.keys.count, 16)
            XCTAssertEqual(f.metadata["t.u8"], .uint8(200))
            XCTAssertEqual(f.metadata["t.i8"], .int8(-100))
            XCTAssertEqual(f.metadata["t.u16"], .uint16(60000))
            XCTAssertEqual(f.metadata["t.i16"], .int16(-30000))
            XCTAssertEqual(f.metadata["t.u32"], .uint32(4_000_000_000))
            XCTAssertEqual(f.metadata["t.i32"], .int32(-2_000_000_000))
            XCTAssertEqual(f.metadata["t.u64"], .uint64(1 << 40))
            XCTAssertEqual(f.metadata["t.i64"], .int64(-(1 << 40)))
            XCTAssertEqual(f.metadata["t.f32"], .float32(1.5))
            XCTAssertEqual(f.metadata["t.f64"], .float64(-2.25))
            XCTAssertEqual(f.metadata["t.bool"], .bool(true))
            XCTAssertEqual(f.metadata["t.string"], .string("héllo"))
            XCTAssertEqual(f.metadata["t.array"], .array([.string("a"), .string("bc")]))
            XCTAssertEqual(f.metadata["t.nested"], .array([.array([.uint32(1), .uint32(2)]), .array([])]))
            let a = try XCTUnwrap(f.tensor(named: "a"))
            XCTAssertEqual(a.dims, [3, 2])
            XCTAssertEqual(a.type, .f32)
            XCTAssertEqual(a.fileOffset % 64, 0)
            let tb = try XCTUnwrap(f.tensor(named: "b"))
            XCTAssertEqual(tb.fileOffset % 64, 0)
            var values = [Float](repeating: 0, count: 4)
            values.withUnsafeMutableBufferPointer { tb.type.dequantize(f.data(of: tb), into: $0.baseAddress!, count: 4) }
            XCTAssertEqual(values, [-1, -2, -3, -4])
        }
    }

    func testEveryTruncationIsAClearError() throws {
        let bytes = sampleBuilder().build()
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try parse(Array(bytes[..<length])), "length \(length)") { error in
                XCTAssertTrue(error is GGUFError, "length \(length): \(error)")
            }
        }
    }

    func expect(_ bytes: [UInt8], _ check: (GGUFError) -> Bool, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(bytes), file: file, line: line) { error in
            guard let e = error as? GGUFError else { return XCTFail("not a GGUFError: \(error)", file: file, line: line) }
            XCTAssertTrue(check(e), "unexpected error: \(e)", file: file, line: line)
            XCTAssertFalse(e.description.isEmpty)
        }
    }

    func testHostileHeaders() {
        var bytes = sampleBuilder().build()
        bytes[0] = UInt8(ascii: "X")
        expect(bytes) { if case .badMagic = $0 { true } else { false } }

        for v: UInt32 in [1, 4, 0x0300_0000] {
            var b = sampleBuilder(); b.version = v
            expect(b.build()) { $0 == .unsupportedVersion(v) }
        }

        var b = sampleBuilder()
        b.metadata.append(("t.u8", .u8(1)))
        expect(b.build()) { $0 == .duplicateKey("t.u8") }

        b = sampleBuilder()
        b.add(f32: "a", dims: [1], values: [0])
        expect(b.build()) { $0 == .duplicateTensor("a") }

        b = sampleBuilder()
        b.metadata[1] = ("general.alignment", .u32(48))
        expect(b.build()) { if case .badAlignment = $0 { true } else { false } }
    }

    /// Patches a little-endian u64 at `offset`.
    func patch(_ bytes: inout [UInt8], at offset: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    func testAbsurdCountsAndLengthsAreRejectedBeforeAllocating() {
        var bytes = sampleBuilder().build()
        patch(&bytes, at: 8, 1 << 60)  // tensor count
        expect(bytes) { if case .absurdCount(what: "tensor count", _) = $0 { true } else { false } }

        bytes = sampleBuilder().build()
        patch(&bytes, at: 16, UInt64.max)  // metadata count
        expect(bytes) { if case .absurdCount(what: "metadata count", _) = $0 { true } else { false } }

        bytes = sampleBuilder().build()
        patch(&bytes, at: 24, 1 << 62)  // length of the first key
        expect(bytes) { if case .absurdCount = $0 { true } else { false } }

        // Array length of t.array: find it after its key and type.
        var b = GGUFBuilder()
        b.metadata = [("x", .array(type: 8, [.string("a")]))]
        bytes = b.build()
        let arrayLength = 24 + 8 + 1 + 4 + 4  // header, key, value type, element type
        patch(&bytes, at: arrayLength, 1 << 50)
        expect(bytes) { if case .absurdCount = $0 { true } else { false } }

        // Arrays nested beyond any real use.
        var deep = GGUFBuilder.Value.array(type: 4, [.u32(1)])
        for _ in 0..<6 { deep = .array(type: 9, [deep]) }
        b = GGUFBuilder(); b.metadata = [("deep", deep)]
        expect(b.build()) { $0 == .nestingTooDeep(key: "deep") }
    }

    func testBadValuesAndTensorInfos() {
        var b = GGUFBuilder()
        b.metadata = [("k", .u32(1))]
        var bytes = b.build()
        bytes[24 + 8 + 1] = 99  // value type
        expect(bytes) { $0 == .unknownValueType(99, key: "k") }

        b = GGUFBuilder()
        b.add(f32: "t", dims: [4], values: [1, 2, 3, 4])
        b.tensors[0].type = 10  // Q2_K: a real ggml type twinbrain does not read
        expect(b.build()) { $0 == .unknownTensorType(10, tensor: "t") }

        b = GGUFBuilder()
        b.add(f32: "t", dims: [1, 1, 1, 1, 1], values: [1])
        expect(b.build()) { if case .badDimensions = $0 { true } else { false } }

        b = GGUFBuilder()
        b.add(f32: "t", dims: [1 << 32, 1 << 32], values: [1])
        expect(b.build()) { if case .badDimensions = $0 { true } else { false } }

        b = GGUFBuilder()
        b.add(f32: "t", dims: [24], values: [1, 2])  // claims far more data than the file has
        expect(b.build()) { if case .tensorOutOfBounds(tensor: "t", _, _, _) = $0 { true } else { false } }

        b = GGUFBuilder()
        b.add(f32: "t", dims: [4], values: [1, 2, 3, 4])
        b.tensors[0].type = 2  // Q4_0 needs whole blocks of 32
        expect(b.build()) { if case .badDimensions = $0 { true } else { false } }
    }

    func testInvalidUTF8KeyIsAnError() {
        var b = GGUFBuilder()
        b.metadata = [("kk", .u8(1))]
        var bytes = b.build()
        bytes[24 + 8] = 0xFF
        expect(bytes) { if case .invalidUTF8 = $0 { true } else { false } }
    }

    func testMissingFileAndDirectory() {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/model.gguf"))
        }
        XCTAssertThrowsError(try GGUFFile(path: "/tmp")) { e in
            XCTAssertTrue("\(e)".contains("not a regular file"))
        }
    }

    func testRealModelMetadata() throws {
        let f = try GGUFFile(path: Fixtures.modelPath())
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.tensors.count, 272)
        XCTAssertEqual(f.metadata["general.architecture"]?.string, "llama")
        XCTAssertEqual(f.tensor(named: "token_embd.weight")?.type, .q8_0)
        XCTAssertEqual(f.tensor(named: "token_embd.weight")?.dims, [576, 49152])
        XCTAssertEqual(f.tensor(named: "blk.0.ffn_down.weight")?.type, .q4_1)
        let c = try ModelConfig(gguf: f)
        XCTAssertEqual(c.layers, 30)
        XCTAssertEqual(c.dim, 576)
        XCTAssertEqual(c.heads, 9)
        XCTAssertEqual(c.kvHeads, 3)
        XCTAssertEqual(c.ffnDim, 1536)
        XCTAssertEqual(c.vocabSize, 49152)
        XCTAssertEqual(c.ropeBase, 100_000)
        XCTAssertEqual(c.contextLength, 8192)
    }

    /// Mutated copies of the real file: truncations anywhere and byte flips in the header give a
    /// clear error or a model that loads; never a crash.
    func testDamagedCopiesOfTheRealModel() throws {
        let original = try Fixtures.modelPath()
        let copy = temporaryFile("damaged.gguf")
        defer { try? FileManager.default.removeItem(at: copy) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: original))
        let gguf = try GGUFFile(path: original)
        let headerEnd = gguf.dataOffset
        // Truncations: inside the header, at the data start, inside the data, one byte short.
        for length in [0, 3, 7, 20, 100, 5000, headerEnd / 2, headerEnd - 1, headerEnd, headerEnd + 1000, bytes.count / 2, bytes.count - 1] {
            try bytes.prefix(length).write(to: copy)
            XCTAssertThrowsError(try Model(path: copy.path), "truncated to \(length)") { error in
                XCTAssertTrue(error is GGUFError || error is ModelError, "\(length): \(error)")
            }
        }
        // Byte flips in metadata and tensor infos.
        var rng = SeededGenerator(seed: 7)
        let tensorInfoStart = gguf.dataOffset - 20_000
        try bytes.write(to: copy)
        let handle = try FileHandle(forUpdating: copy)
        defer { try? handle.close() }
        var outcomes = [String: Int]()
        for trial in 0..<160 {
            let inTensorInfos = trial % 4 == 0
            let offset = inTensorInfos
                ? tensorInfoStart + Int(rng.next() % 20_000)
                : Int(rng.next() % UInt64(tensorInfoStart))
            let old = bytes[offset]
            let new = old ^ UInt8(1 << (rng.next() % 8))
            try handle.seek(toOffset: UInt64(offset)); handle.write(Data([new]))
            do {
                let f = try GGUFFile(path: copy.path)
                _ = try? Tokenizer(gguf: f)
                _ = try ModelConfig(gguf: f)
                // Weights are dequantised only when a flip might change what gets loaded.
                if inTensorInfos || trial % 8 == 1 { _ = try Model(gguf: f) }
                outcomes["loaded", default: 0] += 1
            } catch let e as GGUFError {
                outcomes["GGUFError", default: 0] += 1
                XCTAssertFalse(e.description.isEmpty)
            } catch let e as ModelError {
                outcomes["ModelError", default: 0] += 1
                XCTAssertFalse(e.description.isEmpty)
            }
            try handle.seek(toOffset: UInt64(offset)); handle.write(Data([old]))
        }
        XCTAssertGreaterThan(outcomes["GGUFError", default: 0], 0, "\(outcomes)")
    }
}
