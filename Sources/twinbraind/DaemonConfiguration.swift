import Foundation
import Kernels
import LearningBrain
import MainBrain
import TOMLKit

/// Everything twinbraind can be told, from `/etc/twinbrain/twinbraind.conf` (TOML) with every
/// key overridable by a flag. Unknown keys are reported, not silently ignored.
struct DaemonConfiguration: Equatable {
    var socket = "/run/twinbrain/twinbraind.sock"
    var stateDirectory = "/var/lib/twinbrain"
    var model = "/usr/share/twinbrain/models/\(DefaultModel.fileName)"
    /// Compute threads (the engine's workers and BLAS); 0 means every core.
    var threads = 0
    /// Matrix arithmetic: exact (f32 throughout, f32 KV cache: the reference outputs'
    /// arithmetic), mixed (prompts in f32 through sgemm, decoded tokens with quantised
    /// activations, f16 KV cache: about twice the decoding speed) or quantized (llama.cpp's
    /// throughout). Exact stays the default: with the 135M model, quantised decoding drops the
    /// name from the integration test's answer ("descaled by Bogdan Ilic") where exact keeps it
    /// (docs/performance.md).
    var arithmetic = ProductArithmetic.exact
    /// Public text the token memory's keyspace is fitted on for a model that came without a fit.
    var calibrationDirectory = "/usr/share/twinbrain/calibration"
    /// Tests only (`--debug-available-memory-mib`): the memory a model may use, instead of the machine's.
    var debugAvailableMemoryMiB: Int?
    /// Largest context per request, in tokens (capped at the model's).
    var contextTokens = 4096
    /// Requests generated at once (continuous batching: one read of the weights per step serves
    /// them all), each with a KV cache of `context` tokens; 1…16.
    var slots = 8
    /// Requests that may wait for a slot; beyond this callers get 429.
    var queueDepth = 32
    /// Memory for the keys and values of finished prompts, reused when a prompt begins the same
    /// way (a conversation's earlier turns); 0 turns reuse off.
    var prefixCacheMiB = 512
    var maxBodyBytes = 1 << 20
    var defaultMaxTokens = 256
    var maxTokensLimit = 4096
    /// Socket mode when twinbraind binds the socket itself (systemd's socket unit sets its own).
    var socketMode = "0660"
    /// Members may read and ask.
    var userGroup = "twinbrain"
    /// Members (and root) may change knowledge and configuration.
    var adminGroup = "twinbrain-admin"
    var logLevel = "info"
    /// Filesystems mounted below these are drives to read (the udev rule mounts USB drives under
    /// the first); nothing else is read unless an admin ingests a path.
    var mediaRoots = ["/run/twinbrain/media", "/media", "/run/media"]
    /// Passages of learned documents recalled into a question's context at most (0 turns recall off).
    var knowledgePassages = Recall.defaultLimit
    /// Whether the token memory learns and joins generation (it needs a gate fitted for the model).
    var tokenMemory = true
    /// Whether the learning brain's reader states answers it finds in the recalled passages (it
    /// needs a reader fitted for the model's file).
    var reader = true
    /// Whether the reader adapts to the learned documents, from questions the box writes about
    /// them (`<state_dir>/reader`); off, it reads as shipped.
    var readerAdapts = true
    /// The chat template family to render prompts in; nil recognises it from the model file.
    var chatTemplate: ChatTemplate.Format?

    static let systemPath = "/etc/twinbrain/twinbraind.conf"

