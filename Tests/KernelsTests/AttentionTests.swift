import XCTest
import Kernels

/// `QuantizedProducts.attention`: against a double-precision reference over the keys each row
/// may see, with f32 and f16 caches, on the fast and portable kernels, and the same bits for a
/// row whatever rows come with it.
final class AttentionTests: XCTestCase {
    let heads = 6, kvHeads = 2, headDim = 40, positions = 23
    var kvStride: Int { kvHeads * headDim }

    func values(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix(seed: seed)
        return (0..<n).map { _ in Float(Int(rng.next() % 2001) - 1000) / 700 }
    }

    func halves(_ x: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { x in out.withUnsafeMutableBytes { storeHalves(x.baseAddress!, into: $0.baseAddress!, count: x.count) } }
        return out
    }

    /// Row `i`'s output in double precision: keys [0, seen) then [from, to), f16 rounding as the kernel rounds.
    func reference(q: [Float], keys: [Float], vals: [Float], row i: Int, seen: Int, extra: Range<Int>, half: Bool) -> [Double] {
        func r(_ x: Float) -> Float { half ? halfToFloatExact(floatToHalf(x)) : x }
        let group = heads / kvHeads, scale = 1 / Double(headDim).squareRoot()
        let visible = Array(0..<seen) + Array(extra)
        var out = [Double](repeating: 0, count: heads * headDim)
        for h in 0..<heads {
            let g = h / group
            let scores = visible.map { p in
                scale * (0..<headDim).reduce(0.0) { $0 + Double(r(q[i * heads * headDim + h * headDim + $1])) * Double(r(keys[p * kvStride + g * headDim + $1])) }
            }
            let m = scores.max()!, e = scores.map { exp($0 - m) }, sum = e.reduce(0, +)
            for (k, p) in visible.enumerated() {
                let a = Double(r(Float(e[k] / sum)))
                for j in 0..<headDim { out[h * headDim + j] += a * Double(r(vals[p * kvStride + g * headDim + j])) }
            }
        }
        return out
    }

    func run(_ products: QuantizedProducts, q: [Float], rows: Range<Int>, keys: [Float], vals: [Float], half: Bool,
             visible: Visibility) -> [Float] {
        var out = [Float](repeating: .nan, count: rows.count * heads * headDim)
        let k16 = halves(keys), v16 = halves(vals)
        let sub = Visibility(seen: Array(visible.seen[rows]), from: visible.from.map { Array($0[rows]) }, to: visible.to.map { Array($0[rows]) })
        q.withUnsafeBufferPointer { q in
            keys.withUnsafeBytes { k in vals.withUnsafeBytes { v in k16.withUnsafeBytes { k16 in v16.withUnsafeBytes { v16 in
                out.withUnsafeMutableBufferPointer { o in
                    products.attention(q.baseAddress! + rows.lowerBound * heads * headDim, qStride: heads * headDim, rows: rows.count,
                                       heads: heads, kvHeads: kvHeads, headDim: headDim,
                                       keys: half ? k16.baseAddress! : k.baseAddress!, values: half ? v16.baseAddress! : v.baseAddress!,
                                       halfPrecision: half, kvStride: kvStride, visible: sub, scale: 1 / Float(headDim).squareRoot(),
                                       out: o.baseAddress!, outStride: heads * headDim)
                }
            } } } }
        }
        return out
    }

    func testAttentionMatchesTheReferenceAndIsRowInvariant() {
        let products = QuantizedProducts(pool: ComputePool(threads: 2))
        let rows = 5
        let q = values(rows * heads * headDim, seed: 1), keys = values(positions * kvStride, seed: 2), vals = values(positions * kvStride, seed: 3)
        // Causal rows after a prefix of 10, and branch rows: a prefix of 10 then their own [from, to).
        let causal = Visibility(seen: (0..<rows).map { Int32(11 + $0) })
        let branches = Visibility(seen: Array(repeating: 10, count: rows), from: [10, 10, 15, 15, 15], to: [11, 12, 16, 17, 18])
        defer { QuantKernels.forcePortable(false) }
        for half in [false, true] {
            for (name, visible) in [("causal", causal), ("branches", branches)] {
                var outputs: [[Float]] = []
                for portable in [false, true] {
                    QuantKernels.forcePortable(portable)
                    let all = run(products, q: q, rows: 0..<rows, keys: keys, vals: vals, half: half, visible: visible)
                    for i in 0..<rows {
                        let alone = run(products, q: q, rows: i..<i + 1, keys: keys, vals: vals, half: half, visible: visible)
                        XCTAssertEqual(alone, Array(all[i * heads * headDim..<(i + 1) * heads * headDim]), "\(name) row \(i) alone, f16 \(half)")
                        let from = Int(visible.from?[i] ?? 0), to = Int(visible.to?[i] ?? 0)
                        let expected = reference(q: q, keys: keys, vals: vals, row: i, seen: Int(visible.seen[i]), extra: from..<to, half: half)
                        for j in 0..<expected.count {
                            XCTAssertEqual(Double(all[i * heads * headDim + j]), expected[j], accuracy: 2e-5 * (1 + abs(expected[j])),
                                           "\(name) row \(i) element \(j), f16 \(half), portable \(portable)")
                        }
                    }
                    outputs.append(all)
                }
                // With f16 weights the two paths' f32 weights may round one f16 step (2⁻¹¹) apart.
                let tolerance: Float = half ? 1e-3 : 1e-5
                for (fast, portable) in zip(outputs[0], outputs[1]) {
                    XCTAssertEqual(fast, portable, accuracy: tolerance * (1 + abs(portable)), "\(name), f16 \(half): fast and portable")
                }
            }
        }
    }
}
