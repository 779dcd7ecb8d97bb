import Foundation
import Lab
import Logging
import NIOPosix
import Synchronization
import Testing
import XMLCore
import XMPPNIO

/// A shadow node written by hand: its own XEP-0114 component connection to the lab's Prosody
/// (`scripted.xmpp.test`), sending link stanzas as literal XML and recording what the master
/// sends back. It answers the master's keepalive pings until told not to.
final class ScriptedShadow: Sendable {
    static let namespace = "jabber:component:accept"
    let domain = LabServers.scriptedDomain
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let session: ComponentSession
    private let received = Mutex<[XMLElement]>([])
    private let connected = Mutex(false)
    private let answering = Mutex(true)
    private let pings = Mutex(0)
    private let runner = Mutex<Task<Void, Never>?>(nil)

    init(port: Int) throws {
        session = ComponentSession(
            configuration: ComponentConfiguration(
                host: "127.0.0.1", port: port, domain: LabServers.scriptedDomain, secret: LabServers.scriptedSecret,
                identity: ("gateway", "irc", "scripted shadow")),
            group: group, logger: Logger(label: "scripted-shadow", factory: { _ in SwiftLogNoOpLogHandler() }))
        let task = Task { [self] in
            await session.run(onConnected: { self.connected.withLock { $0 = true } }) { stanza in self.receive(stanza) }
        }
        runner.withLock { $0 = task }
        let deadline = Date().addingTimeInterval(10)
        while !connected.withLock({ $0 }) {
            guard Date() < deadline else { throw LabError("the scripted shadow could not connect to Prosody's component port \(port)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    private func receive(_ stanza: XMLElement) {
        let isPing = stanza.name == "iq" && stanza["type"] == "get" && stanza.child("ping", namespace: "urn:xmpp:ping") != nil
        guard isPing else {
            received.withLock { $0.append(stanza) }
            return
        }
        pings.withLock { $0 += 1 }
        if answering.withLock({ $0 }) {
            session.send(try! XMLElement(parsing: "<iq type='result' id='\(stanza["id"]!)' from='\(stanza["to"]!)' to='\(stanza["from"]!)'/>", namespace: Self.namespace))
        }
    }

    /// Whether the master's pings are answered (false: the node is silent, as in a split).
    func answerPings(_ yes: Bool) { answering.withLock { $0 = yes } }
    var pingsReceived: Int { pings.withLock { $0 } }

    func send(_ xml: String) throws { session.send(try XMLElement(parsing: xml, namespace: Self.namespace)) }

    var mark: Int { received.withLock { $0.count } }
    func stanzas(since mark: Int) -> [XMLElement] { received.withLock { Array($0[min(mark, $0.count)...]) } }

    @discardableResult
    func waitFor(_ what: String, since mark: Int, timeout: Double = 15, _ match: (XMLElement) -> Bool) throws -> XMLElement {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = stanzas(since: mark).first(where: match) { return found }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let seen = stanzas(since: mark).map { $0.serialized(parentNamespace: Self.namespace) }.joined(separator: "\n")
        throw LabError("the scripted shadow timed out waiting for \(what); it received:\n\(seen)")
    }

    func close() {
        runner.withLock { $0?.cancel() }
        Thread.sleep(forTimeInterval: 0.2)
        try? group.syncShutdownGracefully()
    }
}

extension XMLElement {
    static let linkNamespace = "urn:shadowbridge:dmuc-link:0"

    /// `<seq n/>` of a numbered stanza.
    var linkSeq: UInt64? { child("seq", namespace: Self.linkNamespace)?["n"].flatMap { UInt64($0) } }
    var bodyText: String? { child("body", namespace: ScriptedShadow.namespace)?.text }
}
