import ArgumentParser
import Evaluation
import Foundation
import LearningBrain

struct FitReader: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit-reader",
        abstract: "Fit the learning brain's reader on synthetic questions over public text (see `make reader`).",
        discussion: """
            --data is what scripts/make_reader_data.py writes (docs/ and items.jsonl, split by \
            document). Its documents are learned into a passage store; each question recalls passages \
            and is put to the main brain in the daemon's prompt; the residual rows of each --layers \
            layer are kept. A start and an end head are trained per layer; the layer whose best span \
            holds the answer most often on the held-out documents wins, and the thresholds (state a \
            span; say the documents do not say) are fitted there. Prints the figures as JSON; \
            --swift-out writes the source file that ships the reader. Never run it on customer data.
            """)

    @OptionGroup var options: ModelOptions
    @Option(help: "Directory written by scripts/make_reader_data.py.") var data: String
    @Option(help: "Residual layers to try, comma-separated.") var layers = "12,16,20"
    @Option(help: "Recalled contexts to prefill (each serves every question that recalls it).") var maxContexts = 500
    @Option(help: "Training epochs per head.") var epochs = 30
    @Option(help: "Rank of the question's turn of the heads' weights.") var rank = 16
    @Option(help: "Write the figures here as well as printing them.") var out: String?
    @Option(help: "Write the reader's weights (twinbrain.reader/1 JSON) here, for freshdocs --reader.") var weightsOut: String?
    @Option(help: "Write the Swift source that ships the reader (Sources/LearningBrain/FittedReaders.swift).") var swiftOut: String?

    func run() throws {
        let (model, tokenizer) = try options.loadModel()
        let path = try options.resolvedModelPath()
        guard let digest = Hashing.fileSHA256(path) else { throw ValidationError("cannot hash \(path)") }
        let chosen = layers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !chosen.isEmpty, chosen.allSatisfy({ $0 >= 0 && $0 < model.config.layers }) else {
            throw ValidationError("--layers: layers from 0 to \(model.config.layers - 1)")
        }
        var fitting = try ReaderFitting(model: model, tokenizer: tokenizer, layers: chosen)
        fitting.maxContexts = maxContexts
        fitting.epochs = epochs
        fitting.rank = rank
        fitting.progress = { label, done, total in progressLine(label, done, total) }
        try fitting.extract(from: data)
        let (weights, figures) = fitting.fit(modelSHA256: digest)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try encoder.encode(figures)
        if let out { try json.write(to: URL(fileURLWithPath: out)) }
        if let weightsOut { try weights.json().write(to: URL(fileURLWithPath: weightsOut)) }
        if let swiftOut { try ReaderFitting.swiftSource(weights, figures: figures).write(toFile: swiftOut, atomically: true, encoding: .utf8) }
        print(String(decoding: json, as: UTF8.self))
    }
}
