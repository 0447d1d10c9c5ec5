-- GET /api/movies/{id} over ids 1..@IDS@ (the seeded movies), at random.
local ids = @IDS@
request = function()
  return wrk.format("GET", "/api/movies/" .. math.random(ids))
end
