-- wrk script for the soak: NSMC reviews with malformed requests mixed in (1 in 3):
-- broken JSON, wrong types, an empty list, invalid UTF-8, too many texts, a body over
-- the size limit, an unknown path. Counts 4xx and 5xx per kind of request.
local base = dofile(os.getenv("BENCH_DIR") .. "/classify.lua")  -- luacheck: ignore
local good_request = request

bad = {  -- global: malformed.lua sends these alone
  {"/v1/classify", '{"texts": ["a",'},
  {"/v1/classify", '{"texts": "not a list"}'},
  {"/v1/classify", '{"texts": []}'},
  {"/v1/classify", '{"text": "\255\254 not utf-8"}'},
  {"/v1/classify", '{"texts": [' .. string.rep('"x",', 9999) .. '"x"]}'},
  {"/v1/classify", '{"text": "' .. string.rep("a", 2 * 1024 * 1024) .. '"}'},
  {"/", '{"inputs": 42}'},
  {"/nope", '{}'},
}
local n = 0
function request()
  n = n + 1
  if n % 3 ~= 0 then return good_request() end
  return bad_request(n / 3)
end

function bad_request(k)
  local b = bad[k % #bad + 1]
  return wrk.format("POST", b[1], {["Content-Type"] = "application/json"}, b[2])
end
