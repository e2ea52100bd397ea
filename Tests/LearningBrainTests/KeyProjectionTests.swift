import Kernels
import XCTest
import LearningBrain

final class KeyProjectionTests: XCTestCase {
    func testSymmetricEigenOfAKnownMatrix() throws {
        // [[2, 1], [1, 2]]: eigenvalues 3 and 1, eigenvectors (1, 1)/√2 and (1, −1)/√2.
        let (values, vectors) = try symmetricEigen([2, 1, 1, 2], n: 2)
        XCTAssertEqual(values[0], 3, accuracy: 1e-5)
        XCTAssertEqual(values[1], 1, accuracy: 1e-5)
        XCTAssertEqual(abs(vectors[0]), 1 / Float(2).squareRoot(), accuracy: 1e-5)
        XCTAssertEqual(vectors[0] * vectors[1], 0.5, accuracy: 1e-5, "first vector along (1, 1)")
        XCTAssertEqual(vectors[2] * vectors[3], -0.5, accuracy: 1e-5, "second along (1, −1)")
    }

    /// Points on a 2-D plane inside 8-D space, plus an offset: two components hold all the
    /// variance, and distances between projected points are the original ones.
    func testPCAFindsThePlaneAndKeepsDistances() throws {
        let d = 8, n = 200
        let u: [Float] = [1, 2, 0, -1, 0, 0, 1, 0], v: [Float] = [0, 1, 1, 1, 0, -2, 0, 0]
        var state: UInt64 = 3
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        var rows: [Float] = []
        for _ in 0..<n {
            let a = next(), b = next()
            rows += (0..<d).map { 5 + a * u[$0] + b * v[$0] }
        }
        let (projection, explained) = try KeyProjection.fit(rows: rows, dimension: d, keep: 2)
        XCTAssertEqual(explained, 1, accuracy: 1e-4)
        let keys = projection.project(rows)
        XCTAssertEqual(keys.count, n * 2)
        for (i, j) in [(0, 1), (5, 99), (42, 199)] {
            let original = (0..<d).reduce(Float(0)) { $0 + pow(rows[i * d + $1] - rows[j * d + $1], 2) }
            let projected = (0..<2).reduce(Float(0)) { $0 + pow(keys[i * 2 + $1] - keys[j * 2 + $1], 2) }
            XCTAssertEqual(projected, original, accuracy: 1e-3 * max(1, original))
        }
    }

    func testShippedFormDecodesToTheF16Values() throws {
        let matrix: [Float] = [0.1, -0.25, 0.333, 1, 0.5, -0.75]
        let p = KeyProjection(inputDimension: 3, outputDimension: 2, matrix: matrix)
        let shipped = try XCTUnwrap(KeyProjection(inputDimension: 3, outputDimension: 2, encoded: p.encoded))
        XCTAssertEqual(shipped.matrix, matrix.map { halfToFloat(floatToHalf($0)) })
        XCTAssertEqual(shipped, p.asShipped)
        XCTAssertEqual(shipped.asShipped, shipped, "shipping is idempotent")
        XCTAssertNil(KeyProjection(inputDimension: 3, outputDimension: 3, encoded: p.encoded), "wrong shape refused")
        XCTAssertNotEqual(shipped.name, KeyProjection(inputDimension: 3, outputDimension: 2, matrix: matrix.reversed()).name)
    }

    /// The closed form of KL(p_main ‖ mixture) against a direct sum over a small vocabulary.
    func testDivergenceMatchesADirectSum() {
        let main: [Double] = [0.5, 0.2, 0.2, 0.1], memory: [Double] = [0, 0.7, 0, 0.3]
        let e = KNNLanguageModel.Evidence(relativeDistance: 0, mainProbability: 0.2, memoryProbability: 0.7,
                                          votedMain: [0.2, 0.1], votedMemory: [0.7, 0.3])
        for lambda in [0.0, 0.1, 0.5, 0.9] {
            let direct = zip(main, memory).reduce(0.0) { $0 + $1.0 * log($1.0 / ((1 - lambda) * $1.0 + lambda * $1.1)) }
            XCTAssertEqual(e.divergence(lambda: lambda), direct, accuracy: 1e-12)
        }
    }
}
