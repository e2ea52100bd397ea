import ArgumentParser
import Foundation
import MainBrain

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Continue a text file (or chat with --chat).")

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions

    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.")
    var maxTokens = 128
    @Flag(help: "Always take the most likely token.")
    var greedy = false
    @Option(help: "Sampling temperature (0 = greedy).")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the K most likely tokens (0 = off).")
    var topK = 40
    @Option(name: .customLong("top-p"), help: "Keep the smallest set with this much probability (1 = off).")
    var topP: Float = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens below this fraction of the best one's probability (0 = off).")
    var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Penalty for recently used tokens (1 = off).")
    var repeatPenalty: Float = 1.0
    @Option(help: "Random seed: the same seed gives the same text.")
    var seed: UInt64?
    @Option(name: .customLong("stop"), help: "Stop at this string (repeatable).")
    var stop: [String] = []
    @Flag(help: "Treat the file as one user message and apply the model's chat template.")
    var chat = false
    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at end-of-generation tokens.")
    var ignoreEOS = false

    func run() throws {
        let (model, tokenizer) = try options.loadModel()
        let text = String(decoding: try input.read(), as: UTF8.self)
        let prompt: [Int32]
        if chat {
            let template = try ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
            prompt = tokenizer.encode(template.render([ChatMessage(role: "user", content: text)]), parseSpecial: true)
        } else {
            prompt = tokenizer.encode(Array(text.utf8), parseSpecial: input.special)
        }
        var request = GenerationRequest(prompt: prompt)
        request.maxTokens = maxTokens
        request.stopStrings = stop
        request.stopAtEndOfGeneration = !ignoreEOS
        var sampling = SamplingParameters()
        sampling.temperature = greedy ? 0 : temperature
        sampling.topK = topK
        sampling.topP = topP
        sampling.minP = minP
        sampling.repetitionPenalty = repeatPenalty
        sampling.seed = seed
        request.sampling = sampling
        let generator = Generator(model: model, tokenizer: tokenizer)
        let result = try generator.generate(request, onText: { piece in
            if !options.json {
                FileHandle.standardOutput.write(piece.data(using: .utf8)!)
            }
        })
        if options.json {
            printJSON(["ids": result.ids.map { Int($0) }, "text": result.text, "stop_reason": result.stopReason.rawValue])
        } else {
            print()
        }
    }
}
