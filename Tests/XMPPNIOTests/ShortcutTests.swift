import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing
import XMLCore

@testable import XMPPNIO

/// The in-memory link (master and bridge in one process): stanzas to the other domain are
/// handed over directly, and handing over the ten-thousandth costs what the first did.
@Suite("Component session shortcut")
struct ShortcutTests {
    static func session() -> ComponentSession {
        ComponentSession(
            configuration: .init(host: "127.0.0.1", port: 5347, domain: "irc.example.org", secret: "s", identity: ("gateway", "irc", "test")),
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
    }

    @Test("stanzas to the shortcut domain are delivered in order; others are not")
    func delivers() {
        let session = Self.session()
        let delivered = Mutex<[String]>([])
        session.shortcut(to: "rooms.example.org") { element in delivered.withLock { $0.append(element["id"] ?? "") } }
        #expect(session.isShortcut("rooms.example.org"))
        session.send([
            XMLElement("message", namespace: "jabber:component:accept", attributes: ["to": "a@rooms.example.org", "id": "1"]),
            XMLElement("message", namespace: "jabber:component:accept", attributes: ["to": "b@elsewhere.example.org", "id": "x"]),
            XMLElement("message", namespace: "jabber:component:accept", attributes: ["to": "rooms.example.org", "id": "2"]),
        ])
        #expect(delivered.withLock { $0 } == ["1", "2"])
    }

    /// Regression: the closure used to sit in the lock box inside a tuple, and every send
    /// wrapped it in two more reabstraction thunks, so each delivery ran one frame deeper
    /// than the one before (20% of the process's CPU after a few thousand lines, and in the
    /// end a stack overflow). The stack depth at delivery must not grow.
    @Test("the ten-thousandth delivery runs no deeper on the stack than the first")
    func constantDepth() {
        let session = Self.session()
        let depths = Mutex<[UInt]>([])
        session.shortcut(to: "rooms.example.org") { _ in
            let here = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1) { UInt(bitPattern: $0.baseAddress) }
            depths.withLock { $0.append(here) }
        }
        let stanza = XMLElement("message", namespace: "jabber:component:accept", attributes: ["to": "a@rooms.example.org"])
        for _ in 0..<10_000 { session.send(stanza) }
        let all = depths.withLock { $0 }
        #expect(all.count == 10_000)
        #expect(all.first == all.last, "the stack at delivery moved \(Int(bitPattern: all.first ?? 0) - Int(bitPattern: all.last ?? 0)) bytes deeper")
    }
}
