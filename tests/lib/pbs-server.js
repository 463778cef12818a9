#!/usr/bin/env node
// A Proxmox Backup Server double for the tests: PBS's API and reader
// protocol as v4.2.3's sources implement them (../../../shared/
// PBS-PROTOCOL.md section 1), serving datastore trees from disk.
//
//   node pbs-server.js --port P --cert C --key K --store NAME=DIR ...
//        [--auth FILE]   (lines "token AUTHID SECRET", "user AUTHID PW":
//                         a file, so that no secret is in any argv)
//        [--acl AUTHID=STORE[/NS] ...] [--log FILE] [--faults FILE]
//        (STORE * for every datastore; no --acl: everyone may read all)
//        [--max-streams N]
//
// What it does as PBS does:
//  - HTTPS without ALPN on one port; HTTP/1.1 for the REST calls and
//    the upgrade; HTTP/2 (prior knowledge) on the upgraded socket, with
//    32 MiB stream and connection windows and 4 MiB frames;
//  - API tokens ("PBSAPIToken ID:SECRET", a space or '='), tickets from
//    POST /api2/json/access/ticket (JSON or form; a valid ticket as the
//    password renews it), sent back as Cookie PBSAuthCookie; a failed
//    authentication is answered 401 after 3 s;
//  - the upgrade's checks in PBS's order with PBS's texts (400 with the
//    message as body): privileges, datastore, Upgrade header, HTTP
//    version, snapshot; 101 then HTTP/2;
//  - per session, /download of a .fidx/.didx registers every digest in
//    it; /chunk of an unregistered digest is 401 after 3 s; /speedtest;
//    /; 404 for other paths;
//  - REST: /version, /admin/datastore, .../groups, .../snapshots,
//    .../namespace, with PBS's field names; 403 "permission check
//    failed" without privileges; 400 for an unknown datastore or
//    namespace.
// What it leaves out: see the README's Testing section (no task log,
// no snapshot locks, no TFA, no maintenance modes, no didx chunking).
//
// Faults, read from --faults FILE at every HTTP/2 request:
//   off | delay MS | drop-after N | goaway-after N | stall-after N
// "-after N": once N /chunk requests were answered (server-wide since
// the fault was set), the connection is dropped / sent GOAWAY / the
// next /chunk request (that one only) is never answered.  Every request is logged, one
// line: "<session> <METHOD> <path> <status>".
'use strict';
const fs = require('fs');
const path = require('path');
const https = require('https');
const http2 = require('http2');
const crypto = require('crypto');

const args = process.argv.slice(2);
const opt = { stores: {}, tokens: {}, users: {}, acl: [], maxStreams: 200 };
for (let i = 0; i < args.length; i++) {
  const a = args[i], v = args[i + 1];
  switch (a) {
    case '--port': opt.port = +v; i++; break;
    case '--cert': opt.cert = v; i++; break;
    case '--key': opt.key = v; i++; break;
    case '--log': opt.log = v; i++; break;
    case '--faults': opt.faults = v; i++; break;
    case '--max-streams': opt.maxStreams = +v; i++; break;
    case '--store': { const j = v.indexOf('='); opt.stores[v.slice(0, j)] = v.slice(j + 1); i++; break; }
    case '--auth':     // lines "token AUTHID SECRET" / "user AUTHID PASSWORD"
      for (const l of fs.readFileSync(v, 'utf8').split('\n')) {
        const w = l.split(' ');
        if (w[0] === 'token') opt.tokens[w[1]] = w[2];
        if (w[0] === 'user') opt.users[w[1]] = w[2];
      }
      i++; break;
    case '--acl': opt.acl.push(v); i++; break;
    default: console.error(`pbs-server: unknown option ${a}`); process.exit(2);
  }
}

const logFd = opt.log ? fs.openSync(opt.log, 'a') : null;
function log(line) { if (logFd !== null) fs.writeSync(logFd, line + '\n'); }

const secret = crypto.randomBytes(32);
let faultGen = '', chunkCount = 0;
function faults() {
  let f = 'off';
  try { f = fs.readFileSync(opt.faults, 'utf8').trim() || 'off'; } catch (e) { }
  if (f !== faultGen) { faultGen = f; chunkCount = 0; }
  const w = f.split(/\s+/);
  return { kind: w[0], n: +(w[1] || 0) };
}

