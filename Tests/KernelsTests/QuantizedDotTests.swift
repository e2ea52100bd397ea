import XCTest
import Kernels

/// The quantised dot products: the fast path (AVX2 when the CPU has it) matches the portable
/// one, both agree with the dequantised weights times the f32 activations up to the 8-bit
/// activation rounding, and the pool's products are those dot products.
final class QuantizedDotTests: XCTestCase {
    static let types: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    /// Random blocks with sane scales: random bytes, then each block's f16 scale fields set.
    func randomMatrix(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64) -> (bytes: UnsafeMutableRawPointer, matrix: QuantizedMatrix) {
        var rng = SplitMix(seed: seed)
        let bytes = type.byteCount(elements: rows * cols)!
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        for i in 0..<bytes { p.storeBytes(of: UInt8(truncatingIfNeeded: rng.next()), toByteOffset: i, as: UInt8.self) }
        func half(_ offset: Int, _ v: Float) { p.storeBytes(of: floatToHalf(v), toByteOffset: offset, as: UInt16.self) }
        let blocks = rows * cols / type.blockSize
        for b in 0..<blocks {
            let o = b * type.blockBytes
            let scale = Float(rng.next() % 1000 + 1) / 20000
            switch type {
            case .f32: p.storeBytes(of: scale * (rng.next() % 2 == 0 ? 1 : -1), toByteOffset: o, as: Float.self)
            case .f16: half(o, scale * (rng.next() % 2 == 0 ? 1 : -1))
            case .bf16: p.storeBytes(of: UInt16(truncatingIfNeeded: (scale * (rng.next() % 2 == 0 ? 1 : -1)).bitPattern >> 16), toByteOffset: o, as: UInt16.self)
            case .q4_0, .q5_0, .q8_0: half(o, scale)
            case .q4_1, .q5_1: half(o, scale); half(o + 2, -scale * 4)
            case .q4_K, .q5_K: half(o, scale / 8); half(o + 2, scale / 16)
            case .q6_K: half(o + 208, scale / 8)
            }
        }
        return (p, QuantizedMatrix(type: type, rows: rows, cols: cols, data: p)!)
    }

    func randomVector(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix(seed: seed)
        return (0..<n).map { _ in Float(Int(rng.next() % 2001) - 1000) / 500 }
    }

    func testFastAndPortableKernelsAgreeWithTheDequantisedProduct() {
        let rows = 8, cols = 512
        for type in Self.types {
            let (bytes, w) = randomMatrix(type, rows: rows, cols: cols, seed: UInt64(type.rawValue) + 1)
            defer { bytes.deallocate() }
            let x = randomVector(cols, seed: 7)
            let xq = UnsafeMutableRawPointer.allocate(byteCount: w.activationBytes, alignment: 64)
            defer { xq.deallocate() }
            x.withUnsafeBufferPointer { w.quantizeActivations($0.baseAddress!, into: xq) }
            var row = [Float](repeating: 0, count: cols)
            for r in 0..<rows {
                row.withUnsafeMutableBufferPointer { w.dequantizeRow(r, into: $0.baseAddress!) }
                var exact = 0.0, magnitude = 0.0, rounding = 0.0
                // Activations are rounded to steps of their block's largest magnitude / 127.
                let activationBlock = [GGMLType.q4_K, .q5_K, .q6_K].contains(type) ? 256 : 32
                for j in 0..<cols {
                    exact += Double(row[j]) * Double(x[j])
                    magnitude += abs(Double(row[j]) * Double(x[j]))
                    let block = x[(j / activationBlock * activationBlock)..<(j / activationBlock * activationBlock + activationBlock)]
                    rounding += abs(Double(row[j])) * Double(block.map(abs).max()!) / 127 / 2
                }
                QuantKernels.forcePortable(true)
                let portable = w.dot(row: r, quantized: xq)
                QuantKernels.forcePortable(false)
                let fast = w.dot(row: r, quantized: xq)
                XCTAssertEqual(Double(fast), Double(portable), accuracy: 1e-5 * magnitude + 1e-6, "\(type.description) row \(r): fast path")
                // 8-bit activations: each term is off by at most half a step (and f16 scales by 2⁻¹¹).
                let tolerance = [.f32, .f16, .bf16].contains(type) ? 1e-5 * magnitude + 1e-6 : rounding + 2e-3 * magnitude
                XCTAssertEqual(Double(portable), exact, accuracy: tolerance, "\(type.description) row \(r): against the dequantised row")
            }
        }
    }

