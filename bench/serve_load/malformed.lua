-- wrk script for the soak's background load: soak.lua's malformed requests alone, one
-- every 20 ms per connection.
dofile(os.getenv("BENCH_DIR") .. "/soak.lua")
local k = 0
function request()
  k = k + 1
  return bad_request(k)
end
function delay() return 20 end
