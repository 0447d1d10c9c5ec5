-- Appended to every wrk script of scripts/bench.sh: prints one machine-readable
-- line with exact figures (latencies in microseconds), so nothing has to be
-- parsed out of wrk's rounded human-readable summary.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
