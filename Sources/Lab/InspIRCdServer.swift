import Foundation

/// InspIRCd 3 (Debian's package) with Atheme 7 services linked to it, in the foreground on
/// free loopback ports: the IRCv3 server of the lab. It offers every capability the bridge
/// asks for that a Debian IRC server has (echo-message, away-notify, account-tag, batch,
/// labeled-response...), SASL PLAIN through Atheme, and TLS with a self-signed certificate on a
/// second port.
///
/// Three ports: plain clients, TLS clients, and the server link Atheme connects to. The
/// certificate names `irc.test` and 127.0.0.1, so a client that trusts it as its CA file can
/// verify the connection, and one that does not fails verification.
public final class InspIRCdServer: Sendable {
    public let directory: URL
    public let port: Int
    public let tlsPort: Int
    public let serverName = "irc.test"
    /// The self-signed certificate the TLS port presents (PEM), and its SHA-256 fingerprint
    /// as lowercase hex pairs separated by colons.
    public let certificateFile: URL
    public let certificateSHA256: String
    let process: ManagedProcess
    let services: ManagedProcess

    public var pid: Int32 { process.pid }

    static let linkPassword = "lab-link-password"
    static let servicesName = "services.test"

    public static func start(in directory: URL) throws -> InspIRCdServer {
        let inspircd = try Lab.executable("inspircd", package: "inspircd")
        let atheme = try Lab.executable("atheme-services", package: "atheme-services")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("atheme"), withIntermediateDirectories: true)
        let certificate = directory.appendingPathComponent("cert.pem")
        let fingerprint = try makeCertificate(
            certificate, key: directory.appendingPathComponent("key.pem"), name: "irc.test", extra: ["-addext", "subjectAltName=DNS:irc.test,IP:127.0.0.1"])
        try Lab.write("Shadowbridge lab (InspIRCd)\n", to: directory.appendingPathComponent("motd"))

