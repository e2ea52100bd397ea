import Foundation
import XCTest
import LearningBrain
import MainBrain
import Store

/// The token memory's fit is a data file found by the model file's SHA-256: the default model's
/// ships beside it; a damaged one, or one made for another file or shape, is refused with its path.
final class KeyspaceFileTests: XCTestCase {
    var directory: String!

    override func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("twinbrain-keyspace-\(getpid())-\(name.hashValue)").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    func model() throws -> Model {
        guard let path = DefaultModel.path() else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("the default model is missing under CI") }
            throw XCTSkip("needs the default model: run `make model`")
        }
        return try Model(gguf: GGUFFile(path: path))
    }

    func testTheShippedFitIsFoundByTheModelsDigestAndRoundTrips() throws {
        let model = try model()
        var hashed = 0
        let fitted = try XCTUnwrap(try FittedKeyspace.forModel(model, modelSHA256: { hashed += 1; return DefaultModel.sha256 }))
        XCTAssertEqual(hashed, 1)
        let file = URL(fileURLWithPath: model.gguf.file.path).deletingLastPathComponent()
            .appendingPathComponent(FittedKeyspace.fileName(modelSHA256: DefaultModel.sha256)).path
        XCTAssertEqual(fitted.digest, try SHA256.hex(ofFileAt: file))
        XCTAssertEqual(KNNLanguageModel(model: model, fitted: fitted).keyspace, fitted.digest, "segments name the fit")

        // Written again by the fitting code and read back: the same numbers.
        let record = KeyspaceRecord(modelSHA256: DefaultModel.sha256, shape: FittedKeyspace.shape(model.config), gate: fitted.gate,
                                    projection: fitted.projection, quantizer: fitted.quantizer, figures: ["test"])
        let copy = directory + "/copy.keyspace.json"
        try record.encoded().write(to: URL(fileURLWithPath: copy))
        let again = try FittedKeyspace.load(path: copy, for: model.config, modelSHA256: DefaultModel.sha256)
        XCTAssertEqual(again.gate, fitted.gate)
        XCTAssertEqual(again.projection.matrix, fitted.projection.matrix)
        XCTAssertEqual(again.quantizer?.centres, fitted.quantizer?.centres)

        // A model whose digest has no fit anywhere gets none (the token memory stays off).
        XCTAssertNil(try FittedKeyspace.forModel(model, directories: [directory], modelSHA256: { String(repeating: "0", count: 64) }))
    }

    func testAnUnusableFitIsRefusedWithItsPath() throws {
        let model = try model()
        let fitted = try XCTUnwrap(try FittedKeyspace.forModel(model, modelSHA256: { DefaultModel.sha256 }))
        let good = KeyspaceRecord(modelSHA256: DefaultModel.sha256, shape: FittedKeyspace.shape(model.config), gate: fitted.gate,
                                  projection: fitted.projection, quantizer: fitted.quantizer, figures: [])
        let path = directory + "/" + FittedKeyspace.fileName(modelSHA256: DefaultModel.sha256)
        func refused(_ data: Data, _ expected: String, line: UInt = #line) throws {
            try data.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try FittedKeyspace.load(path: path, for: model.config, modelSHA256: DefaultModel.sha256), line: line) { e in
                XCTAssertTrue("\(e)".contains(path) && "\(e)".contains(expected) && "\(e)".contains("make gate"), "\(e)", line: line)
            }
        }
        let bytes = try good.encoded()
        try refused(bytes.prefix(bytes.count / 2), "is not a keyspace record")
        var other = good
        other.shape = "qwen2 layers=28 dim=1536 ffn=8960 vocab=151936"
        try refused(try other.encoded(), "was fitted for 'qwen2")
        other = good
        other.modelSHA256 = String(repeating: "1", count: 64)
        try refused(try other.encoded(), "was fitted for the model 1111")
        other = good
        other.format = "twinbrain.keyspace/9"
        try refused(try other.encoded(), "twinbrain.keyspace/9")
        other = good
        other.projection.f16 = String(other.projection.f16.dropLast(400))
        try refused(try other.encoded(), "does not decode")
        other = good
        other.gate.inner = other.gate.radius * 2
        try refused(try other.encoded(), "unusable gate")
    }
}
