import Foundation
import XCTest
import Kernels

/// Every fast path against its scalar reference on random inputs.
final class MathTests: XCTestCase {
    var rng = SystemRandomNumberGenerator()

    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) } }

    func testMatmulMatchesReference() {
        for (t, n, d) in [(1, 37, 64), (5, 96, 576), (17, 33, 100)] {
            let x = random(t * d), w = random(n * d)
            var fast = [Float](repeating: 0, count: t * n), ref = fast
            matmul(&fast, x, w, rows: t, outFeatures: n, inFeatures: d)
            matmulReference(&ref, x, w, rows: t, outFeatures: n, inFeatures: d)
            for i in fast.indices { XCTAssertEqual(fast[i], ref[i], accuracy: 1e-4, "t=\(t) n=\(n) d=\(d) at \(i)") }
            // accumulate adds on top
            matmul(&fast, x, w, rows: t, outFeatures: n, inFeatures: d, accumulate: true)
            for i in fast.indices { XCTAssertEqual(fast[i], 2 * ref[i], accuracy: 2e-4) }
        }
    }

    func testRMSNormMatchesReference() {
        let t = 3, d = 576 + 5
        let x = random(t * d, scale: 3), w = random(d)
        var fast = [Float](repeating: 0, count: t * d), ref = fast
        rmsNorm(&fast, x, w, rows: t, dim: d, eps: 1e-5)
        rmsNormReference(&ref, x, w, rows: t, dim: d, eps: 1e-5)
        for i in fast.indices { XCTAssertEqual(fast[i], ref[i], accuracy: 1e-6 * max(1, abs(ref[i]))) }
    }

    func testExpIsAccurate() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let exact = Float(Foundation.exp(Double(x)))
            worst = max(worst, abs(expApprox(x) - exact) / exact)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 3e-7)
        XCTAssertEqual(expApprox(-1000), 0, accuracy: 1e-37)
        XCTAssertEqual(expApprox(0), 1)
    }

    func testSiLUMulMatchesReference() {
        let n = 1536 + 3
        var g = random(n, scale: 10)
        let u = random(n), g0 = g
        siluMul(&g, u, count: n)
        for i in 0..<n {
            let expected = Double(g0[i]) / (1 + Foundation.exp(-Double(g0[i]))) * Double(u[i])
            XCTAssertEqual(Double(g[i]), expected, accuracy: 1e-5 * max(1, abs(expected)))
        }
    }

    func testRoPERotatesPairsAndKeepsNorms() {
        let table = RoPETable(dims: 8, base: 10000)
        var cos = [Float](repeating: 0, count: 4), sin = cos
        table.fill(position: 0, cos: &cos, sin: &sin)
        var x = random(16)
        let original = x
        applyRoPE(&x, heads: 2, headDim: 8, dims: 8, cos: cos, sin: sin, ordering: .normal)
        XCTAssertEqual(x, original, "position 0 is the identity")

        table.fill(position: 5, cos: &cos, sin: &sin)
        for ordering in [RoPEOrdering.normal, .neox] {
            x = original
            applyRoPE(&x, heads: 2, headDim: 8, dims: 8, cos: cos, sin: sin, ordering: ordering)
            for i in 0..<4 {
                // The pair rotated by θ_i = 5 · 10000^(-2i/8).
                let theta = 5 * Foundation.pow(10000, -2 * Double(i) / 8)
                let (a, b) = ordering == .normal ? (2 * i, 2 * i + 1) : (i, i + 4)
                let ea = Double(original[a]) * Foundation.cos(theta) - Double(original[b]) * Foundation.sin(theta)
                let eb = Double(original[a]) * Foundation.sin(theta) + Double(original[b]) * Foundation.cos(theta)
                XCTAssertEqual(Double(x[a]), ea, accuracy: 1e-5)
                XCTAssertEqual(Double(x[b]), eb, accuracy: 1e-5)
            }
        }
    }
}

final class LogSumExpTests: XCTestCase {
    func testMatchesReference() {
        for n in [1, 9, 300, 49152] {
            let x = (0..<n).map { _ in Float.random(in: -30...30) }
            let m = Double(x.max()!)
            let expected = m + Foundation.log(x.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
            XCTAssertEqual(logSumExp(x, count: n), expected, accuracy: 1e-6)
        }
    }
}
