import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Serves the router on a listening socket inherited from systemd (a `.socket` unit):
/// Hummingbird binds only by address, so this adopts the descriptor with NIO and runs
/// Hummingbird's HTTP/1 channel on it. The connection that woke the service is not lost.
struct ActivatedServer: Service {
    let descriptor: Int32
    let responder: RouterResponder<DaemonContext>
    let logger: Logger
    let onRunning: @Sendable () -> Void

    func run() async throws {
        let responder = self.responder, logger = self.logger
        let channelSetup = HTTP1Channel(responder: { request, responseWriter, channel in
            let context = DaemonContext(source: .init(channel: channel, logger: logger))
            let response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch {
                response = Response(status: .internalServerError)
            }
            try await responseWriter.write(response: response.head, body: response.body)
        })
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(descriptor) { channel in channelSetup.setup(channel: channel, logger: logger) }
        logger.info("serving on the socket passed by systemd (fd \(descriptor))")
        onRunning()
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await child in inbound {
                        group.addTask { await channelSetup.handle(value: child, logger: logger) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }
}
