// Container health check without curl: GET http://127.0.0.1:$PORT<path>, healthy on 200 only.
//   node docker/healthcheck.js                 # /health/live on $PORT (default 3000): the coordinator
//   node docker/healthcheck.js /health/ready   # readiness: log store, transport, recovery done
//   node docker/healthcheck.js /health         # a participant over HTTP (its own PORT)
// Exit 0 healthy, 1 not. A participant on Kafka serves no HTTP: disable the check for it.
const port = process.env.PORT || '3000';
const path = process.argv[2] || '/health/live';
fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(4000) }).then(
  (r) => process.exit(r.status === 200 ? 0 : 1),
  () => process.exit(1),
);