    /// The fast dequantisers (the f32 engine's prefill tiles) give the portable ones' values,
    /// which are the Swift reference's, row by row and over the pool.
    func testFastDequantisersMatchThePortableOnes() {
        let rows = 6, cols = 512
        for type in Self.types {
            let (bytes, w) = randomMatrix(type, rows: rows, cols: cols, seed: UInt64(type.rawValue) + 11)
            defer { bytes.deallocate() }
            var reference = [Float](repeating: 0, count: rows * cols)
            reference.withUnsafeMutableBufferPointer { type.dequantize(bytes, into: $0.baseAddress!, count: rows * cols) }
            for portable in [true, false] {
                QuantKernels.forcePortable(portable)
                defer { QuantKernels.forcePortable(false) }
                var got = [Float](repeating: .nan, count: rows * cols)
                got.withUnsafeMutableBufferPointer { w.dequantizeRows(0..<rows, into: $0.baseAddress!) }
                XCTAssertEqual(got, reference, "\(type.description), \(portable ? "portable" : QuantKernels.path)")
                var pooled = [Float](repeating: .nan, count: rows * cols)
                pooled.withUnsafeMutableBufferPointer { w.dequantizeRows(0..<rows, into: $0.baseAddress!, pool: ComputePool(threads: 2)) }
                XCTAssertEqual(pooled, reference, "\(type.description) over the pool")
            }
        }
    }

    /// The pool's products: each output is the row's dot product, whatever the number of rows
    /// in the call (decode and prefill agree exactly), with row strides and accumulation; in
    /// the exact arithmetic too, up to its switch to sgemm tiles.
    func testPoolProductsMatchRowDotsWhateverTheBatch() {
        let pool = ComputePool(threads: 2)
        // Odd batches and row counts reach every kernel: four weight rows by two activation
        // rows, four by one, and one by one; in f32, three weight rows by two activation rows,
        // one by four, and one by one.
        for arithmetic in [ProductArithmetic.quantized, .exact] {
            let products = QuantizedProducts(pool: pool, arithmetic: arithmetic)
            for (type, cols, t) in [(GGMLType.q4_1, 256, 6), (.q8_0, 256, 6), (.q4_K, 256, 6), (.q6_K, 256, 6), (.f16, 256, 6),
                                    (.q5_0, 576, 14), (.q4_1, 576, 1), (.q4_0, 256, 5), (.q5_1, 256, 3), (.q8_0, 576, 11)] {
                let (a, wa) = randomMatrix(type, rows: 100, cols: cols, seed: 11)
                let (b, wb) = randomMatrix(type, rows: 37, cols: cols, seed: 12)
                defer { a.deallocate(); b.deallocate() }
                let ldx = cols + 8
                let x = randomVector(t * ldx, seed: 3)
                func product(rows: Range<Int>) -> [Float] {
                    var out = [Float](repeating: 1, count: rows.count * 137)
                    x.withUnsafeBufferPointer { x in
                        out.withUnsafeMutableBufferPointer { o in
                            products.multiply(x.baseAddress! + rows.lowerBound * ldx, rows: rows.count, ldx: ldx,
                                              [.init(wa, out: o.baseAddress!, ldo: 137), .init(wb, out: o.baseAddress! + 100, ldo: 137, accumulate: true)])
                        }
                    }
                    return out
                }
                let batch = product(rows: 0..<t)
                let xq = UnsafeMutableRawPointer.allocate(byteCount: wa.activationBytes, alignment: 64)
                defer { xq.deallocate() }
                for i in 0..<t {
                    XCTAssertEqual(product(rows: i..<i + 1), Array(batch[i * 137..<(i + 1) * 137]), "\(type.description) row \(i): alone and in the batch (\(arithmetic))")
                    guard arithmetic == .quantized else { continue }
                    x.withUnsafeBufferPointer { wa.quantizeActivations($0.baseAddress! + i * ldx, into: xq) }
                    XCTAssertEqual(batch[i * 137 + 42], wa.dot(row: 42, quantized: xq), "\(type.description)")
                    XCTAssertEqual(batch[i * 137 + 100 + 36], 1 + wb.dot(row: 36, quantized: xq), "\(type.description)")
                }
            }
        }
    }

    /// Mixed arithmetic: a decoded row is the quantised product, a prompt's rows the f32 one, to
    /// the bit, on either side of the f32 engine's switch from row dots to sgemm tiles.
    func testMixedArithmeticIsQuantizedForOneRowAndExactForMore() {
        let pool = ComputePool(threads: 2)
        let (bytes, w) = randomMatrix(.q4_K, rows: 64, cols: 512, seed: 5)
        defer { bytes.deallocate() }
        for t in [1, 2, 9, 40] {
            let x = randomVector(t * 512, seed: 9)
            func product(_ arithmetic: ProductArithmetic) -> [Float] {
                var out = [Float](repeating: 0, count: t * 64)
                let products = QuantizedProducts(pool: pool, arithmetic: arithmetic)
                x.withUnsafeBufferPointer { x in
                    out.withUnsafeMutableBufferPointer { products.multiply(x.baseAddress!, rows: t, [.init(w, out: $0.baseAddress!)]) }
                }
                return out
            }
            let mixed = product(.mixed), expected = product(t == 1 ? .quantized : .exact)
            XCTAssertEqual(mixed, expected, "\(t) rows")
            XCTAssertNotEqual(mixed, product(t == 1 ? .exact : .quantized), "\(t) rows: the arithmetics differ")
        }
    }
}

/// A small deterministic generator (the tests' weights must not change between runs).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