        return try Lab.withPortRetries {
            let (port, tlsPort, linkPort) = (try Lab.freePort(), try Lab.freePort(), try Lab.freePort())
            let config = directory.appendingPathComponent("inspircd.conf")
            try Lab.write(configuration(directory: directory, ports: (port, tlsPort, linkPort)), to: config)
            // It refuses to run as root without --runasroot; prlimit keeps core files away.
            var arguments = ["--core=0", inspircd, "--nofork", "--nopid", "--config=\(config.path)"]
            if getuid() == 0 { arguments.append("--runasroot") }
            let process = try ManagedProcess(
                name: "inspircd", executable: try Lab.executable("prlimit", package: "util-linux"), arguments: arguments,
                directory: directory, logFile: directory.appendingPathComponent("inspircd.out"))
            guard Lab.waitUntilListening([port, tlsPort, linkPort], process: process, timeout: 10) else {
                process.stop()
                return nil
            }
            let servicesConfig = directory.appendingPathComponent("atheme.conf")
            try Lab.write(athemeConfiguration(linkPort: linkPort), to: servicesConfig)
            let servicesLog = directory.appendingPathComponent("atheme.out")
            let services = try ManagedProcess(
                name: "atheme-services", executable: atheme,
                arguments: [
                    "-n", "-c", servicesConfig.path, "-D", directory.appendingPathComponent("atheme").path,
                    "-l", directory.appendingPathComponent("atheme.log").path, "-p", directory.appendingPathComponent("atheme.pid").path,
                ],
                directory: directory, logFile: servicesLog)
            // Ready when Atheme has its burst from the uplink (tens of milliseconds).
            let deadline = Date().addingTimeInterval(10)
            while !services.log().contains("finished synching with uplink") {
                guard Date() < deadline, services.isRunning else {
                    services.stop()
                    process.stop()
                    throw LabError("Atheme did not link to InspIRCd: \(services.log().suffix(1000))")
                }
                usleep(20_000)
            }
            return InspIRCdServer(
                directory: directory, port: port, tlsPort: tlsPort, certificateFile: certificate, certificateSHA256: fingerprint,
                process: process, services: services)
        }
    }

    private init(directory: URL, port: Int, tlsPort: Int, certificateFile: URL, certificateSHA256: String, process: ManagedProcess, services: ManagedProcess) {
        self.directory = directory
        self.port = port
        self.tlsPort = tlsPort
        self.certificateFile = certificateFile
        self.certificateSHA256 = certificateSHA256
        self.process = process
        self.services = services
    }

    /// InspIRCd with ssl_gnutls loaded may crash on SIGTERM; it is stopped by PID either way.
    public func stop() {
        services.stop()
        process.stop()
    }

    /// Registers a services account (NickServ REGISTER) from a short-lived connection; with a
    /// certificate fingerprint, SASL EXTERNAL with that client certificate logs in to it too.
    public func registerAccount(_ account: String, password: String, certificateFingerprint: String? = nil) throws {
        let conversation = try LineConversation(port: port)
        defer { conversation.close() }
        try conversation.send("NICK \(account)", "USER \(account) 0 * :\(account)")
        // InspIRCd completes registration on a once-a-second tick.
        _ = try conversation.read(until: { $0.contains(" 001 ") }, timeout: 10)
        try conversation.send("PRIVMSG NickServ :REGISTER \(password) \(account)@lab.test")
        let answer = try conversation.read(until: { $0.hasPrefix(":NickServ!") }, timeout: 10)
        guard answer.contains("registered") else { throw LabError("NickServ refused \(account): \(answer)") }
        if let certificateFingerprint {
            try conversation.send("PRIVMSG NickServ :CERT ADD \(certificateFingerprint)")
            let added = try conversation.read(until: { $0.hasPrefix(":NickServ!") }, timeout: 10)
            guard added.contains("Added") else { throw LabError("NickServ did not add the fingerprint: \(added)") }
        }
        try conversation.send("QUIT :registered")
    }

    /// A client certificate and key for SASL EXTERNAL, and the fingerprint InspIRCd reports for
    /// it (SHA-256, lowercase hex without colons, as `<sslprofile hash="sha256">` computes).
    public func makeClientCertificate(named name: String) throws -> (certificate: URL, key: URL, fingerprint: String) {
        let certificate = directory.appendingPathComponent("\(name).pem")
        let key = directory.appendingPathComponent("\(name).key")
        let fingerprint = try Self.makeCertificate(certificate, key: key, name: name).replacingOccurrences(of: ":", with: "")
        return (certificate, key, fingerprint)
    }

    /// A self-signed certificate and its key (openssl), valid two days; its SHA-256
    /// fingerprint as lowercase hex pairs separated by colons.
    static func makeCertificate(_ certificate: URL, key: URL, name: String, extra: [String] = []) throws -> String {
        let openssl = try Lab.executable("openssl", package: "openssl")
        try Lab.runCommand(
            openssl, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=\(name)"] + extra + ["-keyout", key.path, "-out", certificate.path])
        let output = try Lab.commandOutput(openssl, ["x509", "-noout", "-fingerprint", "-sha256", "-in", certificate.path])
        // "sha256 Fingerprint=AB:CD:..."
        guard let value = output.split(separator: "=").last else { throw LabError("no fingerprint in \(output)") }
        return value.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }

    /// One `<connect>` class for loopback with the limits lifted (every client is 127.0.0.1;
    /// the tests are not about InspIRCd's flood protection), IRCv3 modules, TLS on its own
    /// port, SASL through the services link. Paths are absolute: InspIRCd reads relative
    /// ones from /etc/inspircd.
    static func configuration(directory: URL, ports: (client: Int, tls: Int, link: Int)) -> String {
        let d = directory.path
        let modules = [
            "cap", "ircv3", "ircv3_accounttag", "ircv3_batch", "ircv3_capnotify", "ircv3_chghost", "ircv3_ctctags", "ircv3_echomessage",
            "ircv3_invitenotify", "ircv3_labeledresponse", "ircv3_msgid", "ircv3_servertime", "namesx", "uhnames", "setname", "botmode",
            "monitor", "deaf", "ssl_gnutls", "sslinfo", "spanningtree", "services_account", "sasl",
        ]
        return """
            # Generated by Shadowbridge's lab for one test run.
            <server name="irc.test" description="Shadowbridge lab" network="ShadowLab">
            <admin name="lab" nick="lab" email="lab@irc.test">
            <bind address="127.0.0.1" port="\(ports.client)" type="clients">
            <bind address="127.0.0.1" port="\(ports.tls)" type="clients" sslprofile="lab">
            <bind address="127.0.0.1" port="\(ports.link)" type="servers">
            <dns server="127.0.0.1" timeout="1">
            <connect name="lab" allow="127.0.0.1" resolvehostnames="no" useident="no" fakelag="no" threshold="1000000" commandrate="100000000" localmax="100000" globalmax="100000" hardsendq="10485760" softsendq="1048576" recvq="1048576" pingfreq="120" timeout="30" maxchans="500">
            <performance netbuffersize="65534" softlimit="20000">
            <files motd="\(d)/motd">
            <log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="\(d)/inspircd.log">
            <options casemapping="rfc1459">
            \(modules.map { "<module name=\"\($0)\">" }.joined(separator: "\n"))
            <ircv3 accountnotify="yes" awaynotify="yes" extendedjoin="yes">
            <sslprofile name="lab" provider="gnutls" certfile="\(d)/cert.pem" keyfile="\(d)/key.pem" dhfile="" requestclientcert="yes" hash="sha256">
            <sasl target="\(servicesName)" requiressl="no">
            <uline server="\(servicesName)" silent="yes">
            <link name="\(servicesName)" ipaddr="127.0.0.1" port="\(ports.link)" allowmask="127.0.0.1" sendpass="\(linkPassword)" recvpass="\(linkPassword)">
            """
    }

    /// NickServ (REGISTER, IDENTIFY, CERT) and SaslServ (PLAIN, EXTERNAL); PBKDF2 at its minimum rounds so
    /// registering is fast; flood and clone limits off for loopback.
    static func athemeConfiguration(linkPort: Int) -> String {
        """
        loadmodule "modules/protocol/inspircd";
        loadmodule "modules/backend/opensex";
        loadmodule "modules/crypto/pbkdf2v2";
        loadmodule "modules/nickserv/main";
        loadmodule "modules/nickserv/register";
        loadmodule "modules/nickserv/identify";
        loadmodule "modules/saslserv/main";
        loadmodule "modules/saslserv/plain";
        loadmodule "modules/saslserv/external";
        loadmodule "modules/nickserv/cert";
        pbkdf2v2 { rounds = 10000; };
        serverinfo {
            name = "\(servicesName)"; desc = "Lab services"; numeric = "00A"; recontime = 1;
            netname = "ShadowLab"; hidehostsuffix = "users.lab"; adminname = "lab"; adminemail = "lab@irc.test";
            registeremail = "noreply@irc.test"; mta = "/bin/true"; loglevel = { error; info; admin; network; };
            maxlogins = 5; maxusers = 1000; mdlimit = 30; emaillimit = 10; emailtime = 300; auth = none; casemapping = rfc1459;
        };
        uplink "irc.test" { host = "127.0.0.1"; send_password = "\(linkPassword)"; receive_password = "\(linkPassword)"; port = \(linkPort); };
        nickserv { nick = "NickServ"; user = "NickServ"; host = "\(servicesName)"; real = "Nickname Services"; maxnicks = 5; expire = 30; };
        saslserv { nick = "SaslServ"; user = "SaslServ"; host = "\(servicesName)"; real = "SASL"; };
        general {
            flood_msgs = 0; flood_time = 10; ratelimit_uses = 1000; ratelimit_period = 1; kline_time = 7; commit_interval = 5;
            default_clone_allowed = 100000; default_clone_warn = 100000; uplink_sendq_limit = 1048576; language = "en";
        };
        """
    }
}

/// A blocking line-by-line IRC exchange on a loopback socket, for lab chores (registering a
/// services account) before any test client runs.
final class LineConversation {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int) throws {
        guard let fd = Lab.connectLoopback(port: port) else { throw LabError("cannot connect to 127.0.0.1:\(port)") }
        self.fd = fd
    }

    func send(_ lines: String...) throws {
        let bytes = Array(lines.map { $0 + "\r\n" }.joined().utf8)
        guard bytes.withUnsafeBytes({ Foundation.send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { throw LabError("send failed") }
    }

    /// Reads lines (answering PING) until one matches; returns it.
    func read(until match: (String) -> Bool, timeout: Double) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self).trimmingCharacters(in: .newlines)
                pending.removeSubrange(...newline)
                if line.hasPrefix("PING ") { try send("PONG " + line.dropFirst(5)) }
                if match(line) { return line }
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { break }
            guard poller.revents != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            pending += buffer[0..<n]
        }
        throw LabError("no matching line from 127.0.0.1 within \(timeout) s")
    }

    func close() { Foundation.close(fd) }
}