// ---- authentication ----
function makeTicket(authid) {
  const data = `PBS:${authid}:${Math.floor(Date.now() / 1000).toString(16).toUpperCase()}`;
  const sig = crypto.createHmac('sha256', secret).update(data).digest('base64');
  return `${data}::${sig}`;
}
function checkTicket(t) {
  const i = t.lastIndexOf('::');
  if (i < 0) return null;
  const data = t.slice(0, i), sig = t.slice(i + 2);
  const want = crypto.createHmac('sha256', secret).update(data).digest('base64');
  if (sig.length !== want.length || !crypto.timingSafeEqual(Buffer.from(sig), Buffer.from(want))) return null;
  const m = /^PBS:([^:]+):([0-9A-F]+)$/.exec(data);
  if (!m || Date.now() / 1000 - parseInt(m[2], 16) > 7200) return null;
  return m[1];
}
function csrfFor(authid) {
  return crypto.createHmac('sha256', secret).update('csrf:' + authid).digest('hex');
}
// The auth id of a request, or null (PBS: extract_auth_data).
function authenticate(req, method) {
  const h = req.headers.authorization;
  if (h && h.startsWith('PBSAPIToken')) {
    const rest = h.slice(11).replace(/^[ =]/, '');
    const j = rest.lastIndexOf(':');
    const id = rest.slice(0, j), sec = decodeURIComponent(rest.slice(j + 1));
    return opt.tokens[id] !== undefined && opt.tokens[id] === sec ? id : null;
  }
  const c = req.headers.cookie || '';
  const m = /(?:^|;\s*)(?:__Host-)?PBSAuthCookie=([^;]*)/.exec(c);
  if (!m) return null;
  const id = checkTicket(decodeURIComponent(m[1]));
  if (!id) return null;
  if (method !== 'GET' && req.headers.csrfpreventiontoken !== csrfFor(id)) return null;
  return id;
}
function allowed(authid, store, ns) {
  if (!opt.acl.length) return true;
  const user = authid.split('!')[0];
  return opt.acl.some((e) => {
    const j = e.indexOf('='), who = e.slice(0, j), what = e.slice(j + 1);
    if (who !== authid && who !== user) return false;
    const [s, ...p] = what.split('/');
    if (s !== store && s !== '*') return false;
    const aclNs = p.join('/');
    return !aclNs || ns === aclNs || ns.startsWith(aclNs + '/');
  });
}

// ---- the datastore tree ----
function nsDir(root, ns) {
  return ns ? path.join(root, ...ns.split('/').flatMap((c) => ['ns', c])) : root;
}
function safeId(s) { return /^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(s); }
function fmtTime(t) { return new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'); }
function parseTime(s) { const d = Date.parse(s); return isNaN(d) ? null : d / 1000; }
function listDir(p) { try { return fs.readdirSync(p); } catch (e) { return []; } }
function snapshots(dir, type, id) {
  return listDir(path.join(dir, type, id)).filter((t) => parseTime(t) !== null &&
    fs.existsSync(path.join(dir, type, id, t, 'index.json.blob'))).sort();
}

// ---- HTTP/1.1: REST and the upgrade ----
function send(res, status, body, type) {
  const b = Buffer.from(body);
  res.writeHead(status, { 'Content-Type': type || 'application/json;charset=UTF-8', 'Content-Length': b.length });
  res.end(b);
}
function sendErr(res, status, msg) { send(res, status, msg); }
function sendData(res, data) { send(res, 200, JSON.stringify({ data })); }
function later(fn) { setTimeout(fn, 3000); }   // PBS delays failed auth by 3 s

function readBody(req) {
  return new Promise((resolve) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts).toString()));
  });
}

