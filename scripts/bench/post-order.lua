-- POST /api/billing, a new order per request (the gateway assigns order_id).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/billing", nil, string.format(
    '{"user_id":"bench-%d","number_of_items":%d,"total_amount":"%d.%02d"}',
    n % 1000, n % 10 + 1, n % 1000, n % 100))
end
