-- POST /api/movies, a new movie per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/movies", nil, string.format(
    '{"title":"Bench movie %d","description":"Added by scripts/bench.sh under load."}', n))
end
