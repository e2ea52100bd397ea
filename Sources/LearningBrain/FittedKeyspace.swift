import Foundation
import MainBrain
import Store

/// What `make gate` fitted for one model file, on public text only: the projection of hidden
/// states to memory keys, the inverted file's centres in that keyspace, and the gate. All depend
/// on the model's hidden states, so another model needs its own fit; without one the token memory
/// stays off (the main brain alone).
///
/// A fit is a data file, `<model sha256>.keyspace.json` (`KeyspaceRecord`), found beside the model
/// (the package installs the default model's in /usr/share/twinbrain/models) or in a directory the
/// caller names. Its `digest` (SHA-256 of the file) names the keyspace in memory segments, so keys
/// of another fit are never mixed with these.
public struct FittedKeyspace: Sendable {
    public let gate: MemoryGate
    public let projection: KeyProjection
    public let quantizer: CoarseQuantizer?
    /// SHA-256 (hex) of the record this was read from; nil for one built in memory.
    public let digest: String?

    public init(gate: MemoryGate, projection: KeyProjection, quantizer: CoarseQuantizer? = nil, digest: String? = nil) {
        self.gate = gate
        self.projection = projection
        self.quantizer = quantizer
        self.digest = digest
    }

    public static func shape(_ c: ModelConfig) -> String {
        "\(c.architecture.rawValue) layers=\(c.layers) dim=\(c.dim) ffn=\(c.ffnDim) vocab=\(c.vocabSize)"
    }

    /// Where the package installs models and their fits.
    public static let installedDirectory = "/usr/share/twinbrain/models"
    /// Key dimensions a fit keeps (the projection's principal components).
    public static let shippedDimensions = 192

    public static func fileName(modelSHA256: String) -> String { "\(modelSHA256).keyspace.json" }

    /// The fit for `model`: `<sha256>.keyspace.json` beside the model file, in `directories`, or in
    /// the installed directory. The model file is hashed only when some fit exists there; nil when
    /// none is for this file. A fit that exists but cannot be used (damaged, or made for another
    /// shape) throws, so the caller can say so instead of silently running without memory.
    public static func forModel(_ model: Model, directories: [String] = [], modelSHA256: (() -> String?)? = nil) throws -> FittedKeyspace? {
        let path = model.gguf.file.path
        let places = [URL(fileURLWithPath: path).deletingLastPathComponent().path] + directories + [installedDirectory]
        let fm = FileManager.default
        guard places.contains(where: { dir in
            (try? fm.contentsOfDirectory(atPath: dir))?.contains { $0.hasSuffix(".keyspace.json") } ?? false
        }) else { return nil }
        guard let sha = modelSHA256?() ?? (try? SHA256.hex(ofFileAt: path)) else { return nil }
        for dir in places {
            let candidate = (dir as NSString).appendingPathComponent(fileName(modelSHA256: sha))
            guard fm.fileExists(atPath: candidate) else { continue }
            return try load(path: candidate, for: model.config, modelSHA256: sha)
        }
        return nil
    }

