import Foundation

/// One chat message.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

public enum ChatTemplateError: Error, CustomStringConvertible, Equatable {
    case unsupported(String)

    public var description: String {
        switch self {
        case let .unsupported(why):
            return "cannot render this model's chat template: \(why). twinbrain renders the template families "
                + ChatTemplate.Format.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
                + "; if the model was trained on one of them, name it with chat_template = \"…\" in the configuration, "
                + "or use plain completion (/v1/generate) with this model"
        }
    }
}

/// The chat template of a model, recognised from `tokenizer.chat_template`.
///
/// GGUF files carry Jinja source. Rather than run arbitrary Jinja, twinbrain recognises three
/// families and renders them natively, as llama.cpp's built-in templates do: ChatML (SmolLM2,
/// Qwen; with the default system message the template inserts when the conversation has none),
/// Llama 3, and Gemma (no system turn: a system message goes before the first user message).
/// A file without a template gets the family whose turn tokens its vocabulary has.
public struct ChatTemplate: Sendable, Equatable {
    public enum Format: String, Sendable, Equatable, CaseIterable {
        case chatML = "chatml"
        case llama3
        case gemma

        /// The markers of a user turn: what opens it and what closes it.
        var userTurn: (open: String, close: String) {
            switch self {
            case .chatML: return ("<|im_start|>user\n", "<|im_end|>")
            case .llama3: return ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>")
            case .gemma: return ("<start_of_turn>user\n", "<end_of_turn>")
            }
        }

        /// The control tokens a vocabulary has when it was trained on this family.
        var turnTokens: [String] {
            switch self {
            case .chatML: return ["<|im_start|>", "<|im_end|>"]
            case .llama3: return ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
            case .gemma: return ["<start_of_turn>", "<end_of_turn>"]
            }
        }
    }

    public let format: Format
    public private(set) var defaultSystemMessage: String?

    /// `override` names the family instead of recognising it (the configuration's `chat_template`).
    public init(source: String?, tokenizer: Tokenizer, override: Format? = nil) throws {
        defaultSystemMessage = nil
        func hasTokens(_ f: Format) -> Bool { f.turnTokens.allSatisfy { tokenizer.id(of: $0) != nil } }
        if let override {
            guard hasTokens(override) else {
                throw ChatTemplateError.unsupported("chat_template = \"\(override.rawValue)\" but the vocabulary lacks "
                    + override.turnTokens.filter { tokenizer.id(of: $0) == nil }.joined(separator: ", "))
            }
            format = override
        } else if let source {
            guard let recognised = Format.allCases.first(where: { f in f.turnTokens.allSatisfy { source.contains($0) } }) else {
                throw ChatTemplateError.unsupported("the template is none of them")
            }
            format = recognised
        } else {
            // llama.cpp falls back to ChatML when a file has no template; a vocabulary without its
            // tokens was trained on another family's.
            guard let bare = Format.allCases.first(where: hasTokens) else {
                throw ChatTemplateError.unsupported("the model file has no chat template and no turn tokens of a known family")
            }
            format = bare
        }
        guard format == .chatML, let source else { return }
        // `{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nTEXT<|im_end|>\n' }}`
        // (the newline may be a real one or a `\n` escape inside the Jinja string).
        guard source.contains("!= 'system'") || source.contains("!= \"system\"") else { return }
        for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            if let open = source.range(of: opener),
               let close = source.range(of: "<|im_end|>", range: open.upperBound..<source.endIndex) {
                defaultSystemMessage = String(source[open.upperBound..<close.lowerBound]).replacingOccurrences(of: "\\n", with: "\n")
                return
            }
        }
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener when
    /// `addGenerationPrompt` is set. Tokenise it with `parseSpecial: true` (the tokenizer adds BOS
    /// where the model wants it).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        switch format {
        case .chatML:
            if let system = defaultSystemMessage, messages.first?.role != "system" {
                out += "<|im_start|>system\n\(system)<|im_end|>\n"
            }
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .llama3:
            for m in messages { out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(Self.trimmed(m.content))<|eot_id|>" }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .gemma:
            var system = ""
            for m in messages {
                if m.role == "system" { system += Self.trimmed(m.content); continue }
                let role = m.role == "assistant" ? "model" : m.role
                out += "<start_of_turn>\(role)\n"
                if !system.isEmpty, role != "model" { out += system + "\n\n"; system = "" }
                out += Self.trimmed(m.content) + "<end_of_turn>\n"
            }
            if addGenerationPrompt { out += "<start_of_turn>model\n" }
        }
        return out
    }

    /// Where the last user message's text is in a rendered prompt (special tokens rendered as
    /// text), or nil when it holds none: what passage recall reads of a conversation, and where
    /// the recalled passages go.
    public func lastUserMessage(inRendered text: String) -> Range<String.Index>? {
        let turn = format.userTurn
        guard let open = text.range(of: turn.open, options: .backwards),
              let close = text.range(of: turn.close, range: open.upperBound..<text.endIndex) else { return nil }
        return open.upperBound..<close.lowerBound
    }

    /// Leading and trailing whitespace removed, as llama.cpp's templates trim messages.
    static func trimmed(_ s: String) -> String { s.trimmingCharacters(in: .whitespacesAndNewlines) }
}
