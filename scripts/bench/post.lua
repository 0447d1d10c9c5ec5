-- POST @PATH@, a new body per request: a movie, or an order (the gateway
-- assigns order_id).
local bodies = {
  ["/api/movies"] = function(n)
    return string.format(
      '{"title":"Bench movie %d","description":"Added by scripts/bench.sh under load."}', n)
  end,
  ["/api/billing"] = function(n)
    return string.format('{"user_id":"bench-%d","number_of_items":%d,"total_amount":"%d.%02d"}',
      n % 1000, n % 10 + 1, n % 1000, n % 100)
  end,
}
local path = "@PATH@"
local body = assert(bodies[path], "no body for " .. path)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, path, nil, body(n))
end