async function rest(req, res) {
  const url = new URL(req.url, 'https://x');
  const p = url.pathname.replace(/^\/+/, '/');
  const q = url.searchParams;
  if (p === '/api2/json/access/ticket' && req.method === 'POST') {
    const body = await readBody(req);
    let u, pw;
    try { const j = JSON.parse(body); u = j.username; pw = j.password; } catch (e) {
      const f = new URLSearchParams(body); u = f.get('username'); pw = f.get('password');
    }
    const ok = (u && opt.users[u] !== undefined && opt.users[u] === pw) || (u && checkTicket(pw || '') === u);
    log(`- POST ${p} ${ok ? 200 : 401}`);
    if (!ok) return later(() => sendErr(res, 401, 'authentication failure'));
    return sendData(res, { username: u, ticket: makeTicket(u), CSRFPreventionToken: csrfFor(u) });
  }
  const authid = authenticate(req, req.method);
  if (!authid) {
    log(`- ${req.method} ${p} 401`);
    return later(() => sendErr(res, 401, 'authentication failed - invalid credentials'));
  }
  let m;
  const done = (status, out) => { log(`- ${req.method} ${url.pathname}${url.search} ${status}`); return out; };
  if (p === '/api2/json/version') return done(200, sendData(res, { version: '4.2.3', release: '1', repoid: 'pbslm-test' }));
  if (p === '/api2/json/admin/datastore')
    return done(200, sendData(res, Object.keys(opt.stores).filter((s) => allowed(authid, s, '')).map((s) => ({ store: s }))));
  if ((m = /^\/api2\/json\/admin\/datastore\/([^/]+)\/(groups|snapshots|namespace)$/.exec(p))) {
    const store = m[1], what = m[2], ns = q.get('ns') || q.get('parent') || '';
    if (!allowed(authid, store, ns)) return done(403, sendErr(res, 403, 'permission check failed'));
    if (!opt.stores[store]) return done(400, sendErr(res, 400, `no such datastore '${store}'`));
    const dir = nsDir(opt.stores[store], ns);
    if (ns && !fs.existsSync(dir)) return done(400, sendErr(res, 400, `namespace '${ns}' does not exist`));
    if (what === 'namespace') {
      const out = [{ ns }];
      for (const c of listDir(path.join(dir, 'ns'))) out.push({ ns: ns ? `${ns}/${c}` : c });
      return done(200, sendData(res, out));
    }
    const out = [];
    for (const type of ['vm', 'ct', 'host']) {
      if (what === 'snapshots' && q.get('backup-type') && q.get('backup-type') !== type) continue;
      for (const id of listDir(path.join(dir, type)).filter(safeId)) {
        if (what === 'snapshots' && q.get('backup-id') && q.get('backup-id') !== id) continue;
        const snaps = snapshots(dir, type, id);
        if (!snaps.length) continue;
        if (what === 'groups') {
          out.push({ 'backup-type': type, 'backup-id': id, 'last-backup': parseTime(snaps[snaps.length - 1]),
            'backup-count': snaps.length, files: [], owner: 'root@pam' });
          continue;
        }
        for (const t of snaps) {
          const files = listDir(path.join(dir, type, id, t)).filter((f) => f.endsWith('.fidx') || f.endsWith('.blob'));
          out.push({ 'backup-type': type, 'backup-id': id, 'backup-time': parseTime(t),
            files: files.map((f) => ({ filename: f, 'crypt-mode': 'none', size: fs.statSync(path.join(dir, type, id, t, f)).size })),
            owner: 'root@pam', protected: false });
        }
      }
    }
    return done(200, sendData(res, out));
  }
  return done(404, sendErr(res, 404, `Path '${p}' not found.`));
}

