import ArgumentParser
import Evaluation
import Foundation
import LearningBrain

struct FitGate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit-gate",
        abstract: "Fit the token memory's key projection and gate on public text (see `make gate`).",
        discussion: """
            Fits the key projection first: the --dimensions leading principal components of the \
            main brain's hidden states over all the texts; then the inverted file's centres (k-means \
            on the learned and unrelated texts' keys), with its recall on the related texts' keys. Then learns the texts of --memory into a token memory, scores the texts of --related (same kind, \
            never learned), the learned texts again and the texts of --unrelated, and picks the gate \
            (λmax, inner edge, radius) that maximises the mixture's log-likelihood on the first two \
            without making the related or unrelated texts any less likely than the main brain alone \
            makes them, keeping the unrelated texts' mean KL divergence within --kl-limit. Prints the \
            result as JSON; --keyspace-out writes the file that ships the fit (`<model sha256>.keyspace.json`). Never run \
            it on customer data: the gate must not depend on what the box learns, or forgetting \
            would not be exact.
            """)

    @OptionGroup var options: ModelOptions
    @Option(help: "Directory of texts to learn.") var memory: String
    @Option(help: "Directory of texts of the same kind, never learned.") var related: String
    @Option(help: "Directory of texts of another kind, never learned.") var unrelated: String
    @Option(help: "Write the JSON here as well as printing it.") var out: String?
    @Option(help: "Key dimensions to keep (0: the hidden states themselves are the keys).") var dimensions = FittedKeyspace.shippedDimensions
    @Option(help: "Largest mean KL divergence from the main brain allowed on the unrelated texts.") var klLimit = GateFitting.defaultKLLimit
    @Option(help: "Write the fit as the token memory reads it: a directory (the file is named <model sha256>.keyspace.json) or a file path.")
    var keyspaceOut: String?

    func run() throws {
        let (model, tokenizer) = try options.loadModel()
        var fitting = GateFitting(model: model, tokenizer: tokenizer)
        fitting.progress = { label, done, total in progressLine(label, done, total) }
        fitting.klLimit = klLimit
        let (result, projection, quantizer) = try fitting.run(memory: try Self.texts(memory), related: try Self.texts(related),
                                                   unrelated: try Self.texts(unrelated), dimensions: dimensions > 0 ? dimensions : nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(result)
        if let out { try data.write(to: URL(fileURLWithPath: out)) }
        if let keyspaceOut {
            guard let projection, let quantizer else { throw ValidationError("--keyspace-out ships a projection: give --dimensions above 0") }
            guard let sha = Hashing.fileSHA256(model.gguf.file.path) else { throw ValidationError("cannot hash \(model.gguf.file.path)") }
            var isDirectory: ObjCBool = false
            let target = FileManager.default.fileExists(atPath: keyspaceOut, isDirectory: &isDirectory) && isDirectory.boolValue
                ? (keyspaceOut as NSString).appendingPathComponent(FittedKeyspace.fileName(modelSHA256: sha)) : keyspaceOut
            try GateFitting.keyspaceRecord(modelSHA256: sha, shape: FittedKeyspace.shape(model.config), result: result,
                                           projection: projection, quantizer: quantizer).encoded()
                .write(to: URL(fileURLWithPath: target), options: .atomic)
            FileHandle.standardError.write(Data("keyspace written: \(target)\n".utf8))
        }
        print(String(decoding: data, as: UTF8.self))
    }

    /// Every regular file of a directory, by name, as UTF-8 text.
    static func texts(_ directory: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        let documents = try names.map { name -> String in
            let path = (directory as NSString).appendingPathComponent(name)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("\(path) is not UTF-8 text")
            }
            return text
        }
        guard !documents.isEmpty else { throw ValidationError("\(directory) holds no texts") }
        return documents
    }
}
