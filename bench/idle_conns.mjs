// Opens N PostgreSQL connections to HOST:PORT (trust login: a startup packet, then up to the
// first ReadyForQuery), keeps them idle, prints "ready N" on stdout, and holds them until stdin
// closes. Used by bench/idle_memory.sh.
import net from 'node:net';

const [host, port, count, user, database] = process.argv.slice(2);
const n = Number(count);

function startup() {
  const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
  const b = Buffer.alloc(8 + params.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(196608, 4);
  params.copy(b, 8);
  return b;
}

function open() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port: Number(port) });
    let buf = Buffer.alloc(0);
    s.on('error', reject);
    s.on('connect', () => s.write(startup()));
    s.on('data', function onData(d) {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5) {
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) break;
        const type = String.fromCharCode(buf[0]);
        buf = buf.subarray(1 + len);
        if (type === 'E') return reject(new Error('login failed'));
        if (type === 'Z') {
          s.off('data', onData);
          return resolve(s);
        }
      }
    });
  });
}

const sockets = [];
const batch = 50;
for (let i = 0; i < n; i += batch) {
  const k = Math.min(batch, n - i);
  sockets.push(...(await Promise.all(Array.from({ length: k }, open))));
}
process.stdout.write(`ready ${sockets.length}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  for (const s of sockets) s.destroy();
  process.exit(0);
});
