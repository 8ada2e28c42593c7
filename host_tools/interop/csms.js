// An OCPP 1.6J central system for the interop tests, built on ocpp-rpc with strict mode on: every
// call the charge point sends and every answer to ours is checked against ocpp-rpc's own copy of
// the OCPP 1.6 JSON schemas, independently of `evsectl csms` (the Python `ocpp` library and
// host_tools/csms/schema.py). It answers as a plain back end does and is driven over its stdio:
//
//   stdout, one JSON object a line:
//     {"listening": port}                          first, once the server listens
//     {"connected": identity, "protocol": "ocpp1.6"} / {"disconnected": identity, "code": n}
//     {"in": method, "params": {...}, "answer": {...}}  a call from the charge point, as answered
//     {"invalid": message, "method": m, "params": {...}}  a strict-mode failure (either way)
//     {"id": n, "result": {...}} / {"id": n, "error": message}  the outcome of a command
//   stdin, one JSON command a line:
//     {"id": n, "call": method, "params": {...}}   a call to the charge point
//     {"id": n, "drop": true}                      close the charge point's connection
//     {"id": n, "boot": "Accepted"|"Pending"|"Rejected", "interval": s}  how boots are answered
//   EOF on stdin stops it.
'use strict';
const readline = require('readline');
const { RPCServer, createRPCError } = require('ocpp-rpc');

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const clients = new Map();
const boot = { status: 'Accepted', interval: 60 };
let nextTx = 1000;

const server = new RPCServer({ protocols: ['ocpp1.6'], strictMode: true, pingIntervalMs: 10000, callTimeoutMs: 20000 });

server.on('client', (client) => {
    clients.set(client.identity, client);
    out({ connected: client.identity, protocol: client.protocol });
    client.on('close', ({ code }) => {
        if (clients.get(client.identity) === client) clients.delete(client.identity);
        out({ disconnected: client.identity, code });
    });
    // A frame that is no OCPP-J message at all (not JSON, an answer to no call, a CALLERROR
    // of the wrong shape) is no schema failure: ocpp-rpc reports it as a bad message.
    client.on('badMessage', ({ buffer, error }) => {
        out({ invalid: String(error && error.message || error), frame: String(buffer) });
    });
    client.on('strictValidationFailure', ({ messageId, method, params, result, error, outbound, isCall }) => {
        out({ invalid: String(error && error.message || error), method, params: isCall ? params : result,
              outbound, isCall });
    });
    const answer = (method, fn) => client.handle(method, ({ params }) => {
        const a = fn(params);
        out({ in: method, params, answer: a });
        return a;
    });
    const now = () => new Date().toISOString();
    answer('BootNotification', () => ({ status: boot.status, interval: boot.interval, currentTime: now() }));
    answer('Heartbeat', () => ({ currentTime: now() }));
    answer('StatusNotification', () => ({}));
    answer('MeterValues', () => ({}));
    answer('Authorize', (p) => ({ idTagInfo: { status: p.idTag.startsWith('BLOCK') ? 'Blocked' : 'Accepted' } }));
    answer('StartTransaction', (p) => ({ transactionId: nextTx++,
        idTagInfo: { status: p.idTag.startsWith('BLOCK') ? 'Blocked' : 'Accepted' } }));
    answer('StopTransaction', () => ({ idTagInfo: { status: 'Accepted' } }));
    answer('DataTransfer', () => ({ status: 'UnknownVendorId' }));
    answer('DiagnosticsStatusNotification', () => ({}));
    answer('FirmwareStatusNotification', () => ({}));
    client.handle(({ method, params }) => {
        out({ in: method, params, answer: 'NotImplemented' });
        throw createRPCError('NotImplemented');
    });
});

async function command(cmd) {
    try {
        if (cmd.boot) {
            boot.status = cmd.boot;
            if (cmd.interval) boot.interval = cmd.interval;
            return out({ id: cmd.id, result: boot });
        }
        const [client] = clients.values();
        if (!client) return out({ id: cmd.id, error: 'no charge point connected' });
        if (cmd.drop) {
            await client.close({ code: 1000, force: true });
            return out({ id: cmd.id, result: {} });
        }
        const result = await client.call(cmd.call, cmd.params || {});
        out({ id: cmd.id, result });
    } catch (e) {
        out({ id: cmd.id, error: String(e && e.message || e) });
    }
}

(async () => {
    const port = Number(process.argv[2] || 0);
    const http = await server.listen(port, '127.0.0.1');
    out({ listening: http.address().port });
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
        if (!line.trim()) return;
        let cmd;
        try { cmd = JSON.parse(line); } catch (e) { return out({ error: 'not JSON: ' + line }); }
        command(cmd);
    });
    rl.on('close', async () => {
        await server.close({ force: true });
        process.exit(0);
    });
})();