    /// TOML key → how to apply it. Names are the documented ones (docs/api.md, operations).
    static let keys: [String: (inout DaemonConfiguration, TOMLValueConvertible) throws -> Void] = [
        "socket": { $0.socket = try string($1, "socket") },
        "state_dir": { $0.stateDirectory = try string($1, "state_dir") },
        "model": { $0.model = try string($1, "model") },
        "threads": { $0.threads = try int($1, "threads", 0...256) },
        "context": { $0.contextTokens = try int($1, "context", 16...1_048_576) },
        "arithmetic": {
            let name = try string($1, "arithmetic")
            guard let a = ProductArithmetic(rawValue: name) else {
                throw Problem(description: "'arithmetic' is '\(name)', expected \"mixed\", \"quantized\" or \"exact\"")
            }
            $0.arithmetic = a
        },
        "queue_depth": { $0.queueDepth = try int($1, "queue_depth", 0...10_000) },
        "slots": { $0.slots = try int($1, "slots", 1...Model.decodeBatchLimit) },
        "prefix_cache_mib": { $0.prefixCacheMiB = try int($1, "prefix_cache_mib", 0...1_048_576) },
        "max_body_bytes": { $0.maxBodyBytes = try int($1, "max_body_bytes", 1024...(1 << 30)) },
        "default_max_tokens": { $0.defaultMaxTokens = try int($1, "default_max_tokens", 1...1_048_576) },
        "max_tokens_limit": { $0.maxTokensLimit = try int($1, "max_tokens_limit", 1...1_048_576) },
        "socket_mode": { $0.socketMode = try string($1, "socket_mode") },
        "user_group": { $0.userGroup = try string($1, "user_group") },
        "admin_group": { $0.adminGroup = try string($1, "admin_group") },
        "log_level": { $0.logLevel = try string($1, "log_level") },
        "media_roots": { $0.mediaRoots = try strings($1, "media_roots") },
        "calibration_dir": { $0.calibrationDirectory = try string($1, "calibration_dir") },
        "knowledge_passages": { $0.knowledgePassages = try int($1, "knowledge_passages", 0...16) },
        "token_memory": {
            guard let b = $1.bool else { throw Problem(description: "'token_memory' must be true or false") }
            $0.tokenMemory = b
        },
        "reader": {
            guard let b = $1.bool else { throw Problem(description: "'reader' must be true or false") }
            $0.reader = b
        },
        "chat_template": {
            let name = try string($1, "chat_template")
            guard name == "auto" || ChatTemplate.Format(rawValue: name) != nil else {
                throw Problem(description: "'chat_template' is '\(name)', expected \"auto\" or one of "
                    + ChatTemplate.Format.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
            }
            $0.chatTemplate = ChatTemplate.Format(rawValue: name)
        },
        "reader_adapts": {
            guard let b = $1.bool else { throw Problem(description: "'reader_adapts' must be true or false") }
            $0.readerAdapts = b
        },
    ]

    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    /// Reads a TOML file; returns the keys it did not know (reported by the caller).
    mutating func load(file path: String) throws -> [String] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw Problem(description: "cannot read configuration \(path): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        let data = handle.readDataToEndOfFile()
        guard let text = String(data: data, encoding: .utf8) else {
            throw Problem(description: "configuration \(path) is not UTF-8 text")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw Problem(description: "\(path):\(e.source.begin.line):\(e.source.begin.column): \(e.description)")
        }
        var unknown: [String] = []
        for (key, value) in table {
            guard let apply = Self.keys[key] else { unknown.append(key); continue }
            do { try apply(&self, value) } catch let p as Problem {
                throw Problem(description: "\(path): \(p.description)")
            }
        }
        return unknown.sorted()
    }

    /// Checks values that depend on each other.
    func validate() throws {
        guard UInt16(socketMode, radix: 8) != nil, socketMode.count <= 4 else {
            throw Problem(description: "socket_mode '\(socketMode)' is not an octal mode such as 0660")
        }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw Problem(description: "log_level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        guard (1...Model.decodeBatchLimit).contains(slots) else {
            throw Problem(description: "slots is \(slots), expected 1…\(Model.decodeBatchLimit)")
        }
        guard prefixCacheMiB >= 0 else { throw Problem(description: "prefix_cache_mib is \(prefixCacheMiB), expected 0 or more") }
        guard defaultMaxTokens <= maxTokensLimit else {
            throw Problem(description: "default_max_tokens (\(defaultMaxTokens)) is above max_tokens_limit (\(maxTokensLimit))")
        }
    }

    private static func string(_ v: TOMLValueConvertible, _ key: String) throws -> String {
        guard let s = v.string else { throw Problem(description: "'\(key)' must be a string") }
        return s
    }

    private static func strings(_ v: TOMLValueConvertible, _ key: String) throws -> [String] {
        guard let array = v.array else { throw Problem(description: "'\(key)' must be an array of strings") }
        return try array.map { item in
            guard let s = item.string, s.hasPrefix("/") else { throw Problem(description: "'\(key)' must hold absolute paths") }
            return s
        }
    }

    private static func int(_ v: TOMLValueConvertible, _ key: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let i = v.int else { throw Problem(description: "'\(key)' must be an integer") }
        guard range.contains(i) else { throw Problem(description: "'\(key)' is \(i), expected \(range.lowerBound)…\(range.upperBound)") }
        return i
    }

    /// The file as TOML, for `--print-config`.
    var toml: String {
        """
        socket = "\(socket)"
        state_dir = "\(stateDirectory)"
        model = "\(model)"
        threads = \(threads)
        context = \(contextTokens)
        arithmetic = "\(arithmetic.rawValue)"
        slots = \(slots)
        queue_depth = \(queueDepth)
        prefix_cache_mib = \(prefixCacheMiB)
        max_body_bytes = \(maxBodyBytes)
        default_max_tokens = \(defaultMaxTokens)
        max_tokens_limit = \(maxTokensLimit)
        socket_mode = "\(socketMode)"
        user_group = "\(userGroup)"
        admin_group = "\(adminGroup)"
        log_level = "\(logLevel)"
        media_roots = [\(mediaRoots.map { "\"\($0)\"" }.joined(separator: ", "))]
        knowledge_passages = \(knowledgePassages)
        calibration_dir = "\(calibrationDirectory)"
        token_memory = \(tokenMemory)
        reader = \(reader)
        reader_adapts = \(readerAdapts)
        chat_template = "\(chatTemplate?.rawValue ?? "auto")"
        """
    }
}
