// An unmodified-style Node server for steward's tests: http.Server on the socket that
// socket activation hands over (fd 3), after a start-up that takes BOOT_MS (default
// 2000). It never sends READY=1. On SIGTERM it stops accepting and exits once what is
// in flight is answered.
const http = require('http');
const boot = parseInt(process.env.BOOT_MS || '2000', 10);
const generation = process.env.STEWARD_GENERATION || '?';
const until = Date.now() + boot;
while (Date.now() < until) {} // the slow require()s, synchronously, as real apps do
const bootNs = (BigInt(Date.now()) * 1000000n).toString(); // X-Boot, for bench/'s client
const server = http.createServer((req, res) => {
  res.setHeader('Connection', 'close');
  res.setHeader('X-Boot', bootNs);
  res.end(`hello from node generation ${generation} pid ${process.pid}\n`);
});
server.listen({ fd: 3 });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
