import ArgumentParser
import Foundation
import Kernels
import MainBrain

@main
struct TwinbrainEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twinbrain-eval",
        abstract: "Run the main brain directly: tokenize, logits, generate, perplexity, bench.",
        discussion: """
            Every subcommand reads the model given by --model (default: the SmolLM2-135M-Instruct \
            file that `make model` puts under .cache/models/). Input text comes from a file, read \
            as stored bytes. --json prints machine-readable output.
            """,
        subcommands: [Tokenize.self, LogitsCommand.self, Generate.self, Perplexity.self, Bench.self, FreshDocs.self, FitGate.self, FitRecall.self, FitReader.self, ReaderSite.self, PassagesCommand.self, RecallCommand.self])
}

/// Options shared by every subcommand.
struct ModelOptions: ParsableArguments {
    @Option(help: "GGUF model file (default: $TWINBRAIN_MODEL, then .cache/models/\(DefaultModel.fileName)).")
    var model: String?

    @Option(help: "BLAS threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print JSON.")
    var json = false

    @Option(help: "Matrix arithmetic: exact (f32 throughout, as the reference outputs and the daemon's default), mixed (prompts f32, decoded tokens quantised) or quantized (activations quantised as llama.cpp does).")
    var arithmetic: ProductArithmetic = .exact

    func resolvedModelPath() throws -> String {
        if let model { return model }
        guard let path = DefaultModel.path() else {
            throw ValidationError("no model found; run `make model` or pass --model FILE")
        }
        return path
    }

    func applyThreads() {
        BLASThreads.set(threads ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    func loadModel() throws -> (Model, Tokenizer) {
        applyThreads()
        let path = try resolvedModelPath()
        let gguf = try GGUFFile(path: path)
        return (try Model(gguf: gguf, arithmetic: arithmetic), try Tokenizer(gguf: gguf))
    }

    func loadTokenizer() throws -> Tokenizer {
        try Tokenizer(gguf: GGUFFile(path: resolvedModelPath()))
    }
}

/// Input text from a file, as stored bytes.
struct InputOptions: ParsableArguments {
    @Argument(help: "Text file to read (bytes as stored).")
    var file: String

    @Flag(help: "Parse control tokens such as <|im_start|> written in the text (chat text).")
    var special = false

    func read() throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ValidationError("cannot read \(file)")
        }
        return [UInt8](data)
    }
}

func printJSON(_ object: Any) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

/// A one-line progress indicator on stderr (only on a terminal).
/// A progress bar on a terminal; elsewhere (a log of `make eval`) one line per finished phase
/// with its duration.
func progressLine(_ label: String, _ done: Int, _ total: Int) {
    if done <= 1 || ProgressClock.started[label] == nil { ProgressClock.started[label] = Date() }
    guard isatty(2) != 0 else {
        if done >= total {
            let seconds = Date().timeIntervalSince(ProgressClock.started[label] ?? Date())
            FileHandle.standardError.write(Data("\(label): \(total) done in \(String(format: "%.1f", seconds)) s\n".utf8))
        }
        return
    }
    let width = 30
    let filled = total > 0 ? width * done / total : 0
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    FileHandle.standardError.write("\r\(label) [\(bar)] \(done)/\(total)".data(using: .utf8)!)
    if done >= total { FileHandle.standardError.write("\n".data(using: .utf8)!) }
}

enum ProgressClock {
    nonisolated(unsafe) static var started: [String: Date] = [:]
}

extension ProductArithmetic: ExpressibleByArgument {}