    /// Reads and checks a fit: its format, that it was made for this model file and shape, and
    /// that its numbers decode to the sizes it states.
    public static func load(path: String, for config: ModelConfig, modelSHA256: String? = nil) throws -> FittedKeyspace {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw KeyspaceError(path: path, problem: "cannot be read (\(error.localizedDescription))")
        }
        let record: KeyspaceRecord
        do { record = try JSONDecoder().decode(KeyspaceRecord.self, from: data) } catch {
            throw KeyspaceError(path: path, problem: "is not a keyspace record (\(error))")
        }
        guard record.format == KeyspaceRecord.currentFormat else {
            throw KeyspaceError(path: path, problem: "has the format '\(record.format)'; this version reads '\(KeyspaceRecord.currentFormat)'")
        }
        if let modelSHA256, record.modelSHA256 != modelSHA256 {
            throw KeyspaceError(path: path, problem: "was fitted for the model \(record.modelSHA256), not \(modelSHA256)")
        }
        guard record.shape == shape(config), record.projection.input == config.dim else {
            throw KeyspaceError(path: path, problem: "was fitted for '\(record.shape)', not '\(shape(config))'")
        }
        let g = record.gate
        guard g.lambdaMax >= 0, g.lambdaMax < 1, g.inner >= 0, g.inner <= g.radius, g.radius.isFinite else {
            throw KeyspaceError(path: path, problem: "holds an unusable gate \(g)")
        }
        guard let projection = KeyProjection(inputDimension: record.projection.input, outputDimension: record.projection.output,
                                             encoded: record.projection.f16) else {
            throw KeyspaceError(path: path, problem: "holds a projection that does not decode to \(record.projection.input) × \(record.projection.output)")
        }
        var quantizer: CoarseQuantizer?
        if let lists = record.invertedFile {
            quantizer = CoarseQuantizer(dimension: record.projection.output, lists: lists.lists, encoded: lists.centresF16)
            guard quantizer != nil else { throw KeyspaceError(path: path, problem: "holds centres that do not decode to \(lists.lists) lists") }
        }
        return FittedKeyspace(gate: MemoryGate(lambdaMax: g.lambdaMax, inner: g.inner, radius: g.radius), projection: projection,
                              quantizer: quantizer, digest: SHA256.hex(data))
    }
}

public struct KeyspaceError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String
    public var description: String {
        "the token memory's keyspace \(path) \(problem); fit it again for this model (make gate) or remove the file"
    }
}

/// The file form of a fit (`twinbrain.keyspace/1`, JSON): what it was fitted for, the gate, the
/// projection and the inverted file's centres as f16 in base64, and the fit's figures.
public struct KeyspaceRecord: Codable, Equatable, Sendable {
    public static let currentFormat = "twinbrain.keyspace/1"

    public struct Projection: Codable, Equatable, Sendable {
        public var input: Int
        public var output: Int
        /// The [output, input] matrix as little-endian f16, base64.
        public var f16: String
    }

    public struct InvertedFile: Codable, Equatable, Sendable {
        public var lists: Int
        /// The [lists, output] centres as little-endian f16, base64.
        public var centresF16: String
        enum CodingKeys: String, CodingKey { case lists, centresF16 = "centres_f16" }
    }

    public var format: String
    public var modelSHA256: String
    public var shape: String
    public var gate: MemoryGate
    public var projection: Projection
    public var invertedFile: InvertedFile?
    /// What the fit measured, in words (docs/results/gate-fit.json has the numbers).
    public var figures: [String]

    enum CodingKeys: String, CodingKey {
        case format, shape, gate, projection, figures
        case modelSHA256 = "model_sha256", invertedFile = "inverted_file"
    }

    public init(modelSHA256: String, shape: String, gate: MemoryGate, projection: KeyProjection, quantizer: CoarseQuantizer?, figures: [String]) {
        format = Self.currentFormat
        self.modelSHA256 = modelSHA256
        self.shape = shape
        self.gate = gate
        func compact(_ s: String) -> String { s.replacingOccurrences(of: "\n", with: "") }
        self.projection = Projection(input: projection.inputDimension, output: projection.outputDimension, f16: compact(projection.encoded))
        invertedFile = quantizer.map { InvertedFile(lists: $0.count, centresF16: compact($0.encoded)) }
        self.figures = figures
    }

    /// The file's bytes (sorted keys, so a fit writes the same file twice).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self) + Data("\n".utf8)
    }
}

extension KNNLanguageModel {
    /// The learning brain as shipped: projected keys and the fitted gate; segments name the fit's digest.
    public convenience init(model: Model, fitted: FittedKeyspace) {
        self.init(model: model, projection: fitted.projection)
        gate = fitted.gate
        memory.useInvertedFile(fitted.quantizer)
        keyspaceDigest = fitted.digest
    }
}
