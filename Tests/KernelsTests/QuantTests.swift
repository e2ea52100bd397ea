import Foundation
import XCTest
import Kernels

/// Dequantisation against ggml's documented block layouts: hand-built blocks with values
/// worked out from the layout, and random blocks checked against gguf-py's dequantiser.
final class QuantTests: XCTestCase {
    func testBlockSizesMatchGGML() {
        // ggml-common.h static_asserts.
        let expected: [GGMLType: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .bf16: (1, 2),
            .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22), .q5_1: (32, 24), .q8_0: (32, 34),
            .q4_K: (256, 144), .q5_K: (256, 176), .q6_K: (256, 210),
        ]
        for type in GGMLType.allCases {
            XCTAssertEqual(type.blockSize, expected[type]!.0, "\(type)")
            XCTAssertEqual(type.blockBytes, expected[type]!.1, "\(type)")
        }
        XCTAssertNil(GGMLType.q4_K.byteCount(elements: 100))
        XCTAssertEqual(GGMLType.q4_1.byteCount(elements: 64), 40)
        XCTAssertNil(GGMLType.q8_0.byteCount(elements: Int.max - 31))
    }

    func testAgainstGGUFPyDequantiser() throws {
        let url = Bundle.module.url(forResource: "quant-vectors", withExtension: "json", subdirectory: "Fixtures")!
        let cases = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [[String: Any]]
        XCTAssertEqual(Set(cases.map { $0["type"] as! String }), Set(GGMLType.allCases.map(\.description)))
        for c in cases {
            let type = GGMLType.allCases.first { $0.description == c["type"] as! String }!
            let bytes = [UInt8](Data(base64Encoded: c["bytes"] as! String)!)
            let expected = (c["values"] as! [NSNumber]).map(\.floatValue)
            var got = [Float](repeating: .nan, count: expected.count)
            XCTAssertEqual(type.byteCount(elements: expected.count), bytes.count)
            bytes.withUnsafeBytes { src in
                got.withUnsafeMutableBufferPointer { type.dequantize(src.baseAddress!, into: $0.baseAddress!, count: expected.count) }
            }
            for i in expected.indices {
                XCTAssertEqual(got[i], expected[i], accuracy: abs(expected[i]) * 1e-6, "\(type) element \(i)")
            }
        }
    }

    private func dequantize(_ type: GGMLType, _ bytes: [UInt8]) -> [Float] {
        var out = [Float](repeating: .nan, count: bytes.count / type.blockBytes * type.blockSize)
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { type.dequantize(src.baseAddress!, into: $0.baseAddress!, count: $0.count) }
        }
        return out
    }

    private func half(_ f: Float) -> [UInt8] { let h = floatToHalf(f); return [UInt8(h & 0xFF), UInt8(h >> 8)] }

    func testQ4_0Layout() {
        // d = 0.5; qs[j] = j | (15 - j) << 4 → element j = (j - 8)·d, element j+16 = (7 - j)·d.
        let block = half(0.5) + (0..<16).map { UInt8($0) | UInt8(15 - $0) << 4 }
        let v = dequantize(.q4_0, block)
        for j in 0..<16 {
            XCTAssertEqual(v[j], Float(j - 8) * 0.5)
            XCTAssertEqual(v[j + 16], Float(7 - j) * 0.5)
        }
    }

    func testQ4_1Layout() {
        let block = half(0.25) + half(-1) + (0..<16).map { UInt8($0) | UInt8(15 - $0) << 4 }
        let v = dequantize(.q4_1, block)
        for j in 0..<16 {
            XCTAssertEqual(v[j], Float(j) * 0.25 - 1)
            XCTAssertEqual(v[j + 16], Float(15 - j) * 0.25 - 1)
        }
    }

    func testQ5_0Layout() {
        // qh bit j → fifth bit of element j; bit j+16 → of element j+16. Set bits for even j.
        var qh: UInt32 = 0
        for j in stride(from: 0, to: 32, by: 2) { qh |= 1 << UInt32(j) }
        let block = half(1) + withUnsafeBytes(of: qh.littleEndian, Array.init) + (0..<16).map { _ in UInt8(0x31) }
        let v = dequantize(.q5_0, block)
        for j in 0..<32 {
            let low = j < 16 ? 1 : 3
            XCTAssertEqual(v[j], Float(low + (j % 2 == 0 ? 16 : 0) - 16), "element \(j)")
        }
    }

    func testQ5_1Layout() {
        let qh: UInt32 = 0xFFFF_0000  // only the upper half gets the fifth bit
        let block = half(2) + half(0.5) + withUnsafeBytes(of: qh.littleEndian, Array.init) + (0..<16).map { _ in UInt8(0x21) }
        let v = dequantize(.q5_1, block)
        for j in 0..<16 { XCTAssertEqual(v[j], 1 * 2 + 0.5) }
        for j in 16..<32 { XCTAssertEqual(v[j], Float(2 + 16) * 2 + 0.5) }
    }

    func testQ8_0Layout() {
        let block = half(0.125) + (0..<32).map { UInt8(bitPattern: Int8($0 - 16)) }
        let v = dequantize(.q8_0, block)
        for j in 0..<32 { XCTAssertEqual(v[j], Float(j - 16) * 0.125) }
    }

    func testQ4_KLayout() {
        // Sub-block s has scale s+1 and min s (6 bits each, packed as get_scale_min_k4 reads them).
        var scales = [UInt8](repeating: 0, count: 12)
        for s in 0..<8 {
            let sc = UInt8(s + 1), m = UInt8(s)
            if s < 4 {
                scales[s] |= sc; scales[s + 4] |= m
            } else {
                scales[s + 4] = (sc & 0x0F) | (m & 0x0F) << 4
                scales[s - 4] |= (sc >> 4) << 6
                scales[s] |= (m >> 4) << 6
            }
        }
        // qs: each 32-byte group holds two sub-blocks, low nibble = element l of the first, high = of the second.
        let qs: [UInt8] = (0..<128).map { (i: Int) -> UInt8 in
            let low = UInt8(i % 16), high = UInt8((i + 1) % 16)
            return low | high << 4
        }
        let block = half(1) + half(0.5) + scales + qs
        let v = dequantize(.q4_K, block)
        for s in 0..<8 {
            for l in 0..<32 {
                let group = s / 2, byte = qs[group * 32 + l]
                let q = s % 2 == 0 ? byte & 0x0F : byte >> 4
                let expected: Float = Float(s + 1) * Float(q) - Float(s) * 0.5
                XCTAssertEqual(v[s * 32 + l], expected, "sub-block \(s) element \(l)")
            }
        }
    }

    func testQ6_KLayout() {
        // All quants 33 (q - 32 = 1): ql nibbles 1, qh 2-bit fields 2 → 1 | 2 << 4 = 33.
        let ql = [UInt8](repeating: 0x11, count: 128)
        let qh = [UInt8](repeating: 0b1010_1010, count: 64)
        let scales = (0..<16).map { UInt8(bitPattern: Int8($0 - 8)) }
        let block = ql + qh + scales + half(0.5)
        let v = dequantize(.q6_K, block)
        // Element e: half h = e / 128, within it l = e % 32, quarter k = (e % 128) / 32 → scale index 8h + l/16 + 2k.
        for e in 0..<256 {
            let h = e / 128, k = (e % 128) / 32, l = e % 32
            XCTAssertEqual(v[e], 0.5 * Float(8 * h + l / 16 + 2 * k - 8), "element \(e)")
        }
    }

    func testHalfConversions() {
        XCTAssertEqual(halfToFloat(0x3C00), 1)
        XCTAssertEqual(halfToFloat(0xC000), -2)
        XCTAssertEqual(halfToFloat(0x0001), Float(bitPattern: 0x3380_0000))  // smallest subnormal, 2^-24
        XCTAssertEqual(halfToFloat(0x7C00), .infinity)
        XCTAssertTrue(halfToFloat(0x7E00).isNaN)
        for bits in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let got = halfToFloat(bits)
            XCTAssertTrue(got == expected || (got.isNaN && expected.isNaN), "f16 \(bits)")
        }
        XCTAssertEqual(bfloat16ToFloat(0x3F80), 1)
        XCTAssertEqual(bfloat16ToFloat(0xC0A0), -5)
    }
}