// The reader upgrade (upgrade_to_backup_reader_protocol), in PBS's order.
function upgrade(req, socket, head) {
  const url = new URL(req.url, 'https://x');
  const p = url.pathname.replace(/^\/+/, '/');
  const q = url.searchParams;
  const reply = (status, msg) => {
    log(`- GET ${url.pathname}${url.search} ${status}`);
    const b = Buffer.from(msg);
    socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 404 ? 'Not Found' : 'Bad Request'}\r\n` +
      `content-type: application/json;charset=UTF-8\r\ncontent-length: ${b.length}\r\n\r\n${msg}`);
  };
  if (p !== '/api2/json/reader') return reply(404, `Path '${p}' not found.`);
  const authid = authenticate(req, 'GET');
  if (!authid) return later(() => reply(401, 'authentication failed - invalid credentials'));
  const store = q.get('store') || '', ns = q.get('ns') || '';
  if (!store) return reply(400, "parameter verification failed - 'store': parameter is missing and it is not optional.");
  if (!allowed(authid, store, ns)) return reply(400, `no permissions on /datastore/${store}${ns ? '/' + ns : ''}`);
  if (!opt.stores[store]) return reply(400, `no such datastore '${store}'`);
  const upg = req.headers.upgrade;
  if (upg === undefined) return reply(400, 'missing Upgrade header');
  if (upg !== 'proxmox-backup-reader-protocol-v1') return reply(400, 'invalid protocol name');
  if (req.httpVersionMajor >= 2) return reply(400, `unexpected http version '${req.httpVersion}' (expected version < 2)`);
  const type = q.get('backup-type'), id = q.get('backup-id'), time = +q.get('backup-time');
  if (!['vm', 'ct', 'host'].includes(type) || !safeId(id || '') || !(time >= 1))
    return reply(400, 'parameter verification failed');
  const dir = path.join(nsDir(opt.stores[store], ns), type, id, fmtTime(time));
  if (!fs.existsSync(dir)) return reply(400, `snapshot ${type}/${id}/${fmtTime(time)} does not exist.`);
  log(`- GET ${url.pathname}${url.search} 101`);
  socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: proxmox-backup-reader-protocol-v1\r\n\r\n', () => {
    if (head && head.length) socket.unshift(head);
    startSession(socket, opt.stores[store], dir);
  });
}

// ---- HTTP/2 on the upgraded socket ----
let sessions = 0;
const h2 = http2.createServer({
  settings: { initialWindowSize: 32 << 20, maxFrameSize: 4 << 20, maxConcurrentStreams: opt.maxStreams },
  maxSessionMemory: 1000,
});
h2.on('session', (s) => {
  try { s.setLocalWindowSize(32 << 20); } catch (e) { }
  s.on('error', () => { });               // a dropped client: not our crash
});
h2.on('sessionError', () => { });

function startSession(socket, root, dir) {
  const sid = ++sessions;
  socket.on('error', () => { });
  socket.pbs = { sid, root, dir, allowed: new Set(), raw: socket, inflight: 0, peak: 0 };
  socket.on('close', () => log(`${sid} closed peak-streams ${socket.pbs.peak}`));
  socket.alpnProtocol = 'h2';           // else node drops the socket
  h2.emit('connection', socket);
}

h2.on('stream', (stream, headers) => {
  const sock = stream.session.socket;
  const st = sock && sock.pbs;
  const url = new URL(headers[':path'], 'https://x');
  const q = url.searchParams;
  const f = faults();
  stream.on('error', () => { });
  if (st) {
    st.peak = Math.max(st.peak, ++st.inflight);
    stream.on('close', () => st.inflight--);
  }
  const answer = (status, body, type) => {
    log(`${st ? st.sid : '?'} GET ${url.pathname}${url.search} ${status}`);
    if (stream.destroyed) return;
    stream.respond({ ':status': status, 'content-type': type || 'application/json;charset=UTF-8' });
    stream.end(body);
  };
  const go = () => {
    if (!st) return answer(500, 'no session');
    if (url.pathname === '/download') {
      const name = q.get('file-name') || '';
      if (!safeId(name)) return answer(400, 'parameter verification failed');
      const file = path.join(st.dir, name);
      let data;
      try { data = fs.readFileSync(file); } catch (e) {
        return answer(404, `open file '${file}' failed - not found`);
      }
      if (name.endsWith('.fidx') && data.length >= 4096)
        for (let o = 4096; o + 32 <= data.length; o += 32) st.allowed.add(data.subarray(o, o + 32).toString('hex'));
      return answer(200, data, 'application/octet-stream');
    }
    if (url.pathname === '/chunk') {
      const d = (q.get('digest') || '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(d)) return answer(400, 'parameter verification failed');
      if (!st.allowed.has(d)) return later(() => answer(401, `download chunk ${d} not allowed`));
      chunkCount++;
      if (f.kind === 'stall-after' && chunkCount === f.n + 1) {
        log(`${st.sid} GET ${url.pathname}${url.search} stalled`);
        return;                                // never answered
      }
      const file = path.join(st.root, '.chunks', d.slice(0, 4), d);
      const n = chunkCount;
      // Read off the event loop (libuv's pool), as PBS reads on tokio's
      // blocking threads: a cold disk does not stall every other stream.
      fs.readFile(file, (err, data) => {
        if (err)
          return answer(400, `reading file "${file}" failed: No such file or directory (os error 2)`);
        answer(200, data, 'application/octet-stream');
        if (f.kind === 'drop-after' && n === f.n) { log(`${st.sid} drop`); setTimeout(() => st.raw.destroy(), 10); }
        if (f.kind === 'goaway-after' && n === f.n) { log(`${st.sid} goaway`); stream.session.goaway(0); }
      });
      return;
    }
    if (url.pathname === '/speedtest') return answer(200, Buffer.alloc(1 << 20, 0x41), 'application/octet-stream');
    if (url.pathname === '/')
      return answer(200, JSON.stringify({ data: [{ subdir: 'chunk' }, { subdir: 'download' }, { subdir: 'speedtest' }] }));
    return answer(404, `Path '${url.pathname}' not found.`);
  };
  if (f.kind === 'delay' && f.n > 0) setTimeout(go, f.n); else go();
});

const server = https.createServer({ cert: fs.readFileSync(opt.cert), key: fs.readFileSync(opt.key) }, rest);
server.on('upgrade', upgrade);
server.on('clientError', (e, sock) => sock.destroy());
server.keepAliveTimeout = 120000;
server.listen(opt.port, '127.0.0.1', () => log(`- listening ${opt.port}`));
process.on('SIGTERM', () => process.exit(0));
